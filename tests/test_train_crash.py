"""The crash-consistency promise of docs/training.md ("Guarantees"), proved on real processes.

A training process (``mdan-zoo train`` in a child forked from a server process that imported
everything once, so that each run does not pay the start-up again) is killed with SIGKILL at
each named step of a checkpoint write (``MDAN_ZOO_FAULT``) and inside an epoch, and a fresh
``python -m mdan_zoo`` is killed from outside in the middle of a write; ``--resume`` must then
end with the very weights, optimizer and RNG state, metrics and selected epoch of a run that
was never interrupted. Between the kill and the resume the selected checkpoint on disk must be
the one the last checkpoint reports, with nothing skipped. Damaged checkpoints are skipped with
a warning that names them, or the folder is refused; a run folder is never started over.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import write_backbone_file, write_fashion_subset

from mdan_zoo import cli
from mdan_zoo.training import TIMING_KEYS
from mdan_zoo.training._checkpoints import (
    RunFolderError,
    checkpoint_name,
    find_checkpoints,
    load_checkpoint,
)
from mdan_zoo.training._config import TrainConfig
from mdan_zoo.training._publish import run_metrics
from mdan_zoo.training._run_writer import FAULT_ENV, run_lock

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
KILL_EPOCH = 2
# A kill up to and including "last-tmp" leaves epoch KILL_EPOCH - 1 committed; from "last" on,
# epoch KILL_EPOCH (last.json is the commit point).
BEFORE_COMMIT = ["train-step", "validate", "tmp-model", "tmp-training", "tmp-state", "rename"]
BEFORE_COMMIT += ["last-tmp"]
AFTER_COMMIT = ["last", "best-tmp", "best", "remove", "rotate", "metrics"]
TIMING = TIMING_KEYS  # the keys that measure time differ between runs


# ---------------------------------------------------------------------------- set-up
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> Any:
    """300 real Fashion-MNIST training and 20 test images as IDX files (the ``fashion_mnist``
    dataset then reads 4 per class for training, 1 per class for validation), the backbone
    file, and one torch thread in this process and in the forked ones.

    The runs go to /dev/shm when it has room: a kill -9 leaves page-cache files exactly as it
    leaves disk files, and the ~100 checkpoint writes (90 MB each) then cost no disk syncs.
    Each test removes its run folder once it passed."""
    shm = Path("/dev/shm")
    in_memory = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4e9
    if in_memory:
        root = Path(tempfile.mkdtemp(prefix="mdan-zoo-crash-", dir=shm))
    else:
        root = tmp_path_factory.mktemp("crash")
    write_fashion_subset(root / "fashion", fashion_mnist_dir)
    write_backbone_file(root / "resnet18.pth")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield root
    torch.set_num_threads(threads)
    if in_memory:
        shutil.rmtree(root, ignore_errors=True)


def _config(env: Path, run: str, **changes: Any) -> Path:
    """A 3-epoch run of 2 steps of 4 images (ResNet-18, 32 px, fpn_channels 16) into
    ``env/run``; its config file."""
    values: dict[str, Any] = {
        "name": "crash",
        "taxonomy": "fashion_mnist",
        "dataset": "fashion_mnist",
        "data_root": str(env / "fashion"),
        "subset_per_class": 4,
        "val_fraction": 0.1,
        "backbone": "resnet18",
        "input_size": 32,
        "resize_size": 32,
        "pretrained": str(env / "resnet18.pth"),
        "model": {"fpn_channels": 16},
        "epochs": EPOCHS,
        "batch_size": 4,
        "max_steps_per_epoch": 2,
        "workers": 0,
        "progress": False,
        "eval_test": False,
        "eval_batch_size": 50,
        "output_dir": str(env / run),
    }
    values.update(changes)
    path = env / f"{run}.json"
    TrainConfig(**values).to_json(path)
    return path


def _child(cfg: str, fault: str, resume: bool) -> None:
    torch.set_num_threads(1)
    os.environ[FAULT_ENV] = fault
    os._exit(cli.main(["train", cfg, *(["--resume"] if resume else [])]))


# Children fork from a server process that imported everything once and never ran autograd
# (a plain fork of this process is refused by autograd once the process has trained here).
_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload([__name__, "mdan_zoo.training._trainer", "mdan_zoo.evaluation"])


def _killed(cfg: Path, fault: str, *, resume: bool = False) -> None:
    """``mdan-zoo train`` in a child process that kills itself with SIGKILL at ``fault``."""
    proc = _SERVER.Process(target=_child, args=(str(cfg), fault, resume))
    proc.start()
    proc.join(300)
    assert proc.exitcode == -signal.SIGKILL, f"{fault}: exit code {proc.exitcode}, not SIGKILL"


def _train(cfg: Path, *, resume: bool = False) -> int:
    return cli.main(["train", str(cfg), "--no-progress", *(["--resume"] if resume else [])])


def _tree(run: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------- checks
def _consistent(run: Path, committed: int) -> None:
    """What a killed run leaves: the committed epoch, nothing damaged, and the selected
    checkpoint on disk (load, export) is the epoch the last checkpoint reports."""
    found = find_checkpoints(run)
    assert found is not None and found.skipped == (), found
    assert found.state["epoch"] == committed
    best_epoch = found.state["best_epoch"]
    assert run_metrics(run)["selected_epoch"] == best_epoch  # what export would ship
    assert found.best is not None and found.best.name == checkpoint_name(best_epoch)


def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def _outcome(run: Path) -> dict[str, Any]:
    """What a finished run leaves: the last checkpoint (weights, optimizer and RNG tensors,
    state), the selected one, the log, the folder listing. Nothing may be skipped."""
    found = find_checkpoints(run)
    assert found is not None and found.skipped == (), found
    assert found.best is not None and found.best.name == checkpoint_name(found.state["best_epoch"])
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert _rows(log) == _rows(found.state["history"])
    return {
        "state": found.state,
        "weights": load_file(found.last / "model.safetensors"),
        "training": load_file(found.last / "training.safetensors"),
        "best": found.best.name,
        "best_weights": load_file(found.best / "model.safetensors"),
        "folders": sorted(os.listdir(run / "checkpoints")),
    }


def _same_run(ref: dict[str, Any], run: Path, *, same_folders: bool = True) -> None:
    """Bit-identical end state: weights, optimizer and RNG tensors, scheduler, metrics, the
    selected epoch and its weights, the log; and no leftovers. Then the run folder goes."""
    out = _outcome(run)
    a, b = ref["state"], out["state"]
    assert a["epoch"] == b["epoch"] == EPOCHS
    for key in ("weights", "training", "best_weights"):
        assert ref[key].keys() == out[key].keys()
        for k in ref[key]:
            assert torch.equal(ref[key][k], out[key][k]), (key, k)
    for key in ("optimizer", "scheduler", "scaler", "rng", "metrics", "best_epoch", "best_metric"):
        assert a[key] == b[key], key
    assert _rows(a["history"]) == _rows(b["history"])
    assert ref["best"] == out["best"]
    assert not [n for n in out["folders"] if n.startswith(".")], out["folders"]
    if same_folders:
        assert out["folders"] == ref["folders"]
    shutil.rmtree(run)


@pytest.fixture(scope="module")
def reference(env: Path) -> dict[str, Any]:
    """The run that is never interrupted."""
    assert _train(_config(env, "reference")) == 0
    return _outcome(env / "reference")


@pytest.fixture(scope="module")
def after_epoch1(env: Path) -> Path:
    """A run killed right after epoch 1 was complete; the phase tests continue copies of it."""
    _killed(_config(env, "after-epoch1"), "after:metrics@1")
    _consistent(env / "after-epoch1", 1)
    return env / "after-epoch1"


def _first_removal(ref: dict[str, Any]) -> int:
    """The first epoch whose commit removes an epoch folder (keep_checkpoints=1)."""
    kept: list[int] = []
    best = 0
    for row in ref["state"]["history"]:
        kept.append(row["epoch"])
        best = row["epoch"] if row["selected"] else best
        if any(e not in (row["epoch"], best) for e in kept):
            return int(row["epoch"])
        kept = [e for e in kept if e in (row["epoch"], best)]
    raise AssertionError("the reference run never removes a folder")


# ---------------------------------------------------------------------------- kills
@pytest.mark.parametrize("step", BEFORE_COMMIT + AFTER_COMMIT)
def test_kill_at_each_step_then_resume_equals_uninterrupted_run(
    step: str,
    env: Path,
    reference: dict[str, Any],
    after_epoch1: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Continue the run that finished epoch 1, kill it at ``step`` of epoch 2 (of the first
    epoch that removes a folder for ``remove``), resume."""
    epoch = _first_removal(reference) if step == "remove" else KILL_EPOCH
    shutil.copytree(after_epoch1, env / f"kill-{step}")
    cfg = _config(env, f"kill-{step}")
    _killed(cfg, f"after:{step}@{epoch}", resume=True)
    _consistent(env / f"kill-{step}", epoch - 1 if step in BEFORE_COMMIT else epoch)
    assert _train(cfg, resume=True) == 0
    log = capsys.readouterr().err  # mdan-zoo logs to stderr
    if step in ("tmp-model", "tmp-training", "tmp-state", "last-tmp", "best-tmp", "remove"):
        assert "after an interrupted write, removed" in log  # the leftover is gone
    _same_run(reference, env / f"kill-{step}")


def test_kill_while_a_folder_is_replaced_then_again(
    env: Path, reference: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after writing epoch 2 but before committing it; the resumed process is killed
    after moving that folder aside to replace it; the next start puts it back."""
    cfg = _config(env, "twice")
    _killed(cfg, f"after:rename@{KILL_EPOCH}")
    _killed(cfg, f"after:aside@{KILL_EPOCH}", resume=True)
    ckpts = env / "twice" / "checkpoints"
    assert not (ckpts / checkpoint_name(KILL_EPOCH)).exists()
    assert [p.name for p in ckpts.glob(f".{checkpoint_name(KILL_EPOCH)}.old-*")]
    _consistent(env / "twice", KILL_EPOCH - 1)
    assert _train(cfg, resume=True) == 0
    log = capsys.readouterr().err  # mdan-zoo logs to stderr
    assert f"restored {checkpoint_name(KILL_EPOCH)}" in log
    _same_run(reference, env / "twice")


def test_kill_from_outside_in_the_middle_of_a_write(
    env: Path, reference: dict[str, Any], after_epoch1: Path
) -> None:
    """A fresh ``python -m mdan_zoo train --resume`` (no fault hook) continuing the run that
    finished epoch 1, killed by this test as soon as it starts writing epoch 2, wherever in
    the write it then is."""
    run = env / "outside"
    shutil.copytree(after_epoch1, run)
    cfg = _config(env, "outside")
    pyenv = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    pyenv.pop(FAULT_ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdan_zoo", "train", str(cfg), "--no-progress", "--resume"],
        env=pyenv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if any((run / "checkpoints").glob(".epoch-*.tmp-*")):
            break
        time.sleep(0.002)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    found = find_checkpoints(run)
    assert found is not None and found.skipped == () and found.state["epoch"] in (1, 2)
    assert _train(cfg, resume=True) == 0
    _same_run(reference, run)


# ---------------------------------------------------------------------------- damage
@pytest.fixture(scope="module")
def two_epochs(env: Path) -> Path:
    """A run killed after epoch 2 that keeps both epoch folders (keep_checkpoints=2)."""
    _killed(_config(env, "two", keep_checkpoints=2), "after:metrics@2")
    assert sorted(p.name for p in (env / "two" / "checkpoints").glob("epoch-*")) == [
        "epoch-0001",
        "epoch-0002",
    ]
    return env / "two"


def _damage(ckpts: Path, how: str) -> None:
    if how == "truncated-weights":
        data = (ckpts / "epoch-0002" / "model.safetensors").read_bytes()
        (ckpts / "epoch-0002" / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "bad-state":
        (ckpts / "epoch-0002" / "state.json").write_text('{"format": "mdan_zoo.train/1", "ep')
    elif how == "flipped-byte":  # same size, different content: only the checksum can tell
        path = ckpts / "epoch-0002" / "training.safetensors"
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "empty-last":
        (ckpts / "last.json").write_text("")
    elif how == "missing-last":
        (ckpts / "last.json").unlink()
    elif how == "dangling-last":
        (ckpts / "last.json").write_text('{"dir": "epoch-0007", "epoch": 7}')


DAMAGE = {  # how -> (what the warning names, the epoch resumed from)
    "truncated-weights": ("epoch-0002 (model.safetensors has", 1),
    "bad-state": ("epoch-0002 (state.json is not valid JSON", 1),
    "flipped-byte": ("epoch-0002 (training.safetensors does not match the SHA-256", 1),
    "empty-last": ("last.json (empty)", 2),
    "missing-last": ("last.json (missing)", 2),
    "dangling-last": ("last.json (points at epoch-0007, which does not exist)", 2),
}


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_latest_checkpoint_falls_back_with_a_warning(
    how: str,
    env: Path,
    two_epochs: Path,
    reference: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = env / f"damaged-{how}"
    shutil.copytree(two_epochs, run)
    cfg = _config(env, f"damaged-{how}", keep_checkpoints=2)
    _damage(run / "checkpoints", how)
    if how.endswith("-last"):  # without --resume: refused whatever state the pointer is in
        before = _tree(run)
        assert _train(cfg) == 1
        assert _tree(run) == before
    assert _train(cfg, resume=True) == 0
    log = capsys.readouterr().err  # mdan-zoo logs to stderr
    named, epoch = DAMAGE[how]
    assert f"from {checkpoint_name(epoch)}: skipped" in log and named in log
    assert f"resumed from {run / 'checkpoints' / checkpoint_name(epoch)}" in log
    _same_run(reference, run, same_folders=False)


def test_run_folder_without_a_trusted_checkpoint_is_refused_untouched(
    env: Path, two_epochs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = env / "hopeless"
    shutil.copytree(two_epochs, run)
    cfg = _config(env, "hopeless", keep_checkpoints=2)
    (run / "checkpoints" / "last.json").write_text("{")
    for name in ("epoch-0001", "epoch-0002"):
        data = (run / "checkpoints" / name / "model.safetensors").read_bytes()
        (run / "checkpoints" / name / "model.safetensors").write_bytes(data[:100])
    before = _tree(run)
    for resume in (True, False):
        assert _train(cfg, resume=resume) == 1
        assert _tree(run) == before
    err = capsys.readouterr().err
    assert "holds a training run but no checkpoint that can be trusted" in err
    assert "last.json: not valid JSON" in err and "epoch-0001: model.safetensors has 100" in err
    assert "Nothing was changed" in err and "Traceback" not in err
    with pytest.raises(RunFolderError, match="no checkpoint that can be trusted"):
        load_checkpoint(run)
    assert cli.main(["export", str(run), str(env / "hopeless-export")]) == 1
    assert not (env / "hopeless-export").exists()
    shutil.rmtree(run)


def test_damaged_checkpoint_folder_gives_a_clear_error(env: Path, two_epochs: Path) -> None:
    folder = env / "one-folder"
    shutil.copytree(two_epochs / "checkpoints" / "epoch-0001", folder)
    (folder / "state.json").write_bytes(b"\xff\xfe")
    with pytest.raises(RunFolderError, match=r"one-folder is not a usable checkpoint: state"):
        load_checkpoint(folder)
    shutil.rmtree(folder)


def test_second_trainer_on_the_same_folder_is_refused(
    env: Path, after_epoch1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While one process trains in a folder (it holds the lock), another is refused before
    it touches anything; the lock dies with its holder, so a kill never leaves it behind."""
    run = env / "locked"
    shutil.copytree(after_epoch1, run)
    cfg = _config(env, "locked")
    before = _tree(run)
    with run_lock(run):
        assert _train(cfg, resume=True) == 1
    assert "another process is training in" in capsys.readouterr().err
    assert _tree(run) == before
    _killed(cfg, "after:train-step@2", resume=True)  # held the lock when it died
    _consistent(run, 1)
    with run_lock(run):
        pass
    shutil.rmtree(run)


def test_run_written_in_the_older_layout_resumes_and_keeps_its_selected_epoch(
    env: Path, two_epochs: Path, reference: dict[str, Any]
) -> None:
    """Older runs kept the selected epoch in a separate best/ folder (weights and state, no
    checksums) and rotated its epoch folder away; a resume moves best/ to its epoch folder
    rather than losing it, and ends as the uninterrupted run."""
    run = env / "older"
    shutil.copytree(two_epochs, run)
    ckpts = run / "checkpoints"
    best_epoch = json.loads((ckpts / "last.json").read_text())["best"]["epoch"]
    selected = ckpts / checkpoint_name(best_epoch)
    (ckpts / "best").mkdir()
    shutil.copy(selected / "model.safetensors", ckpts / "best")
    state = json.loads((selected / "state.json").read_text())
    for key in ("files", "best_dir", "optimizer", "rng"):
        state.pop(key)
    (ckpts / "best" / "state.json").write_text(json.dumps(state))
    for folder in ckpts.glob("epoch-*"):
        state = json.loads((folder / "state.json").read_text())
        state.pop("files"), state.pop("best_dir")
        (folder / "state.json").write_text(json.dumps(state))
    if best_epoch != 2:
        shutil.rmtree(selected)  # rotated away: best/ was its only copy
    (ckpts / "last.json").write_text('{"dir": "epoch-0002", "epoch": 2}')
    (ckpts / "best.json").write_text(f'{{"dir": "best", "epoch": {best_epoch}}}')
    older = load_checkpoint(run)
    assert older.epoch == best_epoch and older.path.name == "best"
    assert _train(_config(env, "older", keep_checkpoints=2), resume=True) == 0
    assert not (ckpts / "best").exists()
    _same_run(reference, run, same_folders=False)
