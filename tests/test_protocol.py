"""The paper's protocol on real images: one run per seed or fold, finished runs never touched
again, mean ± std reports (Tables 1 and 3) that match the runs' own test reports, exports that
record them; every training image in every epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_trees import make_artphoto
from torch.utils.data import DistributedSampler
from train_helpers import load_weights, tiny_config

from mdan_zoo.cli import main
from mdan_zoo.config import ConfigError
from mdan_zoo.evaluation import compute_report
from mdan_zoo.taxonomy import get_taxonomy
from mdan_zoo.training._batching import plan_epoch
from mdan_zoo.training._config import TrainConfig
from mdan_zoo.training._protocol import protocol_configs, train_runs
from mdan_zoo.training._runs import RunsError, report_runs
from mdan_zoo.training._trainer import train

BRANCHES = {"local": "P_L", "global": "P_G", "overall": "P_O"}


def _snapshot(folder: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ batches
@pytest.mark.parametrize(
    ("n", "batch", "world", "micro", "sizes"),
    [
        (164, 64, 1, 64, [64, 64, 36]),  # an Abstract fold: the 36 are trained, not dropped
        (164, 64, 2, 16, [64, 64, 36]),
        (129, 64, 1, 64, [64, 65]),  # a remainder of 1 cannot be batch-normalised: folded in
        (131, 64, 2, 32, [64, 67]),  # 3 images cannot give 2 processes 2 each: folded in
        (60, 24, 2, 6, [24, 24, 12]),
        (5, 64, 2, 32, [5]),  # smaller than one batch: one step of everything
        (10, 4, 2, 2, [4, 6]),  # 3 per process in the last step: one micro-batch of 3, not 2 + 1
    ],
)
def test_every_image_once_per_epoch(
    n: int, batch: int, world: int, micro: int, sizes: list[int]
) -> None:
    plans = [
        plan_epoch(
            n, batch_size=batch, world=world, rank=r, micro_batch_size=micro, seed=3, epoch=2
        )
        for r in range(world)
    ]
    assert [s.size for s in plans[0]] == sizes
    seen = [i for plan in plans for step in plan for m in step.micro for i in m]
    assert sorted(seen) == list(range(n))
    for steps in zip(*plans, strict=True):  # the same step on every process
        assert len({s.size for s in steps}) == 1
        shares = [sum(len(m) for m in s.micro) for s in steps]
        assert sum(shares) == steps[0].size and min(shares) >= 2
        sizes_ok = [2 <= len(m) <= max(micro, 3) for s in steps for m in s.micro]
        assert all(sizes_ok), [s.micro for s in steps]
        # DDP averages over processes: the weights of one step add up to one image-mean
        total = sum(s.weight(len(m), world) for s in steps for m in s.micro)
        assert total == pytest.approx(world)


def test_full_batches_keep_distributed_samplers_order() -> None:
    """Where nothing is left over, each process gets what DistributedSampler gave it."""
    data = list(range(96))
    for rank in range(2):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(4)
        old = list(sampler)
        plan = plan_epoch(
            96, batch_size=32, world=2, rank=rank, micro_batch_size=16, seed=7, epoch=4
        )
        assert [i for s in plan for m in s.micro for i in m] == old


def test_too_few_images_for_batchnorm_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="at least 4"):
        plan_epoch(3, batch_size=8, world=2, rank=0, micro_batch_size=4, seed=0, epoch=1)


# ------------------------------------------------------------------ protocol: seeds
def test_seeds_protocol_skips_finished_runs_reports_and_exports(
    tmp_path: Path,
    fashion_mnist_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = tmp_path / "runs" / "tiny"
    cfg = tiny_config(
        tmp_path,
        epochs=1,
        subset_per_class=2,
        val_fraction=0.01,
        batch_size=8,
        output_dir=str(base),
    )
    cfg_file = tmp_path / "tiny.json"
    cfg.to_json(cfg_file)
    train_cmd = ["train", str(cfg_file), "--no-progress", "--seeds", "0", "1"]
    assert main(train_cmd) == 0
    out = capsys.readouterr().out
    assert "mean ± std over 2 runs (seeds 0, 1)" in out
    for s in (0, 1):
        recorded = json.loads((base / f"seed-{s}" / "config.json").read_text())
        assert recorded["seed"] == s and recorded["output_dir"] == str(base / f"seed-{s}")
    w0, w1 = load_weights(base / "seed-0"), load_weights(base / "seed-1")
    assert any(not torch.equal(w0[k], w1[k]) for k in w0), "two seeds, two different runs"

    # the report: mean and sample std of the runs' own report.json files
    assert main(["report", str(base), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["n"], rep["seeds"], rep["folds"]) == (2, [0, 1], [])
    files = [json.loads((base / f"seed-{s}/test/report.json").read_text()) for s in (0, 1)]
    tax = get_taxonomy("fashion_mnist")
    for branch, tag in BRANCHES.items():
        for name, k in zip(tax.level_names, tax.num_classes, strict=True):
            values = 100 * np.array([f["accuracy"][branch][name] for f in files])
            assert rep["mean"][tag][str(k)] == round(values.mean(), 2)
            assert rep["std"][tag][str(k)] == round(values.std(ddof=1), 2)
    assert [r["name"] for r in rep["runs"]] == ["seed-0", "seed-1"]

    # again: nothing is retrained, nothing is written
    before = _snapshot(base)
    assert main(train_cmd) == 0
    assert capsys.readouterr().out.count("finished before: skipped") == 2
    assert _snapshot(base) == before

    # more epochs asked: the runs are unfinished -> refused without --resume, nothing touched
    assert main([*train_cmd, "--set", "epochs=2"]) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and str(base / "seed-0") in err and "Traceback" not in err
    # another recipe on the same folders: refused even with --resume
    assert main([*train_cmd, "--set", "lr_new=0.5", "--resume"]) == 1
    assert "another config" in capsys.readouterr().err
    assert _snapshot(base) == before

    # a changed config is found before any weights are read (Python API, single run)
    import mdan_zoo.training._setup as setup

    def no_download(*a: object, **k: object) -> None:
        raise AssertionError("weights were read before the configs were compared")

    monkeypatch.setattr(setup, "_read_state_dict", no_download)
    changed = TrainConfig.from_dict(
        {**cfg.to_dict(), "output_dir": str(base / "seed-0"), "lr_new": 0.5}
    )
    with pytest.raises(ConfigError, match=r"cannot resume .*lr_new"):
        train(changed, resume=True)
    with pytest.raises(ConfigError, match=r"train\(config, resume=True\)"):
        train(TrainConfig.from_dict({**cfg.to_dict(), "output_dir": str(base / "seed-0")}))
    monkeypatch.undo()

    # export the folder: the validation-best run, and the mean ± std of all
    assert main(["export", str(base), str(tmp_path / "hub")]) == 0
    card = json.loads((tmp_path / "hub" / "config.json").read_text())
    runs = card["metrics"]["runs"]
    assert (runs["n"], runs["seeds"], runs["names"]) == (2, [0, 1], ["seed-0", "seed-1"])
    assert runs["mean"] == rep["mean"] and runs["std"] == rep["std"]
    scores = {
        s: json.loads((base / f"seed-{s}/metrics.jsonl").read_text().splitlines()[0])[
            "val/overall/mean"
        ]
        for s in (0, 1)
    }
    best = max(scores, key=lambda s: (scores[s], -s))
    assert runs["exported"] == f"seed-{best}"
    from mdan_zoo.zoo import load_pretrained

    exported = load_pretrained(tmp_path / "hub").state_dict()
    chosen = load_weights(base / f"seed-{best}", which="best")
    assert all(torch.equal(exported[k], v) for k, v in chosen.items())

    # a longer schedule continues the unfinished run with --resume; the other seed is untouched
    other = _snapshot(base / "seed-1")
    assert main(["train", str(cfg_file), "--no-progress", "--seeds", "0", "--set", "epochs=2", "--resume"]) == 0  # fmt: skip
    assert "seed-0: resumed, best epoch" in capsys.readouterr().out
    lines = (base / "seed-0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    assert _snapshot(base / "seed-1") == other


# ------------------------------------------------------------------ protocol: folds
@pytest.mark.slow
def test_folds_protocol_on_a_cross_validated_set(tmp_path: Path) -> None:
    """ArtPhoto laid out with real photos: 5 runs, one per fold of one split file; their test
    parts cover every image once."""
    root = tmp_path / "ArtPhoto"
    prefixes = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sad"]
    make_artphoto(root, {p: 3 for p in prefixes})
    cfg = tiny_config(
        tmp_path,
        taxonomy="artphoto",
        dataset="artphoto",
        data_root=str(root),
        epochs=1,
        batch_size=8,
        output_dir=str(tmp_path / "runs" / "{name}"),
    )
    runs = train_runs(cfg, folds=5)
    assert [r.status for r in runs] == ["trained"] * 5
    base = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in base.iterdir()) == [f"fold-{k}" for k in range(5)]
    assert len(list((root / "mdan_splits").iterdir())) == 1, "one split file for all folds"
    rep = report_runs([base])
    assert (rep.n, rep.to_dict()["folds"]) == (5, [0, 1, 2, 3, 4])
    assert sum(r["test_images"] for r in rep.runs) == 24
    assert "folds 0, 1, 2, 3, 4" in rep.table()
    assert [r.status for r in train_runs(cfg, folds=5)] == ["skipped"] * 5


def test_protocol_bad_input_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = TrainConfig(
        taxonomy="fashion_mnist", dataset="fashion_mnist", output_dir=str(tmp_path / "run")
    )
    cfg_file = tmp_path / "c.json"
    cfg.to_json(cfg_file)
    assert main(["train", str(cfg_file), "--folds", "5"]) == 1
    err = capsys.readouterr().err
    assert "'fashion_mnist' is not cross-validated" in err and "--seeds" in err
    assert main(["train", "fi", "--folds", "5", "--set", "data_root=/nowhere"]) == 1
    assert "artphoto" in capsys.readouterr().err  # names the datasets that have folds
    assert main(["train", "artphoto", "--folds", "3"]) == 1
    assert "holds 5 folds" in capsys.readouterr().err
    assert main(["train", "artphoto", "--folds", "5", "--set", "output_dir=r/{name}-{fold}"]) == 1
    assert "without {fold}" in capsys.readouterr().err
    assert main(["train", str(cfg_file), "--seeds", "0", "0"]) == 1
    assert "distinct seeds" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # the shipped small-set configs put the folds under one folder
    small = protocol_configs(TrainConfig.from_file("artphoto"), seeds=[0, 1], folds=5)
    assert [str(c.resolved_output_dir()) for c in small[:2]] == [
        "runs/mdan_artphoto/seed-0/fold-0",
        "runs/mdan_artphoto/seed-0/fold-1",
    ]
    assert [(c.seed, c.fold) for c in small][-1] == (1, 4) and len(small) == 10


# ------------------------------------------------------------------ report
def _write_run(
    folder: Path, accuracy: float, *, taxonomy: str = "fashion_mnist", seed: int = 0
) -> None:
    """A run folder whose test report (made by compute_report) has ``accuracy`` everywhere."""
    tax = get_taxonomy(taxonomy)
    n, right = 10, round(accuracy * 10)
    fine = np.arange(n) % tax.num_classes[-1]
    paths = np.array([tax.ancestor_indices(int(k)) for k in range(tax.num_classes[-1])])
    wrong = {k: next(j for j in range(len(paths)) if (paths[j] != paths[k]).all()) for k in fine}
    pred = np.array([k if i < right else wrong[k] for i, k in enumerate(fine)])
    probs = [np.eye(c)[paths[pred, d]] for d, c in enumerate(tax.num_classes)]
    report = compute_report(tax, fine, {b: probs for b in BRANCHES})
    report.to_json(folder / "test" / "report.json")
    (folder / "config.json").write_text(json.dumps({"name": "hand", "seed": seed, "fold": None}))


def test_report_mean_and_sample_std(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for s, acc in enumerate((0.5, 0.6, 0.7)):
        _write_run(tmp_path / "runs" / f"seed-{s}", acc, seed=s)
    assert main(["report", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "mean ± std over 3 runs (seeds 0, 1, 2)" in out
    assert out.count(" 60.00 ± 10.00") == 9  # 3 levels x P_L / P_G / P_O
    one = report_runs([tmp_path / "runs" / "seed-1"])
    assert one.n == 1 and one.std["P_O"]["10"] is None and "60.00 ±   n/a" in one.table()


def test_report_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "no finished runs under" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    # a run without a test report is named, and left out
    _write_run(tmp_path / "a" / "seed-0", 0.5)
    (tmp_path / "a" / "seed-1" / "checkpoints").mkdir(parents=True)
    rep = report_runs([tmp_path / "a"])
    assert rep.n == 1 and "seed-1 (no test/report.json" in rep.left_out[0]
    # hostile report files
    bad = tmp_path / "b" / "seed-0" / "test" / "report.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"levels": ["family"], "accuracy": ')
    with pytest.raises(RunsError, match=r"cannot read .*report\.json"):
        report_runs([tmp_path / "b"])
    bad.write_text(json.dumps({"levels": ["family"], "labels": [["a", "b"]], "accuracy": {}}))
    assert main(["report", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "is not a test report" in err and "Traceback" not in err
    # two taxonomies cannot be averaged
    _write_run(tmp_path / "c" / "seed-0", 0.5)
    _write_run(tmp_path / "c" / "seed-1", 0.5, taxonomy="fi")
    with pytest.raises(RunsError, match="another taxonomy"):
        report_runs([tmp_path / "c"])


def test_init_from_a_folder_of_runs_names_them(tmp_path: Path) -> None:
    from mdan_zoo.training._setup import build_model

    (tmp_path / "fi" / "seed-0").mkdir(parents=True)
    (tmp_path / "fi" / "seed-1").mkdir()
    cfg = TrainConfig(init_from=str(tmp_path / "fi"), pretrained="none")
    with pytest.raises(ConfigError, match=r"holds 2 runs \(seed-0, seed-1\).*init_from=.*seed-0"):
        build_model(cfg, taxonomy=cfg.load_taxonomy())


def test_registry_keeps_protocol_fields_empty_until_published() -> None:
    import dataclasses

    from mdan_zoo.registry import get_weights, list_weights

    for name in list_weights():
        e = get_weights(name)
        assert (e.reproduced_mean, e.reproduced_std, e.reproduced_runs) == ({}, {}, ())
        # the recipe names a shipped config of the same dataset: `mdan-zoo train <name>`
        assert TrainConfig.from_file(e.recipe["trainer_config"]).dataset == name[len("mdan_") :]
    filled = dataclasses.replace(
        get_weights("mdan_fi"),
        reproduced_mean={"P_O": {"2": 91.0, "8": 76.1}},
        reproduced_std={"P_O": {"2": 0.2, "8": 0.4}},
        reproduced_runs=("seed-0", "seed-1", "seed-2"),
    )
    assert "reproduced P_O, 3 runs   91.00 ± 0.20 / 76.10 ± 0.40" in filled.describe()
    assert filled.to_dict()["reproduced_runs"] == ["seed-0", "seed-1", "seed-2"]
