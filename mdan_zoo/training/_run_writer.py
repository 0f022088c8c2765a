"""Writing a training run's checkpoints so that ``kill -9`` at any instant loses nothing.

The order of every write is what makes it safe (docs/training.md, "Guarantees"):

1. the epoch folder is written under a hidden temporary name, synced, and renamed into place;
2. ``last.json`` is replaced atomically: **this is the commit**. It names the epoch and the
   validation-selected epoch, whose folders both exist and are complete by then;
3. ``best.json`` (a copy of the selected half of ``last.json``) is replaced;
4. only then are epoch folders that are no longer needed removed (renamed to a hidden name
   first, so a removal cut short never leaves half a folder under a real name).

:func:`prepare_run_dir` cleans what killed writes leave behind, under :func:`run_lock`. The
environment variable ``MDAN_ZOO_FAULT=after:<step>[@<epoch>]`` kills the process with SIGKILL
right after a named step: the crash tests stop real writers that way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save
from torch import Tensor
from torch.optim import Optimizer

from ..config import ConfigError
from ..hub.run_folder import (
    HIDDEN_RE,
    RunFolderError,
    checkpoint_name,
    epoch_of,
    inspect_checkpoint,
    run_traces,
)
from ..model import MDAN
from ._config import TrainConfig
from ._state import flatten_optimizer, rng_state

__all__ = [
    "FAULT_ENV",
    "commit_checkpoint",
    "fault_point",
    "model_state",
    "prepare_run_dir",
    "run_lock",
    "save_training_checkpoint",
    "settle_run",
    "write_checkpoint_dir",
]

logger = logging.getLogger(__name__)

FAULT_ENV = "MDAN_ZOO_FAULT"
# what an atomic write of one of the run's own files leaves when killed (tempfile.mkstemp)
_ATOMIC_TMP_RE = re.compile(
    r"^\.(config\.json|metrics\.jsonl|last\.json|best\.json|report\.json|report\.txt"
    r"|confusion_[\w.-]+\.(csv|png))\.[a-z0-9_]{8}\.tmp$"
)


# ---------------------------------------------------------------------------- fault injection
def fault_point(step: str, epoch: int | None = None) -> None:
    """Kill this process with SIGKILL if ``MDAN_ZOO_FAULT`` is ``after:<step>`` (any epoch) or
    ``after:<step>@<epoch>``: the crash tests stop real writers at named steps this way."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or not spec.startswith("after:"):
        return
    name, _, at = spec[len("after:") :].partition("@")
    if name == step and (not at or (epoch is not None and at == str(epoch))):
        logging.shutdown()  # flush what the run logged so far; the kill itself flushes nothing
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


# ---------------------------------------------------------------------------- writing
def model_state(model: MDAN) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_checkpoint_dir(
    final: Path,
    tensors: Mapping[str, Mapping[str, Tensor]],
    state: Mapping[str, Any],
    *,
    epoch: int | None = None,
) -> None:
    """Write ``tensors`` (file name -> tensors) and ``state.json`` into a hidden folder, sync
    them, and rename the folder to ``final``. ``state.json`` is written last and records each
    tensor file's size and SHA-256. An older folder of the same name (never one a pointer
    commits to) is moved aside first and removed once the new one is in place.

    Fault steps: ``tmp-model``, ``tmp-training`` (that file written), ``tmp-state`` (all files
    synced), ``aside`` (an older folder moved aside), ``rename`` (the new folder in place).
    """
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        files: dict[str, dict[str, Any]] = {}
        for name, group in tensors.items():
            data = save(dict(group))
            _write_synced(tmp / name, data)
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            fault_point(f"tmp-{name.split('.')[0]}", epoch)
        text = json.dumps({**state, "files": files}, indent=1) + "\n"
        _write_synced(tmp / "state.json", text.encode("utf-8"))
        fsync_dir(tmp)
    except OSError:  # a full disk: the half-written folder goes, the committed ones stay
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point("tmp-state", epoch)
    aside = None
    if final.exists():
        aside = parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        fault_point("aside", epoch)
    os.replace(tmp, final)
    fsync_dir(parent)
    fault_point("rename", epoch)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def save_training_checkpoint(
    run_dir: Path,
    epoch: int,
    *,
    model: MDAN,
    optimizer: Optimizer,
    extra: Mapping[str, Any],
    keep: int,
) -> Path:
    """Write and commit one epoch of a training run: ``model``'s weights, ``optimizer``'s state
    and the random states as tensors, ``extra`` (which must hold ``best_epoch``, ``config``,
    ``history``...) and the model's taxonomy, config and preprocessing as JSON."""
    opt_t, opt_meta = flatten_optimizer(optimizer.state_dict())
    rng_t, rng_meta = rng_state()
    best_epoch = int(extra["best_epoch"])
    state = {
        "format": "mdan_zoo.train/1",
        "epoch": epoch,
        "taxonomy": model.taxonomy.to_dict(),
        "model_config": model.config.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        **extra,
        "best_dir": checkpoint_name(best_epoch) if best_epoch else None,
        "optimizer": opt_meta,
        "rng": rng_meta,
    }
    final = run_dir / "checkpoints" / checkpoint_name(epoch)
    tensors = {"model.safetensors": model_state(model), "training.safetensors": rng_t}
    tensors["training.safetensors"].update(opt_t)
    write_checkpoint_dir(final, tensors, state, epoch=epoch)
    commit_checkpoint(run_dir, epoch, best_epoch=best_epoch, keep=keep)
    return final


def _replace_json(path: Path, data: Mapping[str, Any], *, step: str, epoch: int) -> None:
    """Atomically replace a small JSON file (temporary file, sync, rename, sync the folder)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(data)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        fault_point(f"{step}-tmp", epoch)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)
    fault_point(step, epoch)


def commit_checkpoint(run_dir: Path, epoch: int, *, best_epoch: int, keep: int) -> None:
    """Make ``epoch-<epoch>`` the run's last checkpoint and ``epoch-<best_epoch>`` its selected
    one (both must be written already), then remove epoch folders beyond ``keep``.

    Fault steps: ``last-tmp``, ``last`` (the commit), ``best-tmp``, ``best``, ``rotate``.
    """
    ckpt_dir = run_dir / "checkpoints"
    best = {"dir": checkpoint_name(best_epoch), "epoch": best_epoch} if best_epoch else None
    last = {"dir": checkpoint_name(epoch), "epoch": epoch, "best": best}
    _replace_json(ckpt_dir / "last.json", last, step="last", epoch=epoch)
    if best is not None:
        _replace_json(ckpt_dir / "best.json", best, step="best", epoch=epoch)
    _rotate(ckpt_dir, epoch, best_epoch=best_epoch, keep=keep)
    fault_point("rotate", epoch)


def settle_run(run_dir: Path, epoch: int, *, best_epoch: int, keep: int) -> None:
    """On resume from ``epoch`` (rank 0): finish what a kill after the commit may have cut
    short, so the folder is as if the run had never stopped: ``best.json`` rewritten if it
    differs from ``last.json``'s selection, epoch folders beyond ``keep`` removed. An older
    run's ``best/`` folder is renamed to its epoch folder when that one is gone."""
    ckpt_dir = run_dir / "checkpoints"
    legacy, target = ckpt_dir / "best", ckpt_dir / checkpoint_name(best_epoch)
    if best_epoch and legacy.is_dir() and not target.exists():
        state, _ = inspect_checkpoint(legacy)  # older runs kept the selected epoch in best/
        if state is not None and state["epoch"] == best_epoch:
            os.replace(legacy, target)
            fsync_dir(ckpt_dir)
    if best_epoch:
        best = {"dir": checkpoint_name(best_epoch), "epoch": best_epoch}
        try:
            current = json.loads((ckpt_dir / "best.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if current != best:
            _replace_json(ckpt_dir / "best.json", best, step="best", epoch=epoch)
    _rotate(ckpt_dir, epoch, best_epoch=best_epoch, keep=keep)


def _rotate(ckpt_dir: Path, epoch: int, *, best_epoch: int, keep: int) -> None:
    """Remove the epoch folders up to ``epoch`` other than the ``keep`` newest and the
    selected one; later folders (of a timeline a resume went back from) are left alone."""
    done = sorted(
        (p for p in ckpt_dir.iterdir() if (epoch_of(p.name) or epoch + 1) <= epoch),
        key=lambda p: epoch_of(p.name) or 0,
    )
    keep_names = {p.name for p in done[-keep:]} | {checkpoint_name(epoch)}
    if best_epoch:
        keep_names.add(checkpoint_name(best_epoch))
    old = [p for p in done if p.name not in keep_names]
    legacy = ckpt_dir / "best"  # older runs kept the selected epoch there: once it is
    if best_epoch and legacy.is_dir() and (ckpt_dir / checkpoint_name(best_epoch)).is_dir():
        old.append(legacy)  # in its epoch folder too, the copy goes
    for path in old:
        _remove_dir(path, epoch=epoch)


def _remove_dir(path: Path, *, epoch: int) -> None:
    """Rename to a hidden name, then delete: a kill midway never leaves half a checkpoint
    under a real name (fault step ``remove``: renamed, not yet deleted)."""
    trash = path.with_name(f".{path.name}.del-{os.getpid()}")
    if not HIDDEN_RE.match(trash.name):
        trash = path.with_name(f".epoch-0000.del-{os.getpid()}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    fault_point("remove", epoch)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------------------- the run folder
@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` while a process trains there (released by the
    kernel when the process dies, even by ``kill -9``); a second trainer is refused."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a second trainer is the user's to avoid
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(
                f"another process is training in {run_dir}: wait for it to finish, or choose "
                "another output_dir"
            ) from None
        yield
    finally:
        os.close(fd)


def prepare_run_dir(run_dir: Path, *, resume: bool) -> list[str]:
    """Before a run writes into ``run_dir`` (call with :func:`run_lock` held): refuse to start
    over an earlier run unless ``resume``, and over a ``config.json`` that is not a training
    config; then clean up after killed writes: a folder moved aside whose replacement never
    arrived is put back, hidden temporary folders and files are removed. Returns what was
    cleaned, for the log."""
    traces = run_traces(run_dir)
    if traces and not resume:
        shown = ", ".join(traces[:4]) + (", ..." if len(traces) > 4 else "")
        raise RunFolderError(
            f"{run_dir} already holds a training run ({shown}): pass --resume (resume=True) "
            "to continue it, or choose another output_dir; nothing was changed"
        )
    config_file = run_dir / "config.json"
    if config_file.is_file() and not traces:
        try:
            TrainConfig.from_file(config_file)
        except (ConfigError, ValueError, TypeError, OSError) as err:
            raise RunFolderError(
                f"{run_dir} holds a config.json that is not a training config ({err}): "
                "training would overwrite it; choose another output_dir"
            ) from None
    done = []
    ckpt_dir = run_dir / "checkpoints"
    for folder in (run_dir, ckpt_dir, run_dir / "test"):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            m = HIDDEN_RE.match(p.name) if folder == ckpt_dir else None
            if m and m.group(2) == "old" and not (ckpt_dir / m.group(1)).exists():
                os.replace(p, ckpt_dir / m.group(1))
                done.append(f"restored {m.group(1)} from {p.name}")
            elif m and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p.relative_to(run_dir)}")
            elif _ATOMIC_TMP_RE.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                done.append(f"removed {p.relative_to(run_dir)}")
    if done:
        fsync_dir(ckpt_dir if ckpt_dir.is_dir() else run_dir)
    return done
