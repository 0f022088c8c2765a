"""Fine-tuning transfer: weights saved for one taxonomy, loaded into a model of another.

The one name-aware transfer behind ``mdan(weights=..., taxonomy=...)``,
``MDAN.from_pretrained(src, taxonomy=...)`` and training with ``init_from``. Backbone, F5 and the
MHCCA laterals carry over; a classifier whose labels did not change is kept whole; a changed
one is rebuilt with the rows of labels whose name and ancestors match carried over from the
source. The :class:`TransferReport` says so in the paper's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..taxonomy import Taxonomy
from ._checkpoint import WeightsError

__all__ = ["ClassifierTransfer", "TransferReport", "part_name", "transfer_state"]


@dataclass(frozen=True)
class ClassifierTransfer:
    """One classifier of the target model after transfer: which labels' weight rows came from
    the source checkpoint (``carried``) and which start from random weights (``fresh``).

    ``part`` is the paper's name (``"L-CAM/local classifier of level 2 (emotion)"``, ``"global
    classifier (emotion)"``), ``module`` the attribute path (``local_heads.1``, ``global_head``),
    ``level`` the target level's name.
    """

    part: str
    module: str
    level: str
    kept: bool
    """The whole classifier came over unchanged (same labels, same ancestors, same order)."""
    carried: tuple[str, ...]
    fresh: tuple[str, ...]


@dataclass(frozen=True)
class TransferReport:
    """What fine-tuning transfer did when weights met a different taxonomy.

    ``str(report)`` is for people: one line per part of the network, named as in the paper,
    and per classifier the labels carried over and those that start fresh.

    Attributes:
        source_taxonomy / target_taxonomy: names of the two trees.
        transferred: module groups loaded unchanged (``backbone``, ``f5``, ``laterals.0``, ...,
            and every classifier head whose classes did not change).
        reinitialised: modules freshly initialised (heads whose classes changed, attention of
            levels the source had not).
        copied_rows: per reinitialised head, the labels whose rows were copied from the source
            (same name and same ancestors).
        dropped: source module groups the target has no place for (levels it lacks).
        source: where the weights came from (a folder, a file, a Hub ref, a run).
        parts_kept / parts_new / parts_dropped: the same groups named as in the paper
            (``"MHCCA lateral of level 1 (polarity)"``...).
        classifiers: one :class:`ClassifierTransfer` per classifier of the target, coarse to
            fine, the global classifier last.
    """

    source_taxonomy: str
    target_taxonomy: str
    transferred: tuple[str, ...]
    reinitialised: tuple[str, ...]
    copied_rows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    source: str = ""
    parts_kept: tuple[str, ...] = ()
    parts_new: tuple[str, ...] = ()
    parts_dropped: tuple[str, ...] = ()
    classifiers: tuple[ClassifierTransfer, ...] = ()

    def summary(self) -> str:
        """One line (what the log shows): the parts kept, rebuilt and dropped."""
        carried = sum(len(c.carried) for c in self.classifiers if not c.kept)
        fresh = sum(len(c.fresh) for c in self.classifiers)
        return (
            f"transfer {self.source_taxonomy} -> {self.target_taxonomy}: kept "
            f"{', '.join(self.parts_kept or self.transferred)}; new "
            f"{', '.join(self.parts_new or self.reinitialised) or 'nothing'}"
            f" ({carried} classifier rows carried over, {fresh} fresh)"
            + (f"; dropped {', '.join(self.parts_dropped or self.dropped)}" if self.dropped else "")
        )

    def __str__(self) -> str:
        where = f" (weights: {self.source})" if self.source else ""
        lines = [f"Fine-tuning transfer {self.source_taxonomy} -> {self.target_taxonomy}{where}"]
        heads = {c.part: c for c in self.classifiers}
        rows: list[tuple[str, str]] = []
        for part in self.parts_kept or self.transferred:
            head = heads.get(part)
            rows.append((part, f"kept: {', '.join(head.carried)}" if head else "kept"))
        for part in self.parts_new or self.reinitialised:
            head = heads.get(part)
            if head is None:
                rows.append((part, "new (random weights)"))
                continue
            said = [
                f"{len(names)} {'label' if len(names) == 1 else 'labels'} {how} "
                f"({', '.join(names)})"
                for names, how in (
                    (head.carried, "carried over"),
                    (head.fresh, "starts fresh" if len(head.fresh) == 1 else "start fresh"),
                )
                if names
            ]
            rows.append((part, ("rebuilt: " if head.carried else "new: ") + "; ".join(said)))
        for part in self.parts_dropped or self.dropped:
            rows.append((part, "dropped (the target has no such level)"))
        width = max(len(p) for p, _ in rows) if rows else 0
        lines += [f"  {p:<{width}}  {what}" for p, what in rows]
        return "\n".join(lines)


def part_name(
    group: str,
    level_names: tuple[str, ...],
    *,
    mhcca: bool,
    backbone: str,
    lcam: bool = True,
    semantic_levels: tuple[int, ...] = (4, 3, 2),
) -> str:
    """The paper's name of a module group (``laterals.1`` -> ``MHCCA lateral of level 2 (..)``).

    Levels are numbered from 1, coarse to fine, as the paper's affective levels;
    ``semantic_levels`` is the model's mapping (``laterals.j`` is C_{4-j}'s; (e) by default)."""
    if group == "backbone":
        return f"backbone ({backbone})"
    if group == "f5":
        return "F5 (top of the top-down FPN)"
    if group == "global_head":
        return f"global classifier ({level_names[-1]})"
    kind, _, index = group.partition(".")
    depth = int(index)
    level = f"level {depth + 1} ({level_names[depth]})" if depth < len(level_names) else group
    if kind == "laterals":
        ls = 4 - depth
        if ls in semantic_levels[: len(level_names)]:
            at = semantic_levels.index(ls)
            level = f"level {at + 1} ({level_names[at]})"
        else:
            level = f"C{ls}"
        return f"{'MHCCA lateral' if mhcca else 'lateral 1x1 conv'} of {level}"
    if kind == "local_heads":
        return f"{'L-CAM/local' if lcam else 'local'} classifier of {level}"
    return group


def _group(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] in ("laterals", "local_heads") else parts[0]


def _label_paths(tax: Taxonomy, depth: int) -> list[tuple[str, ...]]:
    """Lower-cased names from the root down to every label of ``depth``."""
    out = []
    for j in range(tax.num_classes[depth]):
        path = [j]
        for d in range(depth, 0, -1):
            path.append(tax.parents[d][path[-1]])
        idx = list(reversed(path))
        out.append(tuple(tax.labels[d][i].lower() for d, i in enumerate(idx)))
    return out


def _canonical_paths(source: Taxonomy, target: Taxonomy, depth: int) -> list[tuple[str, ...]]:
    """Target label paths spelled as the source spells them (aliases followed, case ignored)."""

    def spell(name: str) -> str:
        try:
            return source.canonical(name).lower()
        except KeyError:
            return name.lower()

    return [tuple(spell(n) for n in p) for p in _label_paths(target, depth)]


def transfer_state(
    target: Any, state: Mapping[str, Tensor], source_tax: Taxonomy, *, source: str
) -> tuple[dict[str, Tensor], TransferReport]:
    """Map a state dict of ``source_tax`` onto the meta-built ``target`` (another taxonomy).

    The one name-aware transfer behind ``mdan(weights=..., taxonomy=...)``,
    ``MDAN.from_pretrained(src, taxonomy=...)`` and training with ``init_from``.
    """
    tax = target.taxonomy
    n_src, n_tgt = source_tax.num_levels, tax.num_levels

    heads: dict[str, tuple[int, int | None]] = {}  # group -> (target depth, source depth)
    for d in range(n_tgt):
        heads[f"local_heads.{d}"] = (d, d if d < n_src else None)
    heads["global_head"] = (n_tgt - 1, n_src - 1)

    reinit: list[str] = []
    copied: dict[str, tuple[str, ...]] = {}
    carried: dict[str, tuple[str, ...]] = {}
    new_state: dict[str, Tensor] = {}
    fresh_modules: dict[str, nn.Module] = {}
    for group, (dt, ds) in heads.items():
        labels = tax.labels[dt]
        width = target.config.fpn_channels if group != "global_head" else target.channels["c5"]
        if ds is None:  # a level the source had not: new head, every label fresh
            reinit.append(group)
            fresh_modules[group] = nn.Linear(width, len(labels))
            carried[group] = ()
            continue
        tgt_paths = _canonical_paths(source_tax, tax, dt)
        src_paths = _label_paths(source_tax, ds)
        if tgt_paths == src_paths:
            carried[group] = tuple(labels)  # same classes, same ancestry: the head is kept
            continue
        reinit.append(group)
        fresh = nn.Linear(width, len(tgt_paths))
        rows = []
        with torch.no_grad():
            w_src, b_src = state[f"{group}.weight"], state[f"{group}.bias"]
            for j, p in enumerate(tgt_paths):
                if p in src_paths and w_src.shape[1] == fresh.weight.shape[1]:
                    i = src_paths.index(p)
                    fresh.weight[j] = w_src[i]
                    fresh.bias[j] = b_src[i]
                    rows.append(labels[j])
        if rows:
            copied[group] = tuple(rows)
        carried[group] = tuple(rows)
        fresh_modules[group] = fresh
    for j in range(len(target.laterals)):  # attention at maps the source had not
        if not any(k.startswith(f"laterals.{j}.") for k in state):
            reinit.append(f"laterals.{j}")
            fresh_modules[f"laterals.{j}"] = target._make_lateral(j).to("cpu")
    for group, module in fresh_modules.items():
        for k, v in module.state_dict().items():
            new_state[f"{group}.{k}"] = v

    expected = target.state_dict()
    for key in expected:
        if key in new_state:
            continue
        if key not in state:
            raise WeightsError(
                f"weights from {source} lack {key!r}, which no taxonomy change explains (the "
                f"architecture differs: checkpoint saved for {source_tax.name}); load it with the "
                "config it was saved with"
            )
        new_state[key] = state[key]
    dropped = sorted({_group(k) for k in state if k not in expected}, key=_group_order)
    bad = [g for g in dropped if not g.startswith(("laterals.", "local_heads."))]
    if bad:
        raise WeightsError(
            f"weights from {source} hold {bad}, which this model has no place for and no taxonomy "
            "change explains; load the checkpoint with the config it was saved with"
        )
    kept = sorted({_group(k) for k in expected} - set(reinit), key=_group_order)
    reinit.sort(key=_group_order)

    cfg = target.config

    def name(group: str, levels: tuple[str, ...]) -> str:
        return part_name(
            group,
            levels,
            mhcca=cfg.mhcca,
            backbone=cfg.backbone,
            lcam=cfg.lcam,
            semantic_levels=cfg.semantic_levels(len(levels)),
        )

    classifiers = tuple(
        ClassifierTransfer(
            part=name(group, tax.level_names),
            module=group,
            level=tax.level_names[dt],
            kept=group not in reinit,
            carried=carried[group],
            fresh=tuple(lb for lb in tax.labels[dt] if lb not in carried[group]),
        )
        for group, (dt, _) in heads.items()
    )
    report = TransferReport(
        source_taxonomy=source_tax.name,
        target_taxonomy=tax.name,
        transferred=tuple(kept),
        reinitialised=tuple(reinit),
        copied_rows=copied,
        dropped=tuple(dropped),
        source=source,
        parts_kept=tuple(name(g, tax.level_names) for g in kept),
        parts_new=tuple(name(g, tax.level_names) for g in reinit),
        parts_dropped=tuple(name(g, source_tax.level_names) for g in dropped),
        classifiers=classifiers,
    )
    return new_state, report


def _group_order(group: str) -> tuple[int, int, str]:
    order = ["backbone", "f5", "laterals", "local_heads", "global_head"]
    head, _, index = group.partition(".")
    return (order.index(head) if head in order else len(order), int(index or 0), group)
