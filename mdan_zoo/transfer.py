"""Fine-tuning transfer: weights saved for one taxonomy, loaded into a model of another.

Backbone, FPN and attention carry over; a classifier head whose classes changed starts fresh,
with the rows of labels whose name and ancestors match copied from the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import WeightsError
from .taxonomy import Taxonomy

__all__ = ["TransferReport", "transfer_state"]


@dataclass(frozen=True)
class TransferReport:
    """What fine-tuning transfer did when weights met a different taxonomy.

    Attributes:
        source_taxonomy / target_taxonomy: names of the two trees.
        transferred: module groups loaded unchanged (``backbone``, ``f5``, ``laterals.0``, ...,
            and every classifier head whose classes did not change).
        reinitialised: modules freshly initialised (heads whose classes changed, attention of
            levels the source had not).
        copied_rows: per reinitialised head, the labels whose rows were copied from the source
            (same name and same ancestors).
        dropped: source module groups the target has no place for (levels it lacks).
    """

    source_taxonomy: str
    target_taxonomy: str
    transferred: tuple[str, ...]
    reinitialised: tuple[str, ...]
    copied_rows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()

    def summary(self) -> str:
        rows = sum(len(v) for v in self.copied_rows.values())
        return (
            f"transfer {self.source_taxonomy} -> {self.target_taxonomy}: kept "
            f"{', '.join(self.transferred)}; re-initialised {', '.join(self.reinitialised) or 'nothing'}"
            f"; copied {rows} classifier rows"
            + (f"; dropped {', '.join(self.dropped)}" if self.dropped else "")
        )

    def __str__(self) -> str:
        return self.summary()


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
    """Map a state dict of ``source_tax`` onto the meta-built ``target`` (another taxonomy)."""
    tax = target.taxonomy
    n_src, n_tgt = source_tax.num_levels, tax.num_levels

    heads: dict[str, tuple[int, int]] = {}  # group -> (target depth, source depth)
    for d in range(n_tgt):
        if d < n_src:
            heads[f"local_heads.{d}"] = (d, d)
    heads["global_head"] = (n_tgt - 1, n_src - 1)

    reinit: list[str] = []
    copied: dict[str, tuple[str, ...]] = {}
    new_state: dict[str, Tensor] = {}
    fresh_modules: dict[str, nn.Module] = {}
    for group, (dt, ds) in heads.items():
        tgt_paths = _canonical_paths(source_tax, tax, dt)
        src_paths = _label_paths(source_tax, ds)
        if tgt_paths == src_paths:
            continue  # same classes, same ancestry: the head transfers unchanged
        reinit.append(group)
        fresh = nn.Linear(
            target.config.fpn_channels if group != "global_head" else target.channels["c5"],
            len(tgt_paths),
        )
        rows = []
        with torch.no_grad():
            w_src, b_src = state[f"{group}.weight"], state[f"{group}.bias"]
            for j, p in enumerate(tgt_paths):
                if p in src_paths:
                    i = src_paths.index(p)
                    if w_src.shape[1] == fresh.weight.shape[1]:
                        fresh.weight[j] = w_src[i]
                        fresh.bias[j] = b_src[i]
                        rows.append(tax.labels[dt][j])
        if rows:
            copied[group] = tuple(rows)
        fresh_modules[group] = fresh
    for d in range(n_src, n_tgt):  # attention of levels the source had not
        reinit.append(f"laterals.{d}")
        fresh_modules[f"laterals.{d}"] = target._make_lateral(d).to("cpu")
        reinit.append(f"local_heads.{d}")
        fresh_modules[f"local_heads.{d}"] = nn.Linear(
            target.config.fpn_channels, tax.num_classes[d]
        )
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
    dropped = sorted({_group(k) for k in state if k not in expected})
    bad = [g for g in dropped if not g.startswith(("laterals.", "local_heads."))]
    if bad:
        raise WeightsError(
            f"weights from {source} hold {bad}, which this model has no place for and no taxonomy "
            "change explains; load the checkpoint with the config it was saved with"
        )
    kept = sorted({_group(k) for k in expected} - set(reinit), key=_group_order)
    report = TransferReport(
        source_taxonomy=source_tax.name,
        target_taxonomy=tax.name,
        transferred=tuple(kept),
        reinitialised=tuple(sorted(reinit, key=_group_order)),
        copied_rows=copied,
        dropped=tuple(dropped),
    )
    return new_state, report


def _group_order(group: str) -> tuple[int, str]:
    order = ["backbone", "f5", "laterals", "local_heads", "global_head"]
    head = group.split(".")[0]
    return (order.index(head) if head in order else len(order), group)
