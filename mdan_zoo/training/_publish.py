"""From a training run to a published checkpoint: the selected epoch into the Hub layout, with
its validation and test metrics and its training config in the model card; then to a Hub repo.

The Hub layout and the upload belong to :mod:`mdan_zoo.hub`; this module only gathers what a run
knows about itself (which epoch won on validation, its test report, its recipe). A folder of
runs (``seed-*`` / ``fold-*``, :mod:`mdan_zoo.training._protocol`) exports its run with the best validation
score and records the mean ± std of all its runs under ``metrics["runs"]``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .._io import exclusive_lock
from ..errors import StorageError
from ..hub.run_folder import RunFolderError, is_run_folder
from ..model import MDAN
from ._checkpoints import load_checkpoint
from ._judge import judge_selected
from ._run_writer import fsync_dir
from ._runs import is_protocol_dir, report_runs
from ._trainer import saved_state

__all__ = ["export_run", "push_run", "run_metrics", "select_run"]

logger = logging.getLogger(__name__)


def run_metrics(run_dir: str | os.PathLike[str], *, which: str = "best") -> dict[str, Any]:
    """The metrics of a run's selected checkpoint: validation scalars of that epoch, and the
    test report (Table-3 accuracies in percent keyed by number of classes) when the run wrote
    one."""
    ckpt = load_checkpoint(run_dir, which=which)
    tax = ckpt.model.taxonomy
    validation = ckpt.state.get("metrics", {})
    metrics: dict[str, Any] = {
        "selected_epoch": ckpt.epoch,
        "select_metric": ckpt.state.get("select_metric"),
        "validation": validation,
    }
    warnings = [  # what the run found wrong with its own verdict (_judge.py)
        *ckpt.state.get("split_warnings", []),
        *judge_selected(validation, tax.level_names, epoch=ckpt.epoch),
    ]
    if warnings:  # the model card shows them under its description
        metrics["warnings"] = warnings
    report = Path(run_dir) / "test" / "report.json"
    if report.is_file():
        data = json.loads(report.read_text(encoding="utf-8"))
        for branch, tag in (("local", "L"), ("global", "G"), ("overall", "O")):
            metrics[f"accuracy_{tag}"] = {
                str(k): round(100 * data["accuracy"][branch][name], 2)
                for name, k in zip(tax.level_names, tax.num_classes, strict=True)
            }
        metrics["violation_rate"] = data["violation_rate"]
        metrics["test_images"] = data["num_samples"]
        metrics.update(_calibration_metrics(data, tax))
    return metrics


def _calibration_metrics(data: dict[str, Any], tax: Any) -> dict[str, Any]:
    """ECE (%, 15 bins) per branch and level keyed by number of classes, and the temperatures,
    from a test report's calibration block (none in reports written before it existed)."""
    cal = data.get("calibration")
    if not isinstance(cal, dict):
        return {}
    out: dict[str, Any] = {}
    for branch, tag in (("local", "L"), ("global", "G"), ("overall", "O")):
        out[f"ece_{tag}"] = {
            str(k): round(100 * cal[branch][name]["ece"], 2)
            for name, k in zip(tax.level_names, tax.num_classes, strict=True)
            if isinstance(cal.get(branch, {}).get(name, {}).get("ece"), (int, float))
        }
    if cal.get("temperatures"):
        out["temperatures"] = cal["temperatures"]
    return out


def select_run(run_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any] | None]:
    """The run to export and, for a folder of runs, the ``"runs"`` metrics: their mean ± std
    (:meth:`mdan_zoo.training.RunsReport.card_metrics`) and which run was exported and why (the
    best validation ``select_metric``; the test split never chooses)."""
    path = Path(run_dir)
    if not is_protocol_dir(path):
        return path, None
    report = report_runs([path])
    scored = []
    for run in report.runs:
        state = saved_state(run["dir"]) or {}
        scored.append((float(state.get("best_metric", float("-inf"))), run, state))
    score, best, state = max(scored, key=lambda t: t[0])  # first of equals: lowest seed/fold
    runs = report.card_metrics()
    runs["exported"] = best["name"]
    runs["exported_because"] = (
        f"best validation {state.get('select_metric', 'score')} ({score:.4f}) of the "
        f"{report.n} runs"
    )
    logger.info("%s: exporting %s (%s)", path, best["dir"], runs["exported_because"])
    return Path(best["dir"]), runs


def _metrics(run: Path, runs: dict[str, Any] | None, which: str) -> dict[str, Any]:
    metrics = run_metrics(run, which=which)
    if runs is not None:
        metrics["runs"] = runs
    return metrics


def _training_card(ckpt_state: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(ckpt_state["config"])
    cfg.pop("output_dir", None)
    cfg.pop("progress", None)
    return cfg


def _check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, a target that would overwrite what the user made."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} is a file, not a folder: export to a new or empty folder")
    if is_run_folder(out):
        raise RunFolderError(
            f"{out} is a training run's folder; exporting there would overwrite its config.json. "
            "Nothing was changed: export to another folder"
        )
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not overwrite:
        what = "an export" if "config.json" in held else "files"
        raise RunFolderError(
            f"{out} already holds {what} ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''})."
            " Nothing was changed: export to a new or empty folder, or replace what is there "
            "with --overwrite (Python: overwrite=True)"
        )


def export_run(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    which: str = "best",
    overwrite: bool = False,
) -> Path:
    """Write the run's ``best`` (validation-selected) or ``last`` checkpoint to ``out_dir`` in
    the Hub layout (``mdan_zoo.hub.save_pretrained``); a folder of runs exports one of them
    and records all (:func:`select_run`). Returns the folder.

    ``out_dir`` must be new or empty unless ``overwrite=True`` (then model.safetensors,
    config.json and README.md there are replaced, other files kept); a training run's folder is
    always refused. The export is written into a hidden folder beside ``out_dir`` and swapped
    in by renames (:func:`_publish`), so a kill at any instant leaves the old export or the new
    one, never a mix; the next export cleans what a killed one left. Two exports to one folder:
    the second is refused while the first runs.
    """
    out = Path(out_dir)
    try:
        return _export(run_dir, out, which=which, overwrite=overwrite)
    except OSError as err:  # a full disk, a read-only target: the path and the fix
        if isinstance(err, (StorageError, FileExistsError)):
            raise
        raise StorageError.of(err, out, "cannot export to") from None


def _export(run_dir: str | os.PathLike[str], out: Path, *, which: str, overwrite: bool) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out, what="export"):
        _recover(out)
        _check_out_dir(out, overwrite=overwrite)
        run, runs = select_run(run_dir)
        ckpt = load_checkpoint(run, which=which)
        stage = out.with_name(f".{out.name}.export-{os.getpid()}")
        try:
            ckpt.model.save_pretrained(
                stage, metrics=_metrics(run, runs, which), training=_training_card(ckpt.state)
            )
            _publish(stage, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    logger.info("exported %s (epoch %d) to %s", ckpt.path, ckpt.epoch, out)
    return out


# what save_pretrained writes, and what its atomic writes leave when killed (older exports
# wrote in place)
_EXPORT_FILES = {"model.safetensors", "config.json", "README.md"}
_EXPORT_TMP = re.compile(r"^\.(model\.safetensors|config\.json|README\.md)\.[a-z0-9_]{8}\.tmp$")


def _publish(stage: Path, out: Path) -> None:
    """Swap the complete export ``stage`` in for ``out``: ``out`` is renamed aside, ``stage``
    renamed to ``out``, the user's other files in the old folder moved into the new one, the
    old export removed. :func:`_recover` finishes any step a kill cut short."""
    if not out.exists():
        os.replace(stage, out)
        fsync_dir(out.parent)
        return
    aside = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, aside)
    os.replace(stage, out)
    fsync_dir(out.parent)
    _carry_over(aside, out)


def _carry_over(aside: Path, out: Path) -> None:
    """Move what the user kept in the old folder (all but an export's own files) into ``out``,
    then remove the old folder."""
    for entry in aside.iterdir():
        if entry.name in _EXPORT_FILES or _EXPORT_TMP.match(entry.name):
            continue
        if not (out / entry.name).exists():
            os.replace(entry, out / entry.name)
    shutil.rmtree(aside, ignore_errors=True)


def _recover(out: Path) -> None:
    """Before an export (with the lock held): finish or undo what a killed export left."""
    parent = out.parent
    if not parent.is_dir():
        return
    for entry in sorted(parent.iterdir()):
        if entry.name.startswith(f".{out.name}.export-") and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)  # never published: its export is lost
            logger.info("removed %s, left by a killed export", entry)
        elif entry.name.startswith(f".{out.name}.old-") and entry.is_dir():
            if out.exists():  # the new export was in place: keep the user's files, drop the rest
                _carry_over(entry, out)
            else:  # killed between the two renames: the old export comes back
                os.replace(entry, out)
            logger.info("finished the swap a killed export of %s left", out)
    if out.is_dir():
        for entry in out.iterdir():
            if _EXPORT_TMP.match(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
                logger.info("removed %s, left by a killed export", entry)


def push_run(
    run_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    which: str = "best",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> str:
    """Upload the run's selected checkpoint to the Hub repo ``repo_id`` (created if needed);
    returns the commit id to pin. ``branch`` / ``create_pr`` / ``token`` as
    :meth:`MDAN.push_to_hub` (``revision`` is an older name for ``branch``). A folder of runs
    pushes one of them (:func:`select_run`)."""
    run, runs = select_run(run_dir)
    ckpt = load_checkpoint(run, which=which)
    model: MDAN = ckpt.model
    return model.push_to_hub(
        repo_id,
        metrics=_metrics(run, runs, which),
        training=_training_card(ckpt.state),
        commit_message=commit_message or f"MDAN {model.taxonomy.name}, epoch {ckpt.epoch}",
        private=private,
        token=token,
        branch=branch,
        create_pr=create_pr,
        revision=revision,
        api=api,
    )
