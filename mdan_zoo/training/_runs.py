"""Several runs of one recipe and their mean ± std, as the paper reports them (Tables 1 and 3).

The paper averages 3 runs on FI and Emotion6 and the 5 folds of a cross-validation on
ArtPhoto, IAPS and Abstract (:mod:`mdan_zoo.training._protocol` trains them). :func:`report_runs` finds
the runs below some folders (``seed-*`` / ``fold-*``) and aggregates their test reports
(``<run>/test/report.json``, written by the trainer) into a :class:`RunsReport`: mean and
sample standard deviation (n - 1) per level and branch, in percent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunsError
from ..hub.run_folder import RUN_DIR, protocol_runs

__all__ = ["BRANCH_TAGS", "RunsError", "RunsReport", "find_runs", "is_protocol_dir", "report_runs"]

BRANCH_TAGS = {"local": "P_L", "global": "P_G", "overall": "P_O"}
"""Report branch -> the paper's name of the prediction (Table 3's columns)."""


# ---------------------------------------------------------------------------- finding runs
def is_protocol_dir(path: str | os.PathLike[str]) -> bool:
    """True for a folder that holds ``seed-*`` / ``fold-*`` run folders."""
    return Path(path).is_dir() and bool(protocol_runs(Path(path)))


def find_runs(dirs: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """Run folders below ``dirs``: each dir's ``seed-*`` / ``fold-*`` folders (nested ones
    too), or the dir itself when it has none. Returns the runs with a test report and, for
    the others, a line saying why they are left out."""
    found: list[Path] = []
    left_out: list[str] = []
    seen: set[Path] = set()

    def visit(path: Path) -> None:
        children = protocol_runs(path)
        if children:
            for child in children:
                visit(child)
            return
        if path.resolve() in seen:
            return
        seen.add(path.resolve())
        if (path / "test" / "report.json").is_file():
            found.append(path)
        elif (path / "checkpoints").is_dir() or (path / "config.json").is_file():
            left_out.append(f"{path} (no test/report.json: unfinished, or eval_test=false)")
        else:
            left_out.append(f"{path} (not a training run)")

    for d in dirs:
        path = Path(d)
        if not path.is_dir():
            raise RunsError(f"{path} is not a folder: pass training run folders (output_dir)")
        visit(path)
    return found, left_out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunsError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise RunsError(f"{path} does not hold a JSON object")
    return data


def _read_report(path: Path) -> dict[str, Any]:
    """A test report.json (:meth:`mdan_zoo.evaluation.EvalReport.to_dict`), its shape checked."""
    rep = _read_json(path)
    try:
        levels, labels = list(rep["levels"]), list(rep["labels"])
        for branch in BRANCH_TAGS:
            for name in levels:
                float(rep["accuracy"][branch][name])
            float(rep["violation_rate"][branch])
        if len(labels) != len(levels) or not levels:
            raise ValueError("one label list per level")
    except (KeyError, TypeError, ValueError) as err:
        raise RunsError(
            f"{path} is not a test report written by mdan_zoo ({type(err).__name__}: {err}); "
            "rewrite it with `mdan-zoo eval CONFIG --checkpoint RUN --out RUN/test`"
        ) from err
    return rep


# ---------------------------------------------------------------------------- the report
@dataclass
class RunsReport:
    """Mean ± std of several runs' test reports (accuracies and violation rates in percent).

    Attributes:
        runs: one dict per run: ``dir``, ``name`` (relative to the folder given), ``seed``,
            ``fold``, ``selected_epoch``, ``test_images``.
        levels / num_classes: the taxonomy's levels, coarse to fine.
        mean / std: ``{"P_L"|"P_G"|"P_O": {level key: %}}``; level key = number of classes
            (as Table 1 and the registry key them), or the level name when two levels have the
            same count. ``std`` is the sample standard deviation, None for a single run.
        violations_mean / violations_std: ``{"P_L"|"P_G"|"P_O": %}``.
        paper: the paper's numbers the runs' config carries (``accuracy_L/G/O``), if any.
        left_out: folders found but not averaged, and why.
    """

    name: str
    taxonomy: str
    levels: list[str]
    num_classes: list[int]
    runs: list[dict[str, Any]]
    mean: dict[str, dict[str, float]]
    std: dict[str, dict[str, float | None]]
    violations_mean: dict[str, float]
    violations_std: dict[str, float | None]
    paper: dict[str, Any] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    """``{"P_O": {level key: {metric: {"mean", "std"}}}, "consistent": {metric: {"mean",
    "std"}}, "n": runs averaged}`` over the runs whose report has a calibration block; ECE and
    adaptive ECE in percent, Brier, NLL and ROC-AUC as they are."""

    @property
    def n(self) -> int:
        return len(self.runs)

    def level_keys(self) -> list[str]:
        counts = [str(k) for k in self.num_classes]
        return counts if len(set(counts)) == len(counts) else list(self.levels)

    def _ids(self, key: str) -> list[int]:
        return sorted({r[key] for r in self.runs if r.get(key) is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``mdan-zoo report --json``)."""
        return {
            "name": self.name,
            "taxonomy": self.taxonomy,
            "levels": self.levels,
            "num_classes": self.num_classes,
            "n": self.n,
            "seeds": self._ids("seed"),
            "folds": self._ids("fold"),
            "runs": self.runs,
            "mean": self.mean,
            "std": self.std,
            "violation_rate": {"mean": self.violations_mean, "std": self.violations_std},
            "paper": self.paper,
            "left_out": self.left_out,
            "calibration": self.calibration,
        }

    def card_metrics(self) -> dict[str, Any]:
        """The ``"runs"`` entry of an exported model's metrics (and of the registry)."""
        return {
            "n": self.n,
            "seeds": self._ids("seed"),
            "folds": self._ids("fold"),
            "names": [r["name"] for r in self.runs],
            "mean": self.mean,
            "std": self.std,
            "violation_rate": {"mean": self.violations_mean, "std": self.violations_std},
        }

    def table(self) -> str:
        """Table 3's layout (P_L / P_G / P_O per level) with mean ± std, then the paper's."""

        def cell(mean: float, std: float | None) -> str:
            return f"{mean:6.2f} ± {std:5.2f}" if std is not None else f"{mean:6.2f} ±   n/a"

        keys = self.level_keys()
        rows = [f"{n} ({k})" for n, k in zip(self.levels, self.num_classes, strict=True)]
        width = max(len("level"), *(len(r) for r in rows))
        tags = list(BRANCH_TAGS.values())
        seeds, folds = self._ids("seed"), self._ids("fold")
        what = []
        if len(seeds) > 1 or not folds:
            what.append("seeds " + ", ".join(map(str, seeds)))
        if folds:
            what.append("folds " + ", ".join(map(str, folds)))
        lines = [
            f"{self.name}: test accuracy (%), mean ± std over {self.n} "
            f"run{'s' if self.n != 1 else ''} ({'; '.join(what)})",
            f"{'level':<{width}}  " + "  ".join(f"{t:>14}" for t in tags),
        ]
        for row, key in zip(rows, keys, strict=True):
            cells = "  ".join(cell(self.mean[t][key], self.std[t][key]) for t in tags)
            lines.append(f"{row:<{width}}  {cells}")
        if len(self.levels) > 1:
            v = "  ".join(
                f"{t} {cell(self.violations_mean[t], self.violations_std[t]).strip()}" for t in tags
            )
            lines.append(f"hierarchy violations (%): {v}")
        if self.calibration:
            lines += _calibration_lines(self.calibration, rows, keys, width)
        paper = {t: self.paper.get(f"accuracy_{t[-1]}") or {} for t in tags}
        if any(paper.values()):
            lines.append(f"paper ({self.paper.get('source', 'Tables 1 and 3')}):")
            for row, k in zip(rows, self.num_classes, strict=True):
                cells = "  ".join(
                    f"{paper[t][str(k)]:>14.2f}" if str(k) in paper[t] else f"{'-':>14}"
                    for t in tags
                )
                lines.append(f"{row:<{width}}  {cells}")
        lines.append("runs:")
        for r in self.runs:
            parts = [f"{k} {r[k]}" for k in ("seed", "fold") if r.get(k) is not None]
            if r.get("selected_epoch") is not None:
                parts.append(f"epoch {r['selected_epoch']}")
            parts.append(f"{r['test_images']} test images")
            lines.append(f"  {r['dir']}: {', '.join(parts)}")
        if self.left_out:
            lines.append("left out:")
            lines += [f"  {x}" for x in self.left_out]
        return "\n".join(lines)


def _selected_epoch(run: Path) -> int | None:
    try:
        return int(json.loads((run / "checkpoints" / "best.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _run_name(run: Path) -> str:
    """``seed-0``, ``seed-0/fold-3``...: the protocol's part of a run's path (else its name)."""
    parts = list(run.resolve().parts)
    tail: list[str] = []
    while parts and RUN_DIR.match(parts[-1]):
        tail.insert(0, parts.pop())
    return "/".join(tail) or run.resolve().name


def _stats(values: list[float]) -> tuple[float, float | None]:
    arr = 100 * np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return round(float(arr.mean()), 2), None if std is None else round(std, 2)


def report_runs(dirs: Sequence[str | os.PathLike[str]]) -> RunsReport:
    """Find the runs below ``dirs`` (:func:`find_runs`) and average their test reports."""
    roots = [Path(d) for d in dirs]
    runs, left_out = find_runs(roots)
    if not runs:
        why = f"; found but left out: {'; '.join(left_out)}" if left_out else ""
        raise RunsError(
            f"no finished runs under {', '.join(map(str, roots))}: a run is a training "
            f"output_dir with test/report.json, alone or as seed-*/fold-* folders below the "
            f"given one (`mdan-zoo train CONFIG --seeds 0 1 2` makes them){why}"
        )
    reports = [_read_report(r / "test" / "report.json") for r in runs]
    first = reports[0]
    levels, labels = first.get("levels"), first.get("labels")
    for run, rep in zip(runs, reports, strict=True):
        if rep.get("levels") != levels or rep.get("labels") != labels:
            raise RunsError(
                f"{run} has another taxonomy ({rep.get('taxonomy')}, levels {rep.get('levels')}) "
                f"than {runs[0]} ({first.get('taxonomy')}, levels {levels}): report them apart"
            )
    configs = [_read_json(r / "config.json") if (r / "config.json").is_file() else {} for r in runs]
    info = [
        {
            "dir": str(run),
            "name": _run_name(run),
            "seed": cfg.get("seed"),
            "fold": cfg.get("fold"),
            "selected_epoch": _selected_epoch(run),
            "test_images": rep.get("num_samples"),
        }
        for run, rep, cfg in zip(runs, reports, configs, strict=True)
    ]
    num_classes = [len(lv) for lv in labels or []]
    keyed = [str(k) for k in num_classes]
    if len(set(keyed)) != len(keyed):
        keyed = list(levels or [])
    mean: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float | None]] = {}
    v_mean: dict[str, float] = {}
    v_std: dict[str, float | None] = {}
    for branch, tag in BRANCH_TAGS.items():
        mean[tag], std[tag] = {}, {}
        for name, key in zip(levels or [], keyed, strict=True):
            mean[tag][key], std[tag][key] = _stats(
                [rep["accuracy"][branch][name] for rep in reports]
            )
        v_mean[tag], v_std[tag] = _stats([rep["violation_rate"][branch] for rep in reports])
    names = {c.get("name") for c in configs if c.get("name")}
    return RunsReport(
        name=str(names.pop()) if len(names) == 1 else str(first.get("taxonomy")),
        taxonomy=str(first.get("taxonomy")),
        levels=list(levels or []),
        num_classes=num_classes,
        runs=info,
        mean=mean,
        std=std,
        violations_mean=v_mean,
        violations_std=v_std,
        paper=dict(configs[0].get("paper") or {}),
        left_out=left_out,
        calibration=_calibration_stats(reports, list(levels or []), keyed),
    )


_CAL_METRICS = {"ece": 100.0, "adaptive_ece": 100.0, "brier": 1.0, "nll": 1.0, "roc_auc": 1.0}


def _mean_std(values: list[Any], scale: float) -> dict[str, float | None]:
    arr = scale * np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"mean": None, "std": None}
    digits = 2 if scale != 1.0 else 4
    std = round(float(arr.std(ddof=1)), digits) if arr.size > 1 else None
    return {"mean": round(float(arr.mean()), digits), "std": std}


def _calibration_stats(
    reports: list[dict[str, Any]], levels: list[str], keyed: list[str]
) -> dict[str, Any]:
    """Mean ± std of the calibration blocks (reports written before they existed are skipped)."""
    blocks = [r["calibration"] for r in reports if isinstance(r.get("calibration"), dict)]
    try:
        if not blocks:
            return {}
        out: dict[str, Any] = {"n": len(blocks), "P_O": {}, "consistent": {}}
        for name, key in zip(levels, keyed, strict=True):
            out["P_O"][key] = {
                m: _mean_std([b["overall"][name][m] for b in blocks], scale)
                for m, scale in _CAL_METRICS.items()
            }
        out["consistent"] = {
            m: _mean_std([b["consistent"][m] for b in blocks], scale)
            for m, scale in _CAL_METRICS.items()
        }
    except (KeyError, TypeError) as err:
        raise RunsError(f"a test report's calibration block is damaged ({err!r})") from err
    return out


def _calibration_lines(
    cal: dict[str, Any], rows: list[str], keys: list[str], width: int
) -> list[str]:
    def cell(stats: dict[str, Any], digits: int) -> str:
        if stats["mean"] is None:
            return f"{'n/a':>14}"
        std = "  n/a" if stats["std"] is None else f"{stats['std']:5.{digits}f}"
        return f"{stats['mean']:6.{digits}f} ± {std}"

    width = max(width, len("consistent path"))
    head = "  ".join(f"{h:>14}" for h in ("ECE_O (%)", "aECE_O (%)", "Brier", "NLL", "ROC-AUC"))
    lines = [
        f"calibration (P_O, mean ± std over {cal['n']} run{'s' if cal['n'] != 1 else ''}):",
        f"{'level':<{width}}  {head}",
    ]
    entries = [
        *zip(rows, (cal["P_O"][k] for k in keys), strict=False),
        ("consistent path", cal["consistent"]),
    ]
    for row, stats in entries:
        cells = "  ".join(cell(stats[m], 2 if s != 1.0 else 3) for m, s in _CAL_METRICS.items())
        lines.append(f"{row:<{width}}  {cells}")
    return lines
