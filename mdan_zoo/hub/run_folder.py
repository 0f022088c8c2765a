"""A training run's folder as files: its layout, and which checkpoints in it can be trusted.

Layout of ``<output_dir>/checkpoints/``: one folder per epoch (``epoch-0007/``: weights and
optimizer / RNG tensors as safetensors, everything else as JSON in ``state.json``, which also
records the size and SHA-256 of each tensor file), ``last.json`` (the commit point: the newest
epoch and the validation-selected one it names) and ``best.json`` (a copy of the selected half).
Nothing is pickled. :mod:`mdan_zoo.training._run_writer` writes them in an order that survives
``kill -9`` at any instant (docs/training.md, "Guarantees").

Readers trust ``last.json`` and the ``state.json`` it leads to, and verify every tensor file
against its recorded checksum; when the newest checkpoint is damaged they fall back to the
newest one that verifies and say what they skipped; a run folder with no checkpoint that can
be trusted is refused with a :class:`RunFolderError`, never restarted over.

This module reads files only and builds no network, so weight loading
(:mod:`mdan_zoo.hub._download`) can open a run folder too; :mod:`mdan_zoo.training._checkpoints` builds
the model from what it finds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from ..errors import RunFolderError

__all__ = [
    "FORMAT",
    "RunCheckpoints",
    "RunFolderError",
    "checkpoint_name",
    "describe_skipped",
    "find_checkpoints",
    "inspect_checkpoint",
    "is_run_folder",
    "protocol_runs",
    "run_traces",
    "selected_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT = "mdan_zoo.train/1"
_EPOCH_RE = re.compile(r"^epoch-(\d{4,})$")
RUN_DIR = re.compile(r"^(seed|fold)-(\d+)$")
"""Names of the run folders the protocol makes: ``seed-<s>``, ``fold-<k>``."""
HIDDEN_RE = re.compile(r"^\.(epoch-\d{4,})\.(tmp|old|del)-(\d+)$")
_TENSOR_FILES = ("model.safetensors", "training.safetensors")
_RESUME_FIX = (
    "Nothing was changed. Restore the damaged files (e.g. from a backup), or start a new run "
    "in another output_dir (or delete this folder yourself)"
)


@dataclass(frozen=True)
class RunCheckpoints:
    """The trusted checkpoints of a run folder (:func:`find_checkpoints`).

    Attributes:
        last: the newest checkpoint that verifies (what ``resume`` continues from).
        best: the validation-selected checkpoint that ``last`` names (None before any epoch
            had a finite validation score).
        state: ``last``'s state.json.
        skipped: (file or folder, why) passed over to get there; empty when all is well.
    """

    last: Path
    best: Path | None
    state: dict[str, Any]
    skipped: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------- the run folder
def checkpoint_name(epoch: int) -> str:
    """``epoch-0007``: the folder of an epoch's checkpoint."""
    return f"epoch-{epoch:04d}"


def epoch_of(name: str) -> int | None:
    m = _EPOCH_RE.match(name)
    return int(m.group(1)) if m else None


def run_traces(run_dir: Path) -> list[str]:
    """What shows that a run has made progress in ``run_dir`` (checkpoints, pointer files, a
    metrics log): a new run must not start over these."""
    found = []
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_dir.is_dir():
        for p in sorted(ckpt_dir.iterdir()):
            m = HIDDEN_RE.match(p.name)
            if not p.name.startswith(".") or (m and m.group(2) == "old"):
                found.append(f"checkpoints/{p.name}")
    log = run_dir / "metrics.jsonl"
    if log.is_file() and log.stat().st_size > 0:
        found.append("metrics.jsonl")
    return found


# ---------------------------------------------------------------------------- reading
def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    if not raw.strip():
        return None, "empty"
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg}, line {err.lineno} column {err.colno})"


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "config": dict,
    "taxonomy": dict,
    "model_config": dict,
    "preprocessing": dict,
    "best_epoch": int,
    "best_metric": (int, float),
    "history": list,
}
_RESUME_FIELDS: dict[str, type | tuple[type, ...]] = {
    "optimizer": dict,
    "rng": dict,
    "scheduler": dict,
    "scaler": dict,
}


def _check_file(path: Path, info: Any, *, hash_file: bool = True) -> str | None:
    if not isinstance(info, dict) or not isinstance(info.get("bytes"), int):
        return f"state.json's record of {path.name} is malformed"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path.name} is missing"
    if size != info["bytes"]:
        return f"{path.name} has {size} bytes, state.json recorded {info['bytes']} (truncated?)"
    if not hash_file:
        return None
    if not isinstance(info.get("sha256"), str):
        return f"state.json's record of {path.name} has no SHA-256"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != info.get("sha256"):
        return f"{path.name} does not match the SHA-256 state.json recorded (corrupted)"
    return None


def inspect_checkpoint(
    path: Path, *, resumable: bool = False, hash_files: bool = True
) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)`` for a checkpoint folder that can be trusted, ``(None, why)`` for one
    that cannot: state.json must parse and have its fields, and the tensor files needed must
    have the size and SHA-256 recorded in it: the weights, and with ``resumable`` the
    optimizer state too. ``hash_files=False`` checks sizes only, for a reader that hashes
    the weights as it reads them (:meth:`~mdan_zoo.hub.Checkpoint.state_dict`)."""
    if not path.is_dir():
        return None, "no such folder"
    state, why = _read_json(path / "state.json")
    if why is not None:
        return None, f"state.json is {why}"
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None, f"state.json is not a {FORMAT} checkpoint state"
    for key, kind in {**_FIELDS, **(_RESUME_FIELDS if resumable else {})}.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None, f"state.json field {key!r} is missing or of the wrong type"
    number = epoch_of(path.name)
    if number is not None and number != state["epoch"]:
        return None, f"state.json says epoch {state['epoch']} in a folder named {path.name}"
    needed = _TENSOR_FILES if resumable else _TENSOR_FILES[:1]
    files = state.get("files")
    if files is None:  # written before checksums were recorded: the headers must parse
        for name in needed:
            try:
                with safe_open(str(path / name), "pt"):
                    pass
            except Exception as err:  # noqa: BLE001 - SafetensorError, OSError...
                return None, f"{name} is unreadable ({err})"
        return state, None
    if not isinstance(files, dict) or not set(needed) <= set(files) <= set(_TENSOR_FILES):
        return None, f"state.json's file list is wrong: {sorted(files) if files else files}"
    for name in needed:
        why = _check_file(path / name, files[name], hash_file=hash_files)
        if why is not None:
            return None, why
    return state, None


def _best_of(
    ckpt_dir: Path, last: Path, state: Mapping[str, Any], *, hash_files: bool = True
) -> tuple[Path | None, str]:
    """The selected checkpoint ``last``'s state names, verified; (None, why) if unusable."""
    epoch = state["best_epoch"]
    if epoch == 0:
        return None, ""
    names = [state.get("best_dir")]
    if names[0] is None:  # older runs kept the selected epoch in best/, named by best.json,
        ptr, _ = _read_json(ckpt_dir / "best.json")  # which a resume moves to epoch-NNNN
        names = [ptr.get("dir") if isinstance(ptr, dict) else None, checkpoint_name(epoch)]
    why = ""
    for name in names:
        if name == last.name:
            return last, ""
        if not isinstance(name, str) or not (epoch_of(name) is not None or name == "best"):
            why = why or f"names no selected checkpoint for best epoch {epoch}"
            continue
        best_state, reason = inspect_checkpoint(ckpt_dir / name, hash_files=hash_files)
        if best_state is None:
            why = why or f"its selected checkpoint {name} (epoch {epoch}) is unusable: {reason}"
        elif best_state["epoch"] != epoch:
            why = why or f"its selected checkpoint {name} holds epoch {best_state['epoch']}"
        else:
            return ckpt_dir / name, ""
    return None, why


def find_checkpoints(
    run_dir: str | os.PathLike[str], *, for_resume: bool = True
) -> RunCheckpoints | None:
    """The checkpoints of ``run_dir`` that can be trusted: ``last.json``'s epoch when it and
    the selected epoch it names verify, else the newest epoch folder for which both do
    (``skipped`` says what was passed over). ``None`` when the folder shows no trace of a run;
    :class:`RunFolderError` when it shows some but no checkpoint can be trusted.

    ``for_resume=False`` (loading weights for inference) neither asks for nor hashes the
    optimizer state, and checks the weights' sizes only: their reader hashes them."""
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    skipped: list[tuple[str, str]] = []
    candidates: list[Path] = []
    ptr, why = _read_json(ckpt_dir / "last.json")
    if why is None:
        name = ptr.get("dir") if isinstance(ptr, dict) else None
        if not isinstance(name, str) or epoch_of(name) is None:
            skipped.append(("checkpoints/last.json", f"names no epoch folder ({ptr!r})"))
        elif not (ckpt_dir / name).is_dir():
            skipped.append(("checkpoints/last.json", f"points at {name}, which does not exist"))
        else:
            candidates.append(ckpt_dir / name)
    elif why != "missing" or run_traces(run_dir):
        skipped.append(("checkpoints/last.json", why))
    if ckpt_dir.is_dir():
        folders = [p for p in ckpt_dir.iterdir() if epoch_of(p.name) is not None and p.is_dir()]
        folders.sort(key=lambda p: epoch_of(p.name) or 0, reverse=True)
        candidates += [p for p in folders if p not in candidates]
    for path in candidates:
        state, why = inspect_checkpoint(path, resumable=for_resume, hash_files=for_resume)
        if state is None:
            skipped.append((f"checkpoints/{path.name}", why or ""))
            continue
        best, why = _best_of(ckpt_dir, path, state, hash_files=for_resume)
        if why:
            skipped.append((f"checkpoints/{path.name}", why))
            continue
        return RunCheckpoints(last=path, best=best, state=state, skipped=tuple(skipped))
    traces = run_traces(run_dir)
    if traces:
        listed = "".join(f"\n  {what}: {why}" for what, why in skipped) or (
            f"\n  found {', '.join(traces)} but no epoch folder"
        )
        raise RunFolderError(f"{run_dir} holds a training run but no checkpoint that can be "
                             f"trusted:{listed}\n{_RESUME_FIX}")  # fmt: skip
    return None


def describe_skipped(skipped: tuple[tuple[str, str], ...]) -> str:
    return "; ".join(f"{what} ({why})" for what, why in skipped)


def run_key(path: Path) -> tuple[Any, ...]:
    """Sort key of a run's path: ``seed-2`` before ``seed-10``."""
    return tuple(
        (m.group(1), int(m.group(2))) if (m := RUN_DIR.match(p)) else (p, -1) for p in path.parts
    )


def protocol_runs(path: Path) -> list[Path]:
    """The ``seed-<s>`` / ``fold-<k>`` run folders directly in ``path`` (the protocol's), in
    order; empty for a single run's folder."""
    return sorted((p for p in path.iterdir() if p.is_dir() and RUN_DIR.match(p.name)), key=run_key)


def is_run_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a training run's output_dir (``checkpoints/``) or one of its
    checkpoint folders (``state.json``), rather than a Hub-layout folder."""
    path = Path(path)
    return (path / "checkpoints").is_dir() or (path / "state.json").is_file()


def selected_checkpoint(
    path: str | os.PathLike[str], *, which: str = "best", hash_files: bool = True
) -> tuple[Path, dict[str, Any]]:
    """The verified checkpoint folder and its state.json for ``path``: a checkpoint folder
    itself, or a run's validation-selected (``which="best"``) or newest (``"last"``) epoch.

    A damaged newest checkpoint of a run is skipped with a warning (:func:`find_checkpoints`);
    a damaged checkpoint folder is a :class:`RunFolderError` naming what is wrong.
    ``hash_files=False`` checks the weights' recorded size but leaves their SHA-256 to a
    reader that hashes as it reads, and never looks at the optimizer state.
    """
    path = Path(path)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if (path / "state.json").is_file():
        state, why = inspect_checkpoint(path, hash_files=hash_files)
        if state is None:
            raise RunFolderError(f"{path} is not a usable checkpoint: {why}")
        return path, state
    found = find_checkpoints(path, for_resume=hash_files)
    if found is None:
        raise FileNotFoundError(
            f"{path} holds no checkpoint: expected {path}/checkpoints/last.json (a training "
            "run's output_dir) or a checkpoint folder with state.json"
        )
    if found.skipped:
        logger.warning("%s: skipped %s", path, describe_skipped(found.skipped))
    target = found.last if which == "last" else found.best
    if target is None:
        raise RunFolderError(
            f"{path}: no epoch was selected (the validation score was never finite); "
            f"load its newest epoch instead: {found.last} (or load_checkpoint(..., which='last'))"
        )
    if target == found.last:
        return target, found.state
    state, why = inspect_checkpoint(target, hash_files=hash_files)
    if state is None:  # changed since find_checkpoints verified it
        raise RunFolderError(f"{target} is not a usable checkpoint: {why}")
    return target, state
