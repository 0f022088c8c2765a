"""Whether a run can judge its model, and whether the model it selected learned anything.

Before training, :func:`split_warnings` logs the images per class of every split and warns
when the split that selects the model (``val``) or judges it (``test``) is too small: fewer
than :data:`MIN_PER_CLASS` images of some class. With ``k`` images of a class its recall moves
in steps of ``1 / k`` (20 points and more below 5), and a validation score that moves in big
steps stays flat for many epochs, so the "selected" epoch is an accident.

After training, :func:`judge_selected` looks at the selected epoch's validation numbers, level
by level (P_O, the answer ``predict`` gives): a model that is not *clearly* better than always
answering the split's most common class (a one-sided binomial test at
:data:`SIGNIFICANCE`: could a model that is right as often as that constant answer have scored
this well by luck?), or that gives one class to at least :data:`COLLAPSE_SHARE` of the images
when the split is not that skewed, is named in a warning. The numbers it needs are kept in
every epoch's row of the run's history (:func:`selection_facts`), so a resumed or exported run
judges the same way.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset, TensorDataset

from .._hints import docs_url
from ..taxonomy import Taxonomy

__all__ = [
    "COLLAPSE_SHARE",
    "MIN_PER_CLASS",
    "SIGNIFICANCE",
    "binomial_tail",
    "class_counts",
    "judge_selected",
    "selection_facts",
    "split_warnings",
]

logger = logging.getLogger(__name__)

MIN_PER_CLASS = 5
"""Images of every (finest) class that a validation or test split needs to select or judge."""

SIGNIFICANCE = 0.05
"""The one-sided binomial test's level for "clearly better than the majority baseline"."""

COLLAPSE_SHARE = 0.9
"""A model that gives one class to this share of the images (or more) predicts one class."""

_ROLE = {"val": "select a model on", "test": "judge a model on"}


def fine_targets(dataset: Dataset) -> np.ndarray | None:
    """The fine class index of every sample, read without decoding an image; None when the
    dataset does not say (then only its length is checked)."""
    if isinstance(dataset, Subset):
        inner = fine_targets(dataset.dataset)
        return None if inner is None else inner[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return np.asarray(dataset.tensors[1].cpu(), dtype=np.int64).reshape(-1)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return None
    values = np.asarray(targets, dtype=np.int64).reshape(-1)
    indices = getattr(dataset, "indices", None)  # FashionMNIST keeps all labels and a subset
    if indices is not None and len(values) != len(dataset):  # type: ignore[arg-type]
        values = values[np.asarray(indices, dtype=np.int64)]
    return values if len(values) == len(dataset) else None  # type: ignore[arg-type]


def class_counts(dataset: Dataset, taxonomy: Taxonomy) -> dict[str, int] | None:
    """Images per finest class name (every class listed), or None when unknown."""
    targets = fine_targets(dataset)
    if targets is None:
        return None
    counts = Counter(int(t) for t in targets)
    return {label: counts.get(i, 0) for i, label in enumerate(taxonomy.labels[-1])}


def split_warnings(datasets: Mapping[str, Dataset], taxonomy: Taxonomy, *, fix: str) -> list[str]:
    """Log every split's images per class; return a warning for each of ``val`` / ``test``
    that is too small to select or judge a model (fewer than :data:`MIN_PER_CLASS` images of
    a class). ``fix`` names the config change that holds out more images."""
    out = []
    n_fine = taxonomy.num_classes[-1]
    for name, data in datasets.items():
        counts = class_counts(data, taxonomy)
        total = len(data)  # type: ignore[arg-type]
        if counts is None:
            logger.info("%s split: %d images (per class: not known)", name, total)
        else:
            shown = ", ".join(f"{label} {n}" for label, n in counts.items())
            logger.info("%s split: %d images; per class: %s", name, total, shown)
        if name not in _ROLE:
            continue
        if counts is not None:
            fewest = min(counts.values())
            if fewest >= MIN_PER_CLASS:
                continue
            short = [label for label, n in counts.items() if n < MIN_PER_CLASS]
            least = min(counts, key=lambda label: counts[label])
            what = f"{fewest} images of {least!r}" + (
                f"; {len(short)} classes have fewer than {MIN_PER_CLASS}" if len(short) > 1 else ""
            )
        elif total >= MIN_PER_CLASS * n_fine:
            continue
        else:
            what = f"fewer than {MIN_PER_CLASS} per class on average"
        out.append(
            f"the {name} split holds {total} images for {n_fine} classes ({what}): too few to "
            f"{_ROLE[name]}. With k images of a class its recall moves in steps of 1/k, so "
            f"below {MIN_PER_CLASS} per class the score moves by luck. Fix: hold out more "
            f"images ({fix}), add images (at least {MIN_PER_CLASS} per class in every split), "
            f"or use cross-validation folds ({docs_url('training.md#small-datasets')})"
        )
    return out


def selection_facts(report: Any, prefix: str = "val/") -> dict[str, Any]:
    """What :func:`judge_selected` needs from one validation report, as row keys
    ``<prefix>images`` and per level ``<prefix>baseline/majority/<level>``,
    ``<prefix>baseline/chance/<level>``, ``<prefix>top_class/<level>`` and
    ``<prefix>top_share/<level>`` (the class P_O gives most often, and to what share)."""
    tax = report.taxonomy
    base = report.baselines()
    out: dict[str, Any] = {f"{prefix}images": int(report.num_samples)}
    for d, name in enumerate(tax.level_names):
        predicted = np.asarray(report.confusion["overall"][d]).sum(axis=0)
        top = int(predicted.argmax())
        out[f"{prefix}baseline/majority/{name}"] = base["majority"][d]
        out[f"{prefix}baseline/chance/{name}"] = base["chance"][d]
        out[f"{prefix}top_class/{name}"] = tax.labels[d][top]
        out[f"{prefix}top_share/{name}"] = float(predicted[top] / max(1, predicted.sum()))
    return out


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact for any n)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))


def judge_selected(row: Mapping[str, Any], levels: Sequence[str], *, epoch: int) -> list[str]:
    """Warnings about the model selected at ``epoch``, from its history ``row``: per level, not
    clearly better than the majority baseline on validation, or one class for almost every
    image. Empty when the model learned (or when the row predates these checks)."""
    n = row.get("val/images")
    if not isinstance(n, int) or n < 1:
        return []
    out = []
    for name in levels:
        acc = row.get(f"val/overall/acc/{name}")
        majority = row.get(f"val/baseline/majority/{name}")
        share = row.get(f"val/top_share/{name}")
        if acc is None or majority is None or share is None:
            continue
        p = binomial_tail(round(acc * n), n, majority)
        if p >= SIGNIFICANCE:
            out.append(
                f"level {name!r}: the selected model (epoch {epoch}) is not clearly better on "
                f"validation than always answering the most common class: P_O accuracy "
                f"{100 * acc:.1f}% vs {100 * majority:.1f}% on {n} images (one-sided binomial "
                f"p = {p:.2f}); it may have learned nothing"
            )
        if share >= COLLAPSE_SHARE and share > majority + 0.05:
            out.append(
                f"level {name!r}: the selected model (epoch {epoch}) gives "
                f"{row.get(f'val/top_class/{name}')!r} to {100 * share:.0f}% of the {n} "
                f"validation images, whose most common class is {100 * majority:.0f}% of them: "
                "it predicts one class for almost every image"
            )
    if out:
        out.append(
            "what to try: more images per class, a smaller learning rate, a frozen backbone "
            f'(freeze=["trunk"], {docs_url("finetune.md#small-datasets")}), or init_from a '
            "trained MDAN"
        )
    return out
