"""Crash windows outside the trainer's checkpoints, the worker count, and I/O failures (issue
18, problems 4, 5, 8 and 9).

Real processes are killed with SIGKILL at each instant of interest: a child (forked from a
server that imported everything once) wraps the function whose call marks the instant (the
k-th ``os.replace`` of an export, the k-th confusion PNG of a test report) to kill itself
there, then runs the real ``mdan-zoo`` command. What the kill leaves, and what the next command
makes of it, is then checked against runs that were never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import write_backbone_file, write_fashion_subset

from mdan_zoo import cli
from mdan_zoo.training import TrainConfig


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> Iterator[Path]:
    """300 real Fashion-MNIST training and 20 test images, the backbone file, one thread."""
    root = tmp_path_factory.mktemp("windows")
    write_fashion_subset(root / "fashion", fashion_mnist_dir)
    write_backbone_file(root / "resnet18.pth")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield root
    torch.set_num_threads(threads)


def _config(env: Path, run: str, **changes: Any) -> Path:
    """A run of 2 steps of 4 images per epoch (ResNet-18, 32 px, fpn_channels 16)."""
    values: dict[str, Any] = {
        "name": "windows",
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
        "epochs": 1,
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


def _child(argv: list[str], module: str, name: str, nth: int) -> None:
    """Kill this process with SIGKILL at the ``nth`` call of ``module.name``, running ``argv``."""
    import importlib

    torch.set_num_threads(1)
    target = importlib.import_module(module)
    real = getattr(target, name)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(target, name, wrapped)
    os._exit(cli.main(argv))


_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload([__name__, "mdan_zoo.training", "mdan_zoo.evaluation"])


def _run_killed(argv: list[str], module: str, name: str, nth: int) -> int | None:
    proc = _SERVER.Process(target=_child, args=(argv, module, name, nth))
    proc.start()
    proc.join(300)
    return proc.exitcode


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _export(folder: Path) -> dict[str, Any]:
    """What an export holds, by content (tensor bytes, not the header's byte order), checked
    for being one export: config.json's sha256 is the weights file's."""
    if not folder.is_dir():
        return {}
    files = _files(folder)
    files.pop("notes.txt", None)
    if set(files) != {"README.md", "config.json", "model.safetensors"}:
        return {"files": sorted(files)}
    config = json.loads(files["config.json"])
    record = config.pop("weights")
    consistent = record["sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    tensors = load_file(folder / "model.safetensors")
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode() + tensors[key].numpy().tobytes())
    return {"consistent": consistent, "config": config, "card": files["README.md"],
            "tensors": digest.hexdigest()}  # fmt: skip


# ------------------------------------------------------------------ problem 4: the test report
def test_a_kill_during_the_test_report_never_leaves_a_finished_run(env: Path) -> None:
    cfg = _config(env, "report", eval_test=True)
    run = env / "report" / "seed-0"
    assert (
        _run_killed(
            ["train", str(cfg), "--seeds", "0"], "mdan_zoo.evaluation", "save_confusion_png", 2
        )
        == -signal.SIGKILL
    )
    assert not (run / "test" / "report.json").exists(), "report.json before the rest"
    from mdan_zoo.training import protocol_configs, run_status

    (one,) = protocol_configs(TrainConfig.from_file(cfg), seeds=[0])
    assert run_status(one)[0] == "unfinished"
    assert cli.main(["train", str(cfg), "--seeds", "0", "--resume"]) == 0
    test = run / "test"
    names = sorted(p.name for p in test.iterdir())
    assert "report.json" in names and "report.txt" in names
    assert len([n for n in names if n.startswith("confusion_")]) == 2 * 3 * 2  # 3 levels
    assert not [n for n in names if n.startswith(".")], names  # the killed run's temp files
    assert run_status(one)[0] == "finished"


# ------------------------------------------------------------------ problem 5: export swaps
@pytest.fixture(scope="module")
def two_runs(env: Path) -> tuple[Path, Path]:
    a, b = _config(env, "run-a", seed=1), _config(env, "run-b", seed=2)
    assert cli.main(["train", str(a)]) == 0 and cli.main(["train", str(b)]) == 0
    return env / "run-a", env / "run-b"


def test_export_overwrite_killed_at_every_rename_leaves_old_or_new(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run_a, run_b = two_runs
    assert cli.main(["export", str(run_a), str(tmp_path / "ref-a")]) == 0
    assert cli.main(["export", str(run_b), str(tmp_path / "ref-b")]) == 0
    old, new = _export(tmp_path / "ref-a"), _export(tmp_path / "ref-b")
    assert old["consistent"] and new["consistent"] and old != new
    out = tmp_path / "pub" / "out"
    for nth in range(1, 8):
        shutil.rmtree(tmp_path / "pub", ignore_errors=True)
        assert cli.main(["export", str(run_a), str(out)]) == 0
        (out / "notes.txt").write_text("the user's own file")
        code = _run_killed(["export", str(run_b), str(out), "--overwrite"], "os", "replace", nth)
        if out.exists():
            assert _export(out) in (old, new), (nth, _export(out).get("files"), code)
        else:  # killed between the two renames: the old export waits aside, whole
            (aside,) = out.parent.glob(".out.old-*")
            assert _export(aside) == old, nth
        kept = [out / "notes.txt", *out.parent.glob(".out.old-*/notes.txt")]
        assert [p.read_text() for p in kept if p.is_file()] == ["the user's own file"], nth
        assert cli.main(["export", str(run_a), str(out), "--overwrite"]) == 0  # cleans up
        assert _export(out) == old and (out / "notes.txt").is_file(), nth
        assert sorted(p.name for p in out.parent.iterdir()) == ["out"], nth
        if code == 0:  # the export finished before its nth rename: every window was tried
            break
    else:
        pytest.fail("the export made more renames than the test tried")


def test_two_exports_to_one_folder(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    from mdan_zoo._io import exclusive_lock
    from mdan_zoo.training import export_run

    out = tmp_path / "out"
    with (
        exclusive_lock(out, what="export"),
        pytest.raises(FileExistsError, match="another mdan-zoo export is writing"),
    ):
        export_run(two_runs[0], out)
    assert not out.exists()


def test_an_older_exports_temp_files_are_cleaned(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert cli.main(["export", str(two_runs[0]), str(out)]) == 0
    (out / ".model.safetensors.abcd1234.tmp").write_bytes(b"x" * 1000)  # what a kill left
    assert cli.main(["export", str(two_runs[1]), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


# ------------------------------------------------------------------ problem 8: workers
def test_the_worker_count_never_changes_the_weights(env: Path) -> None:
    """A workers=2 run, and one trained its first epoch with 2 workers and resumed with 0:
    the same weights, bit for bit (flips and crops come from one seeded source per image)."""
    ref = _config(env, "w-ref", epochs=2, workers=2)
    assert cli.main(["train", str(ref)]) == 0
    part = _config(env, "w-part", epochs=1, workers=2)
    assert cli.main(["train", str(part)]) == 0
    cfg = TrainConfig.from_file(part).to_dict()
    cfg.update(epochs=2, workers=0)
    TrainConfig(**cfg).to_json(part)
    assert cli.main(["train", str(part), "--resume"]) == 0
    a = load_file(env / "w-ref" / "checkpoints" / "epoch-0002" / "model.safetensors")
    b = load_file(env / "w-part" / "checkpoints" / "epoch-0002" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ problem 9: messages
def _one_paragraph(text: str) -> str:
    assert "Traceback" not in text, text
    logged = ("INFO ", "WARNING ", "DEBUG ")  # the run's log lines, not the message
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(logged)]
    assert len(lines) == 1, text
    return lines[0]


def test_config_mistakes_are_messages(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(env, "bad-workers")
    data = json.loads(cfg.read_text())
    data["workers"] = -3
    cfg.write_text(json.dumps(data))
    assert cli.main(["train", str(cfg)]) == 1  # a config error, as every other
    message = _one_paragraph(capsys.readouterr().err)
    assert "workers" in message and "-3" in message
    deep = env / "deep.json"
    deep.write_text('{"a": ' * 200_000 + "1" + "}" * 200_000)
    assert cli.main(["train", str(deep)]) == 1
    message = _one_paragraph(capsys.readouterr().err)
    assert "nested too deeply" in message and str(deep) in message


def test_a_csv_with_a_huge_field_is_a_message(tmp_path: Path) -> None:
    from mdan_zoo.data import DatasetError, load_dataset
    from mdan_zoo.taxonomy import get_taxonomy

    table = tmp_path / "labels.csv"
    table.write_text("path,label\n" + "a" * 200_000 + ",joy\n")
    with pytest.raises(DatasetError, match="line 2") as err:
        load_dataset("csv", table, taxonomy=get_taxonomy("fashion_mnist"))
    assert str(table) in str(err.value)


def test_init_from_a_pickle_only_folder_is_a_message(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "hf-model"
    folder.mkdir()
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    cfg = _config(env, "init-pickle", init_from=str(folder))
    assert cli.main(["train", str(cfg)]) == 1
    message = _one_paragraph(capsys.readouterr().err)
    assert "pytorch_model.bin" in message and "safetensors" in message


def test_a_pickled_backbone_file_never_advises_unpickling(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "evil.pth"

    class Payload:
        def __reduce__(self) -> Any:
            return (os.system, ("echo pwned",))

    torch.save({"weight": Payload()}, evil)
    cfg = _config(env, "evil", pretrained=str(evil))
    assert cli.main(["train", str(cfg)]) == 1
    message = _one_paragraph(capsys.readouterr().err)
    assert str(evil) in message and "weights_only=False" not in message
    assert "never" in message


def test_a_full_disk_during_training_and_export(
    env: Path, two_runs: tuple[Path, Path], small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(env, "full", output_dir=str(small_disk / "run"))
    assert cli.main(["train", str(cfg)]) == 1
    message = _one_paragraph(capsys.readouterr().err)
    assert "no space left" in message and str(small_disk) in message, message
    assert not [
        p for p in (small_disk / "run").rglob("*") if p.name.startswith(".") and p.is_file()
    ]
    assert cli.main(["export", str(two_runs[0]), str(small_disk / "export")]) == 1
    message = _one_paragraph(capsys.readouterr().err)
    assert "no space left" in message and str(small_disk) in message, message
    assert sorted(p.name for p in small_disk.iterdir()) == ["run"]  # nothing half-written


def test_read_only_and_file_targets(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() == 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                              capture_output=True)  # fmt: skip
        if proc.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
    try:
        assert cli.main(["export", str(two_runs[0]), str(ro / "out")]) == 1
        message = _one_paragraph(capsys.readouterr().err)
        assert str(ro) in message and ("read-only" in message or "permission" in message)
        cfg = _config(two_runs[0].parent, "eval-ro")
        argv = ["eval", str(cfg), "--checkpoint", str(two_runs[0]), "--no-progress"]
        assert cli.main([*argv, "--out", str(ro / "report")]) == 1
        message = _one_paragraph(capsys.readouterr().err)
        assert str(ro) in message and ("read-only" in message or "permission" in message)
        a_file = tmp_path / "a_file"
        a_file.write_text("mine")
        assert cli.main([*argv, "--out", str(a_file)]) == 2  # a usage error, before any work
        message = _one_paragraph(capsys.readouterr().err)
        assert str(a_file) in message and "is a file" in message
        assert a_file.read_text() == "mine"
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
