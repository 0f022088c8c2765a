"""A run says when it cannot judge its model or the model learned nothing: real Fashion-MNIST
runs, one that learns (silent) and one on random labels (warns everywhere a user looks)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset
from train_helpers import fashion_sets, tiny_config

from mdan_zoo.evaluation import compute_report
from mdan_zoo.taxonomy import get_taxonomy
from mdan_zoo.training import (
    MIN_PER_CLASS,
    binomial_tail,
    class_counts,
    export_run,
    judge_selected,
    selection_facts,
    split_warnings,
    train,
)

TAX = get_taxonomy("fashion_mnist")


def _shuffled(sets: dict[str, TensorDataset], seed: int) -> dict[str, TensorDataset]:
    """The same images with their labels drawn at random: nothing to learn."""
    gen = torch.Generator().manual_seed(seed)
    return {
        name: TensorDataset(d.tensors[0], torch.randint(0, 10, (len(d),), generator=gen))
        for name, d in sets.items()
    }


def _recipe(tmp: Path) -> dict:
    # a random backbone learns at the larger rate (tests/test_train.py says why)
    return dict(
        pretrained="none", epochs=2, batch_size=20, lr_backbone=0.02, lr_new=0.002, eval_test=True
    )


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_run_that_learns_is_silent_and_random_labels_warn_everywhere(
    tmp_path: Path, fashion_mnist_dir: Path, caplog: pytest.LogCaptureFixture, one_thread: None
) -> None:
    sets = fashion_sets(train_per_class=30, val_per_class=10, test_per_class=10)
    with caplog.at_level(logging.INFO, logger="mdan_zoo"):
        good = train(tiny_config(tmp_path / "good", **_recipe(tmp_path)), datasets=sets)
    assert good.warnings == [], good.warnings
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # per-class counts of every split are logged before training
    assert any(
        "val split: 100 images; per class: T-shirt/top 10" in r.message for r in caplog.records
    )
    text = (good.output_dir / "test" / "report.txt").read_text()
    assert "WARNING" not in text and "majority" in text
    assert good.test_report.table() == text.rstrip("\n")  # Python and report.txt agree

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mdan_zoo"):
        bad = train(
            tiny_config(tmp_path / "bad", **{**_recipe(tmp_path), "epochs": 1}),
            datasets=_shuffled(sets, 1),
        )
    assert any("not clearly better" in w for w in bad.warnings), bad.warnings
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in bad.warnings if w in logged] == bad.warnings
    text = (bad.output_dir / "test" / "report.txt").read_text()
    assert "WARNING: level" in text and "not clearly better" in text
    saved = json.loads((bad.output_dir / "test" / "report.json").read_text())
    assert saved["warnings"] == bad.warnings
    card = (export_run(bad.output_dir, tmp_path / "exported") / "README.md").read_text()
    assert "## Warnings" in card and "not clearly better" in card
    good_card = (export_run(good.output_dir, tmp_path / "exported_good") / "README.md").read_text()
    assert "## Warnings" not in good_card


def test_a_split_too_small_to_select_names_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    """The issue's case: 3 validation images for 10 classes; test with 3 of each class."""
    x = torch.zeros(1, 1)
    sets = {
        "train": TensorDataset(x.repeat(60, 1), torch.arange(60) % 10),
        "val": TensorDataset(x.repeat(3, 1), torch.tensor([0, 1, 2])),
        "test": TensorDataset(x.repeat(30, 1), torch.arange(30) % 10),
    }
    with caplog.at_level(logging.INFO, logger="mdan_zoo"):
        found = split_warnings(sets, TAX, fix="--set split.val_fraction=0.2")
    val, test = found
    assert val.startswith(
        "the val split holds 3 images for 10 classes (0 images of 'Dress'; 10 classes have fewer than 5)"
    )
    assert "too few to select a model" in val and "--set split.val_fraction=0.2" in val
    assert "folds" in val and "https://" in val
    assert test.startswith("the test split holds 30 images") and "judge a model" in test
    assert "train split: 60 images; per class: T-shirt/top 6, Trouser 6" in caplog.text
    big = {"val": TensorDataset(x.repeat(50, 1), torch.arange(50) % 10)}
    assert MIN_PER_CLASS == 5 and split_warnings(big, TAX, fix="") == []
    assert class_counts(big["val"], TAX) == {label: 5 for label in TAX.fine_labels}


def test_binomial_tail_against_hand_sums() -> None:
    assert binomial_tail(3, 3, 1 / 3) == pytest.approx(1 / 27)
    assert binomial_tail(1, 3, 1 / 3) == pytest.approx(1 - (2 / 3) ** 3)
    assert binomial_tail(0, 5, 0.2) == 1.0 and binomial_tail(6, 5, 0.2) == 0.0
    assert binomial_tail(5000, 10000, 0.5) == pytest.approx(0.5 + 0.5 * 0.00798, abs=1e-4)


def test_baselines_and_the_judge_on_hand_made_numbers() -> None:
    tax = get_taxonomy("fashion_mnist")
    y = torch.arange(40) % 10
    y[:20] = 0  # class 0 is 20 + 2 = 22 of 40: majority 0.55 at the finest level
    probs = torch.full((40, 10), 0.01)
    probs[:, 0] = 0.91  # every image gets class 0
    levels = [probs]
    paths = [tax.ancestor_indices(k) for k in range(10)]
    per_level = []
    for d in range(3):
        k = tax.num_classes[d]
        p = torch.zeros(40, k)
        for f in range(10):
            p[:, paths[f][d]] += levels[0][:, f]
        per_level.append(p.numpy())
    report = compute_report(tax, y.numpy(), {b: per_level for b in ("local", "global", "overall")})
    base = report.baselines()
    assert base["majority"][2] == pytest.approx(22 / 40)
    assert base["chance"] == [1 / 2, 1 / 4, 1 / 10]
    assert "majority" in report.table() and "55.00" in report.table()
    row = {"epoch": 1, **{f"val/{k}": v for k, v in report.flat().items()}}
    row |= selection_facts(report)
    assert row["val/top_share/item"] == 1.0 and row["val/top_class/item"] == "T-shirt/top"
    found = judge_selected(row, tax.level_names, epoch=1)
    assert any("not clearly better" in w and "'item'" in w for w in found), found
    assert any("gives 'T-shirt/top' to 100%" in w for w in found), found
    # the same accuracy far above a lower majority is clearly better, and silent
    row["val/baseline/majority/item"] = 0.1
    row["val/top_share/item"] = 0.5
    assert not [w for w in judge_selected(row, ["item"], epoch=1)]


def test_split_val_fraction_is_a_config_key_with_its_own_split_file(tmp_path: Path) -> None:
    from mdan_zoo.config import ConfigError
    from mdan_zoo.data.splits import DEFAULT_SPLITS
    from mdan_zoo.training import TrainConfig

    cfg = TrainConfig(dataset="folder", taxonomy="fi").with_overrides(["split.val_fraction=0.2"])
    spec = cfg.split_spec()
    assert dict(spec.fractions) == {"train": 0.7, "val": 0.2, "test": 0.1}
    assert TrainConfig(dataset="folder").split_spec() == DEFAULT_SPLITS["folder"]
    with pytest.raises(ConfigError, match="unknown split key"):
        TrainConfig(dataset="folder", split={"val": 0.2})
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig(dataset="fashion_mnist", split={"val_fraction": 0.2})
