"""Hierarchical evaluation in the shape of the paper's Table 3 and Fig. 6.

For every level: accuracy of the local prediction P_L, the global prediction P_G (finest level
and its Eq. 2 sums) and the overall prediction P_O. Two hierarchy measures, per branch:

* the violation rate (Sec. 3.2: "classified in *positive* at l_a = 1 but in *sadness* at
  l_a = 2"): the share of samples whose *predicted* labels do not form a path of the tree (a
  predicted label's parent is not the label predicted one level up); for P_G too, since Eq. 2
  makes its probabilities consistent but the per-level argmax can still break the tree;
* the off-block rate (Fig. 6), per level below the top: the share of samples whose predicted
  class lies outside the *true* parent's block, i.e. the mass of the confusion matrix outside
  the red-lined diagonal blocks ("wrong cases at top-right and bottom-left").

Also per-class precision and recall, and confusion matrices as CSV and as PNG with red lines
between parent groups (Fig. 6). The arithmetic is plain numpy so that it can be checked by
hand; images are drawn with Pillow.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, Subset

from ._io import atomic_path, atomic_write_text, file_parts
from ._threads import thread_budget, using_threads
from .calibration import (
    calibration_block,
    calibration_flat,
    calibration_table,
    jsonable_block,
    write_reliability_pngs,
)
from .prediction.overlay import font as overlay_font
from .taxonomy import Taxonomy

__all__ = [
    "BRANCHES",
    "EvalReport",
    "collect_predictions",
    "compute_report",
    "confusion_matrix",
    "confusion_stem",
    "evaluate",
    "model_temperatures",
    "save_confusion_csv",
    "save_confusion_png",
]

BRANCHES = ("local", "global", "overall")
"""P_L, P_G and P_O, the three columns of Table 3."""


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """``M[t, p]`` = number of samples of true class ``t`` predicted as ``p``."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has {p.shape}")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


@dataclass
class EvalReport:
    """Table-3 style metrics of one model on one split.

    Attributes:
        taxonomy: the label tree the predictions follow.
        num_samples: images evaluated.
        accuracy: ``{branch: [accuracy per level, coarse to fine]}`` for local / global / overall.
        violation_rate: ``{branch: fraction of samples whose predicted path breaks the tree}``
            (Sec. 3.2).
        confusion: ``{branch: [confusion matrix per level]}`` (rows: true, columns: predicted).
        per_class: for P_O, per level, ``{label: {precision, recall, support}}``.
        off_block_rate: ``{branch: {level name: fraction of samples predicted outside the true
            parent's block}}`` for every level below the top (Fig. 6).
        title: the first line of :meth:`table` (default ``"<taxonomy>: <n> images"``).
        warnings: sentences printed under the table and kept in ``report.json`` (the trainer
            puts there what :mod:`mdan_zoo.judge` found: a split too small, a model that
            learned nothing).
        calibration: ECE, adaptive ECE, Brier, NLL and ROC-AUC per branch and level, for the
            consistent path, and the risk-coverage view per level (docs/evaluation.md;
            :func:`mdan_zoo.calibration.calibration_block`).
        temperatures: the temperatures the probabilities were made with (``{"local": {level:
            T}, "global": T}``), None for the raw model.
    """

    taxonomy: Taxonomy
    num_samples: int
    accuracy: dict[str, list[float]]
    violation_rate: dict[str, float]
    confusion: dict[str, list[np.ndarray]]
    per_class: list[dict[str, dict[str, float]]] = field(default_factory=list)
    off_block_rate: dict[str, dict[str, float]] = field(default_factory=dict)
    title: str | None = None
    warnings: list[str] = field(default_factory=list)

    calibration: dict[str, Any] = field(default_factory=dict)
    temperatures: dict[str, Any] | None = None

    def baselines(self) -> dict[str, list[float]]:
        """What a model that learned nothing scores, per level (coarse to fine): ``majority``,
        always answering this split's most common class; ``chance``, a uniform guess
        (1 / classes)."""
        majority = []
        for m in self.confusion["overall"]:
            rows = np.asarray(m).sum(axis=1)
            majority.append(float(rows.max() / max(1, rows.sum())))
        return {"majority": majority, "chance": [1.0 / k for k in self.taxonomy.num_classes]}

    def flat(self) -> dict[str, float]:
        """Scalar metrics by name: ``overall/acc/<level>``, ``overall/mean`` (mean over levels),
        ``overall/violations``, ``overall/off_block/<level>`` (levels below the top) and the
        same for ``local`` and ``global``."""
        out: dict[str, float] = {}
        for branch in BRANCHES:
            for name, acc in zip(self.taxonomy.level_names, self.accuracy[branch], strict=True):
                out[f"{branch}/acc/{name}"] = acc
            out[f"{branch}/mean"] = float(np.mean(self.accuracy[branch]))
            out[f"{branch}/violations"] = self.violation_rate[branch]
            for name, rate in self.off_block_rate.get(branch, {}).items():
                out[f"{branch}/off_block/{name}"] = rate
        out.update(calibration_flat(self.calibration))
        return out

    def to_dict(self) -> dict[str, Any]:
        tax = self.taxonomy
        return {
            "taxonomy": tax.name,
            "levels": list(tax.level_names),
            "labels": [list(lv) for lv in tax.labels],
            "num_samples": self.num_samples,
            "accuracy": {
                b: dict(zip(tax.level_names, v, strict=True)) for b, v in self.accuracy.items()
            },
            "violation_rate": dict(self.violation_rate),
            "off_block_rate": {b: dict(v) for b, v in self.off_block_rate.items()},
            "per_class": dict(zip(tax.level_names, self.per_class, strict=True)),
            "confusion": {
                b: {n: m.tolist() for n, m in zip(tax.level_names, ms, strict=True)}
                for b, ms in self.confusion.items()
            },
            "metrics": jsonable_block(self.flat()),
            "baselines": {
                b: dict(zip(tax.level_names, v, strict=True)) for b, v in self.baselines().items()
            },
            "warnings": list(self.warnings),
            **({"calibration": self._calibration_dict()} if self.calibration else {}),
        }

    def _calibration_dict(self) -> dict[str, Any]:
        return jsonable_block({**self.calibration, "temperatures": self.temperatures})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self, title: str | None = None) -> str:
        """The report as text: a Table-3 block (Acc_L / Acc_G / Acc_O per level, beside the
        majority-class and chance baselines), violations, then any warnings."""
        tax = self.taxonomy
        lines = [title or self.title or f"{tax.name}: {self.num_samples} images"]
        width = max(
            len(f"{n} ({k})") for n, k in zip(tax.level_names, tax.num_classes, strict=True)
        )
        width = max(width, len("level"))
        base = self.baselines()
        lines.append(
            f"{'level':<{width}}  {'Acc_L':>7} {'Acc_G':>7} {'Acc_O':>7}  {'majority':>8} "
            f"{'chance':>7}"
        )
        for d, (name, k) in enumerate(zip(tax.level_names, tax.num_classes, strict=True)):
            cells = " ".join(f"{100 * self.accuracy[b][d]:7.2f}" for b in BRANCHES)
            floor = f"{100 * base['majority'][d]:8.2f} {100 * base['chance'][d]:7.2f}"
            lines.append(f"{f'{name} ({k})':<{width}}  {cells}  {floor}")
        lines.append(
            "(accuracy in %; majority: always this split's most common class; chance: 1/classes)"
        )
        if tax.num_levels > 1:
            v = self.violation_rate
            lines.append(
                f"hierarchy violations: P_L {100 * v['local']:.2f}%  P_O {100 * v['overall']:.2f}%"
                f"  P_G {100 * v['global']:.2f}%"
            )
            lines.append("predicted outside the true parent's block (Fig. 6):")
            for name in tax.level_names[1:]:
                r = {b: self.off_block_rate[b][name] for b in BRANCHES}
                lines.append(
                    f"  {name}: P_L {100 * r['local']:.2f}%  P_O {100 * r['overall']:.2f}%"
                    f"  P_G {100 * r['global']:.2f}%"
                )
        if self.calibration:
            lines.append(calibration_table(self.calibration, tax, self.accuracy))
        if self.temperatures is not None:
            lines.append(_temperature_line(self.temperatures))
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)

    def write(
        self, directory: str | os.PathLike[str], *, title: str | None = None
    ) -> dict[str, Path]:
        """Write ``report.json``, ``report.txt`` and, per branch P_O / P_L and level, the
        confusion matrix as CSV and PNG (``confusion_<branch>_<level>``, the level name made
        a safe file-name part by :func:`~mdan_zoo._io.file_parts`). Each file is atomic and
        ``report.json`` comes last, so a kill midway never leaves a report.json without the
        rest (the protocol's "finished" test). Returns the paths by name."""
        directory = Path(directory)
        paths = {"json": directory / "report.json", "text": directory / "report.txt"}
        atomic_write_text(paths["text"], self.table(title) + "\n")
        tag = {"overall": "P_O", "local": "P_L"}
        parts = file_parts(self.taxonomy.level_names)  # names from a tree never steer a path
        for branch in ("overall", "local"):
            for d, (name, part) in enumerate(zip(self.taxonomy.level_names, parts, strict=True)):
                stem = confusion_stem(tag[branch], part)
                save_confusion_csv(
                    self.confusion[branch][d], self.taxonomy, d, directory / f"{stem}.csv"
                )
                save_confusion_png(
                    self.confusion[branch][d],
                    self.taxonomy,
                    d,
                    directory / f"{stem}.png",
                    title=f"{tag[branch]}, level '{name}'",
                )
                paths[stem] = directory / f"{stem}.png"
        if self.calibration:
            paths.update(write_reliability_pngs(self.calibration, self.taxonomy, directory))
        self.to_json(paths["json"])  # last: where report.json is, the whole report is
        return paths


def confusion_stem(branch_tag: str, level_part: str) -> str:
    """``confusion_<P_O|P_L>_<level>``, ``level_part`` from :func:`~mdan_zoo._io.file_parts`."""
    return f"confusion_{branch_tag}_{level_part}"


def compute_report(
    taxonomy: Taxonomy,
    fine_targets: Sequence[int] | np.ndarray,
    probs: Mapping[str, Sequence[np.ndarray]],
) -> EvalReport:
    """Metrics from fine-level targets and ``{branch: [probabilities per level]}``.

    Targets at coarser levels are the ancestors of the fine target; predictions are the argmax
    of each level's probabilities.
    """
    y_fine = np.asarray(fine_targets, dtype=np.int64)
    n = len(y_fine)
    if n == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    paths = np.array([taxonomy.ancestor_indices(int(k)) for k in range(taxonomy.num_classes[-1])])
    y = [paths[y_fine, d] for d in range(taxonomy.num_levels)]
    accuracy: dict[str, list[float]] = {}
    violations: dict[str, float] = {}
    off_block: dict[str, dict[str, float]] = {}
    confusion: dict[str, list[np.ndarray]] = {}
    preds_by_branch: dict[str, list[np.ndarray]] = {}
    for branch in BRANCHES:
        level_probs = probs[branch]
        if len(level_probs) != taxonomy.num_levels:
            raise ValueError(f"{branch}: need probabilities for {taxonomy.num_levels} levels")
        preds = []
        for d, p in enumerate(level_probs):
            p = np.asarray(p)
            if p.shape != (n, taxonomy.num_classes[d]):
                raise ValueError(
                    f"{branch} level {d}: probabilities of shape {p.shape}, expected "
                    f"{(n, taxonomy.num_classes[d])}"
                )
            preds.append(p.argmax(axis=1))
        preds_by_branch[branch] = preds
        accuracy[branch] = [float((pr == t).mean()) for pr, t in zip(preds, y, strict=True)]
        violations[branch] = _violation_rate(taxonomy, preds)
        off_block[branch] = _off_block_rates(taxonomy, y, preds)
        confusion[branch] = [
            confusion_matrix(t, pr, k)
            for t, pr, k in zip(y, preds, taxonomy.num_classes, strict=True)
        ]
    per_class = []
    for d in range(taxonomy.num_levels):
        m = confusion["overall"][d]
        tp = np.diag(m).astype(float)
        pred_count, true_count = m.sum(axis=0), m.sum(axis=1)
        per_class.append(
            {
                label: {
                    "precision": float(tp[i] / pred_count[i]) if pred_count[i] else 0.0,
                    "recall": float(tp[i] / true_count[i]) if true_count[i] else 0.0,
                    "support": int(true_count[i]),
                }
                for i, label in enumerate(taxonomy.labels[d])
            }
        )
    return EvalReport(
        taxonomy=taxonomy,
        num_samples=n,
        accuracy=accuracy,
        violation_rate=violations,
        confusion=confusion,
        per_class=per_class,
        off_block_rate=off_block,
        calibration=calibration_block(taxonomy, y, {b: probs[b] for b in BRANCHES}),
    )


def _temperature_line(temperatures: Mapping[str, Any]) -> str:
    local = ", ".join(f"{k} {v:.3f}" for k, v in temperatures["local"].items())
    return (
        f"temperatures (fitted on validation): local {local}; global {temperatures['global']:.3f}"
    )


def model_temperatures(model: Any, *, calibration: bool = True) -> dict[str, Any] | None:
    """The temperatures ``model`` applies (``{"local": {level: T}, "global": T}``), or None."""
    config: Any = getattr(model, "config", None)
    local = getattr(config, "local_temperatures", None)
    if not calibration or local is None:
        return None
    names = model.taxonomy.level_names
    return {"local": dict(zip(names, local, strict=True)), "global": config.global_temperature}


def _off_block_rates(
    taxonomy: Taxonomy, y: Sequence[np.ndarray], preds: Sequence[np.ndarray]
) -> dict[str, float]:
    """Per level below the top: the share of samples whose predicted class's parent is not the
    true parent (Fig. 6: the confusion mass outside the diagonal parent blocks)."""
    out = {}
    for d in range(1, taxonomy.num_levels):
        parent = np.asarray(taxonomy.parents[d])
        out[taxonomy.level_names[d]] = float((parent[preds[d]] != y[d - 1]).mean())
    return out


def _violation_rate(taxonomy: Taxonomy, preds: Sequence[np.ndarray]) -> float:
    bad = np.zeros(len(preds[0]), dtype=bool)
    for d in range(1, taxonomy.num_levels):
        parent = np.asarray(taxonomy.parents[d])
        bad |= parent[preds[d]] != preds[d - 1]
    return float(bad.mean())


# ---------------------------------------------------------------------- running a model
@torch.no_grad()
def collect_predictions(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    distributed: bool = False,
    calibration: bool = True,
) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Run ``model`` (in eval mode) over ``dataset`` of ``(image, fine_index)``.

    With ``distributed`` every process takes every ``world``-th image and the results are
    gathered on all processes in dataset order. Returns fine targets and
    ``{branch: [probabilities per level]}``. ``calibration=False`` ignores the temperatures
    the model stores (the raw model's probabilities).
    """
    device = torch.device(device)
    indices = np.arange(len(dataset))  # type: ignore[arg-type]
    if distributed:
        indices = indices[dist.get_rank() :: dist.get_world_size()]
    loader = DataLoader(
        Subset(dataset, indices.tolist()),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="evaluate", leave=False)  # type: ignore[assignment]
    was_training = model.training
    model.eval()
    targets: list[np.ndarray] = []
    out: dict[str, list[list[np.ndarray]]] = {b: [] for b in BRANCHES}
    try:
        for images, y in loader:
            images = images.to(device, non_blocking=True)
            ctx = (
                torch.autocast(device_type=device.type, dtype=amp_dtype)
                if amp_dtype is not None
                else torch.autocast(device_type=device.type, enabled=False)
            )
            with ctx:
                res = model(images) if calibration else model(images, calibration=False)
            targets.append(np.asarray(y, dtype=np.int64))
            out["local"].append([lv.local_probs.float().cpu().numpy() for lv in res])
            out["global"].append([lv.global_probs.float().cpu().numpy() for lv in res])
            out["overall"].append([lv.probs.float().cpu().numpy() for lv in res])
    finally:
        model.train(was_training)
    n_levels = len(next(iter(out.values()))[0]) if targets else 0
    y_all = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
    probs = {
        b: [np.concatenate([batch[d] for batch in out[b]]) for d in range(n_levels)]
        for b in BRANCHES
    }
    if distributed:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (indices, y_all, probs))
        order = np.concatenate([g[0] for g in gathered])
        inv = np.argsort(order)
        y_all = np.concatenate([g[1] for g in gathered])[inv]
        levels = len(gathered[0][2]["overall"])
        probs = {
            b: [np.concatenate([g[2][b][d] for g in gathered])[inv] for d in range(levels)]
            for b in BRANCHES
        }
    return y_all, probs


def evaluate(
    model: Any,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    distributed: bool = False,
    threads: int | None = None,
    calibration: bool = True,
) -> EvalReport:
    """Evaluate an MDAN on a dataset of ``(image_tensor, fine_index)``: the Table-3 report and
    its calibration block.

    ``threads``: torch intra-op threads for the call (None: the cores ``workers`` leave, so
    the two never exceed the cores; :func:`~mdan_zoo._threads.thread_budget`); ``workers``
    is capped to fit beside them. ``calibration=False`` measures the raw model (no
    temperatures)."""
    n_threads, workers = thread_budget(threads, workers)
    with using_threads(n_threads):
        y, probs = collect_predictions(
            model,
            dataset,
            batch_size=batch_size,
            device=device,
            workers=workers,
            amp_dtype=amp_dtype,
            progress=progress,
            distributed=distributed,
            calibration=calibration,
        )
    report = compute_report(model.taxonomy, y, probs)
    report.temperatures = model_temperatures(model, calibration=calibration)
    return report


# ---------------------------------------------------------------------- writing matrices
def save_confusion_csv(
    matrix: np.ndarray, taxonomy: Taxonomy, level: int, path: str | os.PathLike[str]
) -> None:
    """CSV in taxonomy order: header ``true\\predicted,<labels>``, one row per true class."""
    labels = taxonomy.labels[level]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true\\predicted", *labels])
    for label, row in zip(labels, np.asarray(matrix).tolist(), strict=True):
        w.writerow([label, *row])
    atomic_write_text(Path(path), buf.getvalue())


def _group_order(taxonomy: Taxonomy, level: int) -> tuple[list[int], list[int]]:
    """Class order with siblings together, and the positions where a new parent group starts."""
    if level == 0:
        return list(range(taxonomy.num_classes[0])), []
    parents = taxonomy.parents[level]
    order = sorted(range(len(parents)), key=lambda k: (parents[k], k))
    bounds = [i for i in range(1, len(order)) if parents[order[i]] != parents[order[i - 1]]]
    return order, bounds


def save_confusion_png(
    matrix: np.ndarray,
    taxonomy: Taxonomy,
    level: int,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> dict[str, Any]:
    """Draw a row-normalised confusion matrix like the paper's Fig. 6: grey levels (dark =
    many), classes grouped by parent, red lines between parent groups, a grey scale bar.
    Cells print their row percentage with "%"; the column right of the grid gives each row's
    number of images (``n``), and a row without images is shaded and says so (rather than
    reading as 0 % recall).

    Returns the geometry (``x0``, ``y0``, ``cell``, ``order``, ``bounds``) so that callers and
    tests can find cells and lines in the picture.
    """
    m = np.asarray(matrix, dtype=np.float64)
    k = m.shape[0]
    if m.shape != (k, k) or k != taxonomy.num_classes[level]:
        raise ValueError(
            f"matrix of shape {m.shape} does not fit level {level} ({taxonomy.num_classes[level]} classes)"
        )
    order, bounds = _group_order(taxonomy, level)
    m = m[np.ix_(order, order)]
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    counts = rows[:, 0].astype(np.int64)
    labels = [taxonomy.labels[level][i] for i in order]
    cell = int(max(22, min(56, 560 // k)))
    font = overlay_font(max(9, min(14, cell // 3)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(probe.textlength(lb, font=font)) for lb in labels) + 10
    x0, y0 = text_w + 24, text_w + 40
    grid = cell * k
    n_w = int(probe.textlength(f"n={max(int(counts.max()), 0)}", font=font)) + 12
    width, height = x0 + grid + n_w + 90, y0 + grid + 16
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (8, 6),
        title or f"confusion matrix, level {taxonomy.level_names[level]}",
        fill="black",
        font=font,
    )
    for r in range(k):
        if counts[r] == 0:  # no image of this class: nothing to say, not 0 % recall
            row_box = (x0, y0 + r * cell, x0 + grid - 1, y0 + (r + 1) * cell - 1)
            draw.rectangle(row_box, fill=(250, 236, 190))
            note = "no images of this class"
            draw.text(
                (
                    x0 + max(2, (grid - probe.textlength(note, font=font)) / 2),
                    y0 + r * cell + cell / 2 - 6,
                ),
                note,
                fill=(120, 80, 0),
                font=font,
            )
            continue
        for c in range(k):
            v = norm[r, c]
            g = int(round(255 * (1.0 - v)))
            box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell - 1, y0 + (r + 1) * cell - 1)
            draw.rectangle(box, fill=(g, g, g))
            if cell >= 26:
                txt = f"{100 * v:.0f}%"
                tw = probe.textlength(txt, font=font)
                draw.text(
                    (box[0] + (cell - tw) / 2, box[1] + cell / 2 - 6),
                    txt,
                    fill="white" if v > 0.5 else "black",
                    font=font,
                )
    for r, lb in enumerate(labels):  # row labels (true) on the left
        draw.text(
            (x0 - 6 - probe.textlength(lb, font=font), y0 + r * cell + cell / 2 - 6),
            lb,
            fill="black",
            font=font,
        )
    for c, lb in enumerate(labels):  # column labels (predicted) on top, rotated
        tw = int(probe.textlength(lb, font=font)) + 4
        tile = Image.new("RGB", (tw, 16), "white")
        ImageDraw.Draw(tile).text((2, 1), lb, fill="black", font=font)
        tile = tile.rotate(90, expand=True)
        img.paste(tile, (x0 + c * cell + cell // 2 - 8, y0 - 6 - tile.height))
    for r in range(k):  # images per row, right of the grid
        draw.text(
            (x0 + grid + 6, y0 + r * cell + cell / 2 - 6), f"n={counts[r]}", fill="black", font=font
        )
    draw.text((4, y0 + grid // 2), "true", fill="black", font=font)
    draw.text((x0 + grid // 2 - 20, 22), "predicted", fill="black", font=font)
    for b in bounds:  # parent groups (Fig. 6's red lines)
        pos = b * cell
        draw.line([(x0 + pos, y0), (x0 + pos, y0 + grid)], fill=(255, 0, 0), width=2)
        draw.line([(x0, y0 + pos), (x0 + grid, y0 + pos)], fill=(255, 0, 0), width=2)
    bx = x0 + grid + n_w + 14  # grey scale bar
    for i in range(grid):
        g = int(round(255 * i / max(grid - 1, 1)))
        draw.line([(bx, y0 + i), (bx + 14, y0 + i)], fill=(g, g, g))
    draw.text((bx + 18, y0 - 4), "100%", fill="black", font=font)
    draw.text((bx + 18, y0 + grid - 10), "0%", fill="black", font=font)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return {"x0": x0, "y0": y0, "cell": cell, "order": order, "bounds": bounds}
