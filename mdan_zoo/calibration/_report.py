"""The ``"calibration"`` block of an evaluation report: per level and branch, for the consistent
path's joint probability, and the selective-prediction (risk-coverage) view per level.

Kept apart from :mod:`mdan_zoo.evaluation` so that the Table-3 report and the calibration block
change independently; ``EvalReport`` holds the block and calls these functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import file_parts
from ..taxonomy import Taxonomy
from ._metrics import (
    COVERAGES,
    N_BINS,
    calibration_metrics,
    claim_metrics,
    reliability_bins,
    selective_metrics,
    top_label,
)
from ._reliability import save_reliability_png

__all__ = [
    "calibration_block",
    "calibration_flat",
    "calibration_table",
    "consistent_path_numpy",
    "jsonable_block",
    "write_reliability_pngs",
]

_BRANCHES = ("local", "global", "overall")
_METRICS = ("ece", "adaptive_ece", "brier", "nll", "roc_auc")


def consistent_path_numpy(
    taxonomy: Taxonomy, probs: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The hierarchy-consistent answer of every image (the fine class whose path maximises
    ``prod_l P_O^l``, as ``predict`` gives it) and the prefix products of its path:
    ``(fine [n], path_probs [n, levels])``; ``path_probs[:, -1]`` is the joint probability."""
    paths = np.array([taxonomy.ancestor_indices(k) for k in range(taxonomy.num_classes[-1])])
    logs = [np.log(np.maximum(np.asarray(p, dtype=np.float64), 1e-30)) for p in probs]
    log_joint = sum(lp[:, paths[:, d]] for d, lp in enumerate(logs))
    best = np.asarray(log_joint).argmax(axis=1)
    rows = np.arange(best.size)
    steps = np.stack([logs[d][rows, paths[best, d]] for d in range(len(logs))], axis=1)
    return best, np.exp(np.cumsum(steps, axis=1))


def calibration_block(
    taxonomy: Taxonomy,
    level_targets: Sequence[np.ndarray],
    probs: Mapping[str, Sequence[np.ndarray]],
    *,
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """Every calibration number of one evaluation.

    ``{"n_bins", "local" | "global" | "overall": {level: {ece, adaptive_ece, brier, nll,
    roc_auc}}, "consistent": {the same five, for the joint probability that the whole
    consistent path is right, plus accuracy and mean_confidence}, "selective": {level:
    {accuracy_at_coverage: {"0.8", "0.9"}, risk_coverage: {coverage, risk, threshold,
    aurc}}}, "reliability": {level: P_O's bins}}``.
    """
    names = taxonomy.level_names
    block: dict[str, Any] = {"n_bins": n_bins}
    for branch in _BRANCHES:
        block[branch] = {
            name: calibration_metrics(p, y, n_bins=n_bins)
            for name, p, y in zip(names, probs[branch], level_targets, strict=True)
        }
    fine, path_probs = consistent_path_numpy(taxonomy, probs["overall"])
    paths = np.array([taxonomy.ancestor_indices(k) for k in range(taxonomy.num_classes[-1])])
    right = [paths[fine, d] == y for d, y in enumerate(level_targets)]
    joint = path_probs[:, -1]
    block["consistent"] = {
        **claim_metrics(joint, right[-1], n_bins=n_bins),
        "accuracy": float(right[-1].mean()),
        "mean_confidence": float(joint.mean()),
    }
    block["selective"] = {
        name: selective_metrics(path_probs[:, d], right[d], coverages=COVERAGES)
        for d, name in enumerate(names)
    }
    reliability = {}
    for name, p, y in zip(names, probs["overall"], level_targets, strict=True):
        bins = reliability_bins(*top_label(p, y), n_bins=n_bins)
        reliability[name] = {k: bins[k].tolist() for k in ("count", "confidence", "accuracy")}
    block["reliability"] = reliability
    return block


def jsonable_block(value: Any) -> Any:
    """The block with NaN (an AUC without both classes, an empty bin) as JSON null."""
    if isinstance(value, Mapping):
        return {k: jsonable_block(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable_block(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def calibration_flat(block: Mapping[str, Any]) -> dict[str, float]:
    """Scalars for metrics.jsonl and ``select_metric``: ``<branch>/ece/<level>``,
    ``<branch>/nll/<level>`` and ``consistent/ece``."""
    out: dict[str, float] = {}
    for branch in _BRANCHES:
        for level, m in block.get(branch, {}).items():
            out[f"{branch}/ece/{level}"] = m["ece"]
            out[f"{branch}/nll/{level}"] = m["nll"]
    if "consistent" in block:
        out["consistent/ece"] = block["consistent"]["ece"]
    return out


def _num(value: float, scale: float = 1.0, width: int = 6, digits: int = 2) -> str:
    return f"{'n/a':>{width}}" if not math.isfinite(value) else f"{scale * value:{width}.{digits}f}"


def calibration_table(
    block: Mapping[str, Any], taxonomy: Taxonomy, accuracy: Mapping[str, Sequence[float]]
) -> str:
    """The block as text: per level, P_O's accuracy beside its ECE, adaptive ECE (%), Brier,
    NLL and ROC-AUC; ECE of P_L and P_G; the consistent path; accuracy at 80/90 % coverage."""
    rows = [f"{n} ({k})" for n, k in zip(taxonomy.level_names, taxonomy.num_classes, strict=True)]
    width = max(len("consistent path"), *(len(r) for r in rows))
    head = f"{'Acc_O':>6} {'ECE_O':>6} {'aECE_O':>6} {'Brier':>6} {'NLL':>6} {'AUC':>6}"
    lines = [
        f"calibration ({block['n_bins']} bins; ECE in %):",
        f"{'level':<{width}}  {head} {'ECE_L':>6} {'ECE_G':>6}",
    ]
    for d, (row, name) in enumerate(zip(rows, taxonomy.level_names, strict=True)):
        m = block["overall"][name]
        cells = " ".join(
            [
                _num(accuracy["overall"][d], 100),
                _num(m["ece"], 100),
                _num(m["adaptive_ece"], 100),
                _num(m["brier"], 1, 6, 3),
                _num(m["nll"], 1, 6, 3),
                _num(m["roc_auc"], 1, 6, 3),
                _num(block["local"][name]["ece"], 100),
                _num(block["global"][name]["ece"], 100),
            ]
        )
        lines.append(f"{row:<{width}}  {cells}")
    c = block["consistent"]
    cells = " ".join(
        [
            _num(c["accuracy"], 100),
            _num(c["ece"], 100),
            _num(c["adaptive_ece"], 100),
            _num(c["brier"], 1, 6, 3),
            _num(c["nll"], 1, 6, 3),
            _num(c["roc_auc"], 1, 6, 3),
        ]
    )
    lines.append(f"{'consistent path':<{width}}  {cells}  (joint P_O; AUC: right vs wrong)")
    lines.append("selective accuracy on the most confident images (consistent path):")
    for row, name in zip(rows, taxonomy.level_names, strict=True):
        sel = block["selective"][name]
        at = "  ".join(
            f"{100 * float(cov):.0f}% covered {_num(acc, 100).strip()}%"
            for cov, acc in sel["accuracy_at_coverage"].items()
        )
        lines.append(f"  {row}: {at}  AURC {_num(sel['risk_coverage']['aurc'], 1, 0, 3)}")
    return "\n".join(lines)


def write_reliability_pngs(
    block: Mapping[str, Any], taxonomy: Taxonomy, directory: str | os.PathLike[str]
) -> dict[str, Path]:
    """``reliability_P_O_<level>.png`` per level, beside the confusion matrices; ``<level>`` is
    the level's name made a safe file-name part (:func:`~mdan_zoo._io.file_parts`), as theirs."""
    paths = {}
    for name, part in zip(taxonomy.level_names, file_parts(taxonomy.level_names), strict=True):
        stem = f"reliability_P_O_{part}"
        path = Path(directory) / f"{stem}.png"
        save_reliability_png(
            block["reliability"][name], path, title=f"P_O, level '{name}': reliability"
        )
        paths[stem] = path
    return paths
