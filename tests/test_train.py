"""The trainer on real Fashion-MNIST images: it learns, a killed run resumes to the very same
weights, a NaN loss stops with a clear error, configs are validated, the CLI trains and exports."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from data_trees import MIKELS, make_fi
from torch.utils.data import TensorDataset
from train_helpers import fashion_sets, load_weights, tiny_config

from mdan_zoo.cli import main
from mdan_zoo.config import ConfigError
from mdan_zoo.data.dataset import ImageDecodeError
from mdan_zoo.training._checkpoints import load_checkpoint
from mdan_zoo.training._config import TrainConfig, list_configs
from mdan_zoo.training._setup import build_datasets
from mdan_zoo.training._trainer import NonFiniteLossError, RunExistsError, Trainer, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_trainer_learns_fashion_mnist(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """400 real images, 5 epochs from scratch: held-out accuracy far above chance per level."""
    sets = fashion_sets(train_per_class=40, val_per_class=10, test_per_class=20)
    # the backbone is random here, so it gets the larger rate; 0.02 on the new layers saturates
    # the finest level's local softmax (P_L collapses to one class), 0.002 does not
    cfg = tiny_config(
        tmp_path,
        pretrained="none",
        epochs=5,
        batch_size=20,
        lr_backbone=0.02,
        lr_new=0.002,
        lr_step_epochs=4,
    )
    result = train(cfg, datasets=sets)
    acc = result.test_report.accuracy  # chance: 0.5, 0.25, 0.1
    assert acc["overall"][0] >= 0.85, acc
    assert acc["overall"][1] >= 0.6, acc
    assert acc["overall"][2] >= 0.4, acc
    assert acc["local"][2] >= 0.3 and acc["global"][2] >= 0.3, acc
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8, losses
    # the exported epoch is the validation-best one, and the log has one line per epoch
    best = max(result.history, key=lambda h: h["val/overall/mean"])
    assert result.best_epoch == best["epoch"]
    assert load_checkpoint(result.output_dir).epoch == best["epoch"]
    lines = (result.output_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4, 5]
    assert (result.output_dir / "test" / "report.json").is_file()


class _Killed(RuntimeError):
    pass


@pytest.fixture
def one_thread() -> Any:
    """One torch thread: on a busy 2-core machine two threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_after_kill_equals_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fashion_mnist_dir: Path, one_thread: None
) -> None:
    """Kill in the middle of epoch 2 (after the epoch-1 checkpoint), resume: bit-identical
    weights and optimizer state to a run that was never interrupted. 30 images in batches of
    12: every epoch ends with a partial batch of 6, trained like the others."""
    sets = fashion_sets(train_per_class=3, val_per_class=2)
    short = {"epochs": 3, "eval_test": False}
    ref = train(tiny_config(tmp_path / "a", **short), datasets=sets)
    assert [(h["train_steps"], h["train_images"]) for h in ref.history] == [(3, 30)] * 3

    def kill(self: Trainer, epoch: int, step: int) -> None:
        if epoch == 2 and step == 2:
            raise _Killed("simulated kill")

    cfg_b = tiny_config(tmp_path / "b", **short)
    monkeypatch.setattr(Trainer, "_on_step", kill)
    with pytest.raises(_Killed):
        train(cfg_b, datasets=sets)
    assert load_checkpoint(cfg_b.resolved_output_dir(), which="last").epoch == 1
    monkeypatch.undo()
    with pytest.raises(RunExistsError, match=r"train\(config, resume=True\)"):
        train(cfg_b, datasets=sets)  # no silent overwrite of a run
    resumed = train(cfg_b, datasets=sets, resume=True)

    wa, wb = load_weights(ref.output_dir), load_weights(resumed.output_dir)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ta = load_checkpoint(ref.output_dir, which="last").tensors
    tb = load_checkpoint(resumed.output_dir, which="last").tensors
    for k in ta:
        if k.startswith("optimizer/"):
            assert torch.equal(ta[k], tb[k]), k
    assert [h["train_loss"] for h in ref.history] == [h["train_loss"] for h in resumed.history]


def test_training_image_broken_after_the_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, one_thread: None
) -> None:
    """An image that passed the check and then fails to decode in a DataLoader worker: with
    on_missing='skip' the epoch goes on and the file is named and counted; with 'error' the
    run stops with the file and the fix, not a worker's traceback."""
    make_fi(tmp_path / "fi", {label: 5 for label in MIKELS})
    common = {"taxonomy": "fi", "dataset": "fi", "data_root": str(tmp_path / "fi")}
    common.update(workers=1, epochs=1, eval_test=False)
    probe = tiny_config(tmp_path, **common)
    n_train = len(build_datasets(probe, taxonomy=probe.load_taxonomy())["train"])
    # one batch of the whole split: every training image is read in the epoch
    cfg = tiny_config(tmp_path, on_missing="skip", batch_size=n_train, **common)
    trainer = Trainer(cfg)
    victim = Path(trainer.datasets["train"].samples[3][0])  # type: ignore[attr-defined]
    good = victim.read_bytes()
    victim.write_bytes(good[:500])
    with caplog.at_level(logging.WARNING):
        result = trainer.fit()
    assert result.history[0]["train_images"] == n_train
    assert f"1 training image(s) failed to decode and were left out (1 so far): {victim}: " in (
        caplog.text
    )
    victim.write_bytes(good)
    cfg = tiny_config(
        tmp_path, on_missing="error", batch_size=n_train, output_dir=str(tmp_path / "e"), **common
    )
    trainer = Trainer(cfg)
    victim = Path(trainer.datasets["train"].samples[4][0])  # type: ignore[attr-defined]
    victim.write_bytes(victim.read_bytes()[:500])
    with pytest.raises(ImageDecodeError) as err:
        trainer.fit()
    msg = str(err.value)
    assert msg.startswith(f"cannot decode image {victim}") and "on_missing='skip'" in msg
    assert "Traceback" not in msg


def test_nan_loss_stops_with_epoch_and_step(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    sets = fashion_sets(train_per_class=3, val_per_class=1)
    x, y = sets["train"].tensors
    x = x.clone()
    x[:] = float("nan")
    sets["train"] = TensorDataset(x, y)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1 of \d+") as err:
        train(tiny_config(tmp_path, eval_test=False), datasets=sets)
    assert "lr_new" in str(err.value)


def test_config_overrides_are_typed_and_unknown_keys_fail(tmp_path: Path) -> None:
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr_backbone, cfg.lr_new) == (30, 64, 1e-3, 1e-2)
    assert (cfg.momentum, cfg.weight_decay, cfg.lr_step_epochs, cfg.lr_gamma) == (
        0.9,
        1e-3,
        10,
        0.1,
    )
    new = cfg.with_overrides(["epochs=5", "model.alpha=0.5", "name=x", "micro_batch_size=16"])
    assert (new.epochs, new.model_config().alpha, new.name, new.micro_batch_size) == (
        5,
        0.5,
        "x",
        16,
    )
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        cfg.with_overrides(["epoch=5"])
    with pytest.raises(ConfigError, match="epochs"):
        cfg.with_overrides(["epochs=five"])
    with pytest.raises(ConfigError, match="unknown MDANConfig"):
        cfg.with_overrides(["model.alpah=0.5"])
    with pytest.raises(ConfigError, match="key=value"):
        cfg.with_overrides(["epochs"])
    toml = tmp_path / "c.toml"
    toml.write_text('name = "t"\nepochs = 2\n[model]\nalpha = 0.6\n')
    loaded = TrainConfig.from_file(toml)
    assert (loaded.epochs, loaded.model_config().alpha) == (2, 0.6)
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 2, "lr": 0.1}')
    with pytest.raises(ConfigError, match=r"unknown TrainConfig key\(s\) \['lr'\]"):
        TrainConfig.from_file(bad)


def test_every_shipped_config_is_valid_and_states_the_paper_targets() -> None:
    files = sorted((ROOT / "mdan_zoo" / "configs").glob("*.*"))
    names = [f.stem for f in files]
    assert names == list_configs()
    assert {
        "fi",
        "webemo",
        "emotion6",
        "artphoto",
        "iaps",
        "abstract",
        "fashion_mnist_demo",
    } <= set(names)
    for name in names:
        cfg = TrainConfig.from_file(name)
        tax = cfg.load_taxonomy()
        assert cfg.description, name  # `mdan-zoo configs` shows it
        if name in ("fi", "webemo", "emotion6", "artphoto", "iaps", "abstract"):
            targets = cfg.paper["accuracy_O"]
            assert set(targets) == {str(k) for k in tax.num_classes}, name
            assert cfg.paper["expected_gpu_time"], name
            assert cfg.backbone == "resnet101" and cfg.input_size == 448
        if name in ("artphoto", "iaps", "abstract"):  # --folds 5 puts fold k in <output_dir>/fold-k
            assert "{fold}" not in cfg.output_dir and cfg.init_from == "runs/mdan_fi/seed-0"


def test_workers_and_threads_are_capped_at_the_cpus_once(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import os
    import warnings

    from torch.utils.data import DataLoader

    cpus = len(os.sched_getaffinity(0))
    cfg = TrainConfig(workers=cpus + 7)
    left = max(0, cpus - 1)  # a core stays with the model's intra-op threads
    with caplog.at_level(logging.INFO, logger="mdan_zoo.training._config"):
        assert cfg.loader_workers() == left
        assert cfg.loader_workers() == left
    threads = cfg.intra_op_threads()
    assert threads + left <= max(cpus, 1)
    assert [r.getMessage() for r in caplog.records].count(
        f"workers={cpus + 7} but this process may use {cpus} CPUs and runs {threads} intra-op "
        f"thread(s): using {left} DataLoader workers"
    ) == 1
    assert TrainConfig(workers=0).loader_workers() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "will create N worker processes" warning
        loader = DataLoader(TensorDataset(torch.zeros(4, 1)), num_workers=cfg.loader_workers())
        assert len(list(loader)) == 4


def test_the_demo_config_builds_its_data_and_a_short_subset_is_named(
    fashion_mnist_dir: Path,
) -> None:
    from mdan_zoo.training._setup import build_datasets

    cfg = TrainConfig.from_file("fashion_mnist_demo")
    sizes = {k: len(v) for k, v in build_datasets(cfg, taxonomy=cfg.load_taxonomy()).items()}
    assert sizes == {"train": 2000, "val": 500, "test": 500}
    with pytest.raises(ConfigError, match=r"needs 50 validation images .*raise val_fraction"):
        small = cfg.with_overrides(["val_fraction=0.005"])
        build_datasets(small, taxonomy=small.load_taxonomy())


def test_missing_data_root_says_how_to_set_it(tmp_path: Path) -> None:
    from mdan_zoo.training._setup import build_datasets

    cfg = TrainConfig.from_file("fi").with_overrides([f"data_root={tmp_path / 'FI'}"])
    with pytest.raises(ConfigError, match=r"FI does not exist .*--set data_root="):
        build_datasets(cfg, taxonomy=cfg.load_taxonomy())


def test_cli_train_export_and_bad_override(
    tmp_path: Path, fashion_mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI path reads the images through the dataset transforms, trains, exports to the Hub
    layout with metrics in the card, and rejects an unknown key with a clear message."""
    from mdan_zoo.zoo import load_pretrained

    cfg = tiny_config(tmp_path, epochs=1, subset_per_class=4, val_fraction=0.01)
    cfg_file = tmp_path / "cfg.json"
    cfg.to_json(cfg_file)
    assert main(["train", str(cfg_file), "--set", "bogus=1"]) == 1
    assert "unknown config key 'bogus'" in capsys.readouterr().err
    assert main(["train", str(cfg_file), "--set", "batch_size=10", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Acc_O" in out and "best epoch 1" in out
    run = cfg.resolved_output_dir()
    assert main(["export", str(run), str(tmp_path / "hub")]) == 0
    card = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert card["training"]["batch_size"] == 10
    assert set(card["metrics"]["accuracy_O"]) == {"2", "4", "10"}
    model = load_pretrained(tmp_path / "hub")
    ref = load_checkpoint(run).model
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


# ------------------------------------------------------------------ two processes, partial batch
def _gloo_worker(rank: int, world: int, ports: list[int], tmp: str, sets: dict, out: str) -> None:
    import contextlib
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(ports[0]),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    common = {"batchnorm": "frozen", "eval_test": False, "epochs": 1, "micro_batch_size": 6}
    train(tiny_config(Path(tmp), output_dir=f"{tmp}/{out}", batch_size=24, **common), datasets=sets)
    if world > 1:  # the command line under torchrun: one summary, from rank 0
        os.environ["MASTER_PORT"] = str(ports[1])
        cfg = tiny_config(Path(tmp), output_dir=f"{tmp}/cli", subset_per_class=1, batch_size=4)
        cfg.to_json(Path(tmp) / f"cli-{rank}.json")
        with open(f"{tmp}/stdout-{rank}.txt", "w") as fh, contextlib.redirect_stdout(fh):
            code = main(["train", f"{tmp}/cli-{rank}.json", "--no-progress", "--set", "eval_test=false"])  # fmt: skip
        assert code == 0


@pytest.mark.slow
def test_two_gloo_processes_train_the_partial_batch_like_one(
    tmp_path: Path, fashion_mnist_dir: Path
) -> None:
    """60 images in steps of 24: 24, 24 and a last step of 12 (6 per process), with gradient
    accumulation (micro-batches of 6). Two processes end within 1e-5 of one process on every
    weight (tests/test_train_distributed.py explains the tolerance), so the partial step is
    weighted as one process weighs it; and the command line prints its summary once."""
    import socket

    import torch.multiprocessing as mp

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    sets = fashion_sets(train_per_class=6, val_per_class=1)
    tiny_config(tmp_path)  # the start weights, written once before the processes read them
    mp.spawn(_gloo_worker, args=(2, [port(), port()], str(tmp_path), sets, "two"), nprocs=2)
    mp.spawn(_gloo_worker, args=(1, [port(), port()], str(tmp_path), sets, "one"), nprocs=1)
    logs = [json.loads((tmp_path / d / "metrics.jsonl").read_text()) for d in ("two", "one")]
    assert [(h["train_steps"], h["train_images"]) for h in logs] == [(3, 60), (3, 60)]
    wa, wb = load_weights(tmp_path / "two"), load_weights(tmp_path / "one")
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst <= 1e-5, worst
    start = torch.load(tmp_path / "resnet18.pth", weights_only=True)
    moved = max(
        float((wa[f"backbone.{k}"] - w0).abs().max())
        for k, w0 in start.items()
        if f"backbone.{k}" in wa and w0.is_floating_point()
    )
    assert moved > 1e-3, moved
    printed = [(tmp_path / f"stdout-{r}.txt").read_text() for r in (0, 1)]
    assert printed[0].count("best epoch") == 1 and printed[1] == "", printed


def test_split_seed_gives_every_seed_the_same_split(tmp_path: Path) -> None:
    """Each seed draws its own split by default (Sec. 5.2 is silent); ``split_seed`` fixes it."""
    make_fi(tmp_path / "FI", {name: 8 for name in MIKELS})

    def test_images(seed: int, split_seed: int | None = None) -> list[str]:
        cfg = TrainConfig(
            dataset="fi", taxonomy="fi", data_root=str(tmp_path / "FI"), seed=seed,
            split_seed=split_seed, split_dir=str(tmp_path / "splits"), progress=False,
        )  # fmt: skip
        return sorted(
            p for p, _ in build_datasets(cfg, taxonomy=cfg.load_taxonomy())["test"].samples
        )

    assert test_images(0) != test_images(1)
    assert test_images(0, split_seed=0) == test_images(1, split_seed=0) == test_images(0)
    assert TrainConfig().with_overrides(["split_seed=3"]).resolved_split_seed() == 3
    assert TrainConfig(seed=2).resolved_split_seed() == 2
