"""Temperature scaling of a training run: fitted on its validation split (never on test),
stored in its selected checkpoint, measured before and after on validation and test.

``mdan-zoo calibrate RUN_DIR`` and the training option ``calibrate: true`` run
:func:`calibrate_model`; the temperatures go into the checkpoint's ``model_config`` (its
``state.json``, replaced atomically: a ``kill -9`` leaves the old or the new file, never half
of one), so everything that loads the run (``predict``, ``eval``, ``export``, ONNX) uses them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .._io import atomic_write_text
from ..calibration import branch_probs, collect_logits, fit_temperatures
from ..errors import RunFolderError
from ..evaluation import EvalReport, compute_report
from ..hub.run_folder import protocol_runs, selected_checkpoint
from ..model import MDAN
from ._checkpoints import load_checkpoint
from ._config import TrainConfig
from ._run_writer import run_lock
from ._setup import build_datasets

__all__ = ["CALIBRATION_NAME", "CalibrationResult", "calibrate_model", "calibrate_run"]

logger = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
"""The run folder's record of its temperatures and of the before / after numbers."""


@dataclass
class CalibrationResult:
    """What calibrating a run did.

    Attributes:
        run_dir: the run.
        checkpoint: the checkpoint folder whose config now holds the temperatures.
        local_temperatures / global_temperature: the fitted temperatures.
        reports: ``{split: {"before": EvalReport, "after": EvalReport}}`` for ``val`` (where
            they were fitted) and ``test`` (when the run has one).
    """

    run_dir: Path
    checkpoint: Path
    local_temperatures: tuple[float, ...]
    global_temperature: float
    reports: dict[str, dict[str, EvalReport]]

    def summary(self) -> dict[str, Any]:
        """The numbers ``calibration.json`` records: temperatures, then per split and state
        (before / after) P_O's accuracy, ECE and NLL per level and the consistent path's ECE."""
        out: dict[str, Any] = {
            "fitted_on": "val",
            "checkpoint": self.checkpoint.name,
            "local_temperatures": list(self.local_temperatures),
            "global_temperature": self.global_temperature,
        }
        for split, pair in self.reports.items():
            out[split] = {state: _numbers(report) for state, report in pair.items()}
        return out

    def table(self) -> str:
        """Before / after per split: P_O accuracy and ECE (%) and NLL per level."""
        local = ", ".join(f"{t:.3f}" for t in self.local_temperatures)
        lines = [
            f"{self.run_dir}: temperatures fitted on the validation split, stored in "
            f"{self.checkpoint.name}: local {local} (coarse to fine), global "
            f"{self.global_temperature:.3f}",
            f"{'split':<5} {'level':<14} {'Acc_O before':>12} {'after':>6}  "
            f"{'ECE_O before':>12} {'after':>6}  {'NLL before':>10} {'after':>6}",
        ]
        for split, pair in self.reports.items():
            b, a = _numbers(pair["before"]), _numbers(pair["after"])
            for name in pair["before"].taxonomy.level_names:
                lines.append(
                    f"{split:<5} {name:<14} {b['accuracy'][name]:12.2f} "
                    f"{a['accuracy'][name]:6.2f}  {b['ece'][name]:12.2f} {a['ece'][name]:6.2f}  "
                    f"{b['nll'][name]:10.3f} {a['nll'][name]:6.3f}"
                )
        return "\n".join(lines)


def _numbers(report: EvalReport) -> dict[str, Any]:
    cal = report.calibration
    names = report.taxonomy.level_names
    return {
        "accuracy": {
            n: round(100 * a, 2) for n, a in zip(names, report.accuracy["overall"], strict=True)
        },
        "ece": {n: round(100 * cal["overall"][n]["ece"], 2) for n in names},
        "nll": {n: round(cal["overall"][n]["nll"], 4) for n in names},
        "consistent_ece": round(100 * cal["consistent"]["ece"], 2),
    }


def _reports(model: MDAN, logits: Any, targets: torch.Tensor, temps: Any) -> EvalReport:
    probs = branch_probs(logits, temps[0], temps[1], model.config.alpha)
    numpy = {b: [p.detach().numpy() for p in ps] for b, ps in probs.items()}
    return compute_report(model.taxonomy, targets.numpy(), numpy)


def calibrate_model(
    model: MDAN,
    datasets: Mapping[str, Dataset],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, EvalReport]]:
    """Fit ``model``'s temperatures on ``datasets["val"]`` and store them in it
    (:meth:`MDAN.set_temperatures`); returns the before / after reports of ``val`` and, when
    there is one, ``test``. The fit reads the raw logits, so calibrating twice gives the same
    temperatures."""
    if "val" not in datasets or len(datasets["val"]) == 0:  # type: ignore[arg-type]
        raise RunFolderError(
            "temperature scaling is fitted on the validation split, and this run has none: "
            "set val_fraction > 0 (never fit it on the test split)"
        )
    collected = {
        split: collect_logits(
            model,
            datasets[split],
            batch_size=batch_size,
            device=device,
            workers=workers,
            progress=progress,
        )
        for split in ("val", "test")
        if split in datasets and len(datasets[split])  # type: ignore[arg-type]
    }
    targets, logits = collected["val"]
    local, glob, before, after = fit_temperatures(logits, targets, alpha=model.config.alpha)
    logger.info("temperatures %s / %.3f: validation NLL %.4f -> %.4f", local, glob, before, after)
    model.set_temperatures(local, glob)
    ones = (torch.ones(len(local)), torch.tensor(1.0))
    fitted = (torch.tensor(local), torch.tensor(glob))
    return {
        split: {
            "before": _reports(model, logits_, y, ones),
            "after": _reports(model, logits_, y, fitted),
        }
        for split, (y, logits_) in collected.items()
    }


def store_temperatures(checkpoint: Path, state: Mapping[str, Any], model: MDAN) -> None:
    """Write ``model``'s temperatures into the checkpoint's ``state.json`` (atomically)."""
    new = dict(state)
    new["model_config"] = model.config.to_dict()
    atomic_write_text(checkpoint / "state.json", json.dumps(new, indent=1) + "\n")


def calibrate_run(
    run_dir: str | os.PathLike[str],
    *,
    device: str | None = None,
    progress: bool = False,
    test_report: bool = True,
) -> list[CalibrationResult]:
    """``mdan-zoo calibrate RUN_DIR``: fit temperatures for a finished run (every
    ``seed-*`` / ``fold-*`` run of a protocol folder) on its validation split, store them with
    its selected checkpoint, write ``calibration.json`` and, with ``test_report``, the
    calibrated ``test/`` report. Holds the run's lock: a run still training is refused."""
    root = Path(run_dir)
    runs = protocol_runs(root) if root.is_dir() else []
    return [
        _calibrate_one(run, device=device, progress=progress, test_report=test_report)
        for run in (runs or [root])
    ]


def _calibrate_one(
    run: Path, *, device: str | None, progress: bool, test_report: bool
) -> CalibrationResult:
    if not (run / "config.json").is_file():
        raise FileNotFoundError(
            f"{run} is not a training run's folder (no config.json): give the output_dir "
            "`mdan-zoo train` wrote"
        )
    cfg = TrainConfig.from_file(str(run / "config.json")).with_overrides(
        [f"progress={'true' if progress else 'false'}"]
    )
    with run_lock(run):
        folder, state = selected_checkpoint(run)
        model = load_checkpoint(folder, calibration=False).model
        dev = device or ("cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu")
        model.to(dev)
        datasets = build_datasets(cfg, taxonomy=model.taxonomy, preprocessing=model.preprocessing)
        reports = calibrate_model(
            model,
            datasets,
            batch_size=cfg.eval_batch_size,
            device=dev,
            workers=cfg.loader_workers(),
            progress=progress,
        )
        result = _store_and_record(
            model, run, folder, state, reports, title=cfg.name, test_report=test_report
        )
    return result


def _store_and_record(
    model: MDAN,
    run: Path,
    folder: Path,
    state: Mapping[str, Any],
    reports: dict[str, Any],
    *,
    title: str,
    test_report: bool,
) -> CalibrationResult:
    """The fitted temperatures into the checkpoint, then ``calibration.json`` (and the test
    report): what ``mdan-zoo calibrate`` and ``calibrate: true`` both finish with."""
    store_temperatures(folder, state, model)
    result = CalibrationResult(
        run_dir=run,
        checkpoint=folder,
        local_temperatures=tuple(model.config.local_temperatures or ()),
        global_temperature=float(model.config.global_temperature or 1.0),
        reports=reports,
    )
    write_record(run, result, title=title, test_report=test_report)
    return result


def calibrate_selected(
    model: MDAN,
    datasets: Mapping[str, Dataset],
    config: TrainConfig,
    *,
    best: Path,
    output_dir: Path,
    device: torch.device,
    main: bool,
) -> None:
    """The training option ``calibrate: true``: temperature scaling of ``model`` (the selected
    epoch's weights), fitted on the validation split (every process fits the same numbers on
    the whole split), stored in its checkpoint ``best`` by the first process (``main``); the
    test report then measures the calibrated model."""
    sets = {k: v for k, v in datasets.items() if k in ("val", "test")}
    reports = calibrate_model(
        model,
        sets,
        batch_size=config.eval_batch_size,
        device=device,
        workers=config.loader_workers(),
        progress=config.progress and main,
    )
    if main:
        folder, state = selected_checkpoint(best)
        result = _store_and_record(
            model, output_dir, folder, state, reports, title=config.name, test_report=False
        )
        logger.info("%s", result.table())


def write_record(run: Path, result: CalibrationResult, *, title: str, test_report: bool) -> None:
    """``calibration.json`` and, when the run evaluates on test, the calibrated test report."""
    atomic_write_text(run / CALIBRATION_NAME, json.dumps(result.summary(), indent=2) + "\n")
    after = result.reports.get("test", {}).get("after")
    if test_report and after is not None:
        local, names = result.local_temperatures, after.taxonomy.level_names
        after.temperatures = {
            "local": dict(zip(names, local, strict=True)),
            "global": result.global_temperature,
        }
        after.write(run / "test", title=f"{title}: test split (calibrated)")
        logger.info("%s: calibrated test report written to %s", run, run / "test")
