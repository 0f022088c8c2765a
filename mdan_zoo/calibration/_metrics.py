"""Whether a 0.9 means 90 %: calibration and selective-prediction metrics, in plain numpy.

Every function takes probabilities ``[n, K]`` (rows summing to one) and true class indices
``[n]``, or, for a single yes/no claim such as "this hierarchy path is right", a confidence
``[n]`` and a correctness ``[n]`` of booleans. docs/evaluation.md gives each formula; the
arithmetic is kept simple enough to check by hand.

* :func:`expected_calibration_error`: ECE, top-label, equal-width bins (Guo et al., 2017);
* :func:`adaptive_calibration_error`: the same with equal-mass bins (Nixon et al., 2019);
* :func:`brier_score`, :func:`negative_log_likelihood`, :func:`roc_auc_ovr` (macro
  one-vs-rest), and their one-claim forms :func:`binary_brier`, :func:`binary_nll`,
  :func:`binary_roc_auc`;
* :func:`risk_coverage` and :func:`accuracy_at_coverage`: answer only the most confident
  share of the images (selective prediction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "COVERAGES",
    "N_BINS",
    "NLL_EPS",
    "accuracy_at_coverage",
    "adaptive_calibration_error",
    "binary_brier",
    "binary_nll",
    "binary_roc_auc",
    "brier_score",
    "calibration_metrics",
    "claim_metrics",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
    "risk_coverage",
    "roc_auc_ovr",
    "selective_metrics",
    "top_label",
]

N_BINS = 15
"""Bins of the ECE (the common choice since Guo et al., 2017)."""
COVERAGES = (0.8, 0.9)
"""Coverages at which the report gives the selective accuracy."""
NLL_EPS = 1e-12
"""Probabilities are clamped to this before the log, so one zero does not make NLL infinite."""
_CURVE_POINTS = 20


def _probs_targets(probs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"need probabilities [n, K] and targets [n], got {p.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"targets must be class indices in [0, {p.shape[1]})")
    return p, y


def _claims(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if c.ndim != 1 or ok.shape != c.shape:
        raise ValueError(f"need confidence [n] and correct [n], got {c.shape} and {ok.shape}")
    return c, ok


def top_label(probs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """The top-label claim of every row: (its probability, whether the argmax is the target)."""
    p, y = _probs_targets(probs, targets)
    return p.max(axis=1), p.argmax(axis=1) == y


def reliability_bins(confidence: Any, correct: Any, *, n_bins: int = N_BINS) -> dict[str, Any]:
    """Equal-width bins ``((m-1)/M, m/M]`` (a confidence of 0 joins the first): per bin the
    count, the mean confidence and the accuracy (NaN for an empty bin). The reliability
    diagram draws them; the ECE sums their gaps."""
    c, ok = _claims(confidence, correct)
    index = np.clip(np.ceil(c * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=c, minlength=n_bins)
    acc_sum = np.bincount(index, weights=ok.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": np.linspace(0.0, 1.0, n_bins + 1),
            "count": count,
            "confidence": np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan),
            "accuracy": np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan),
        }


def expected_calibration_error(confidence: Any, correct: Any, *, n_bins: int = N_BINS) -> float:
    """ECE = sum_m |B_m|/n |acc(B_m) - conf(B_m)| over ``n_bins`` equal-width bins."""
    c, ok = _claims(confidence, correct)
    if c.size == 0:
        return math.nan
    bins = reliability_bins(c, ok, n_bins=n_bins)
    full = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][full] - bins["confidence"][full])
    return float((bins["count"][full] * gaps).sum() / c.size)


def adaptive_calibration_error(confidence: Any, correct: Any, *, n_bins: int = N_BINS) -> float:
    """The ECE with equal-mass bins: the claims sorted by confidence and cut into
    ``min(n_bins, n)`` runs of (nearly) equal size (``np.array_split``: the first bins take
    the remainder), so that no bin is nearly empty where the model is rarely unsure."""
    c, ok = _claims(confidence, correct)
    if c.size == 0:
        return math.nan
    order = np.argsort(c, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(n_bins, c.size)):
        total += part.size * abs(ok[part].mean() - c[part].mean())
    return float(total / c.size)


def brier_score(probs: Any, targets: Any) -> float:
    """Multi-class Brier score: mean over images of ``sum_k (p_k - [k = y])^2`` (0 to 2)."""
    p, y = _probs_targets(probs, targets)
    if y.size == 0:
        return math.nan
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(probs: Any, targets: Any, *, eps: float = NLL_EPS) -> float:
    """Mean of ``-log max(p_y, eps)`` (nats)."""
    p, y = _probs_targets(probs, targets)
    if y.size == 0:
        return math.nan
    return float(-np.log(np.maximum(p[np.arange(y.size), y], eps)).mean())


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (as the Mann-Whitney U statistic wants)."""
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def binary_roc_auc(scores: Any, positive: Any) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` samples: the chance that a
    random positive scores above a random negative (ties count half). NaN when either class
    is absent."""
    s, pos = _claims(scores, positive)
    n_pos = int(pos.sum())
    n_neg = s.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_ovr(probs: Any, targets: Any) -> float:
    """Macro one-vs-rest ROC-AUC: the mean over classes of the AUC of ``p_k`` for "class k"
    against the rest, over the classes that have both positive and negative images (NaN when
    none does)."""
    p, y = _probs_targets(probs, targets)
    aucs = [binary_roc_auc(p[:, k], y == k) for k in range(p.shape[1])]
    defined = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(defined)) if defined else math.nan


def binary_brier(confidence: Any, correct: Any) -> float:
    """Brier score of one claim per image: mean of ``(c - [correct])^2`` (0 to 1)."""
    c, ok = _claims(confidence, correct)
    return float(((c - ok) ** 2).mean()) if c.size else math.nan


def binary_nll(confidence: Any, correct: Any, *, eps: float = NLL_EPS) -> float:
    """Log loss of one claim per image: mean of ``-log c`` (right) or ``-log(1 - c)`` (wrong)."""
    c, ok = _claims(confidence, correct)
    if c.size == 0:
        return math.nan
    likelihood = np.where(ok, c, 1.0 - c)
    return float(-np.log(np.maximum(likelihood, eps)).mean())


def calibration_metrics(probs: Any, targets: Any, *, n_bins: int = N_BINS) -> dict[str, float]:
    """``ece``, ``adaptive_ece``, ``brier``, ``nll`` and ``roc_auc`` of one level's
    probabilities (top-label ECEs, multi-class Brier and NLL, macro one-vs-rest AUC)."""
    conf, ok = top_label(probs, targets)
    return {
        "ece": expected_calibration_error(conf, ok, n_bins=n_bins),
        "adaptive_ece": adaptive_calibration_error(conf, ok, n_bins=n_bins),
        "brier": brier_score(probs, targets),
        "nll": negative_log_likelihood(probs, targets),
        "roc_auc": roc_auc_ovr(probs, targets),
    }


def claim_metrics(confidence: Any, correct: Any, *, n_bins: int = N_BINS) -> dict[str, float]:
    """The same five numbers for one claim per image (the consistent path's joint
    probability that the whole path is right): the AUC is that of telling right from wrong."""
    return {
        "ece": expected_calibration_error(confidence, correct, n_bins=n_bins),
        "adaptive_ece": adaptive_calibration_error(confidence, correct, n_bins=n_bins),
        "brier": binary_brier(confidence, correct),
        "nll": binary_nll(confidence, correct),
        "roc_auc": binary_roc_auc(confidence, correct),
    }


def risk_coverage(
    confidence: Any, correct: Any, *, points: int = _CURVE_POINTS
) -> dict[str, list[float]]:
    """The risk-coverage curve: answer the ``k`` most confident images (ties in input order),
    risk = their error rate, coverage = ``k / n``. Sampled at coverages ``1/points .. 1``
    (``k = ceil(coverage n)``), with the confidence threshold that gives each; ``aurc`` is the
    area under the full curve (the mean risk over ``k = 1..n``)."""
    c, ok = _claims(confidence, correct)
    if c.size == 0:
        return {"coverage": [], "risk": [], "threshold": [], "aurc": math.nan}  # type: ignore[dict-item]
    order = np.argsort(-c, kind="stable")
    errors = np.cumsum(~ok[order])
    risk = errors / np.arange(1, c.size + 1)
    grid = [(i + 1) / points for i in range(points)]
    ks = [max(1, math.ceil(g * c.size - 1e-9)) for g in grid]
    return {
        "coverage": grid,
        "risk": [float(risk[k - 1]) for k in ks],
        "threshold": [float(c[order[k - 1]]) for k in ks],
        "aurc": float(risk.mean()),  # type: ignore[dict-item]
    }


def accuracy_at_coverage(confidence: Any, correct: Any, coverage: float) -> float:
    """Accuracy on the ``ceil(coverage n)`` most confident images (ties in input order)."""
    c, ok = _claims(confidence, correct)
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    if c.size == 0:
        return math.nan
    k = max(1, math.ceil(coverage * c.size - 1e-9))
    return float(ok[np.argsort(-c, kind="stable")[:k]].mean())


def selective_metrics(
    confidence: Any, correct: Any, *, coverages: Sequence[float] = COVERAGES
) -> dict[str, Any]:
    """``accuracy_at_coverage`` (``{"0.8": ..., "0.9": ...}``) and the ``risk_coverage`` curve."""
    return {
        "accuracy_at_coverage": {
            f"{cov:g}": accuracy_at_coverage(confidence, correct, cov) for cov in coverages
        },
        "risk_coverage": risk_coverage(confidence, correct),
    }
