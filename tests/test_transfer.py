"""Fine-tuning transfer (issue 11, items 4 and 5): one name-aware transfer for ``weights=`` +
``taxonomy=`` and for training with ``init_from``, reported in the paper's parts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from zoo_helpers import tiny_mdan

from mdan_zoo import MDAN, Taxonomy, TrainConfig, TransferReport, get_taxonomy, mdan, mdan_fi
from mdan_zoo.hub._transfer import ClassifierTransfer
from mdan_zoo.training._setup import build_model

FI, EMOTION6 = get_taxonomy("fi"), get_taxonomy("emotion6")


@pytest.fixture(scope="module")
def fi_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[MDAN, Path]:
    source = tiny_mdan("fi", seed=7)
    return source, source.save_pretrained(tmp_path_factory.mktemp("src") / "fi")


def _row(model: MDAN, module: str, label: str) -> torch.Tensor:
    depth = model.num_levels - 1 if module == "global_head" else int(module.split(".")[1])
    return model.state_dict()[f"{module}.weight"][model.taxonomy.index(label, level=depth)]


def test_report_names_the_papers_parts_and_the_labels_per_level(
    fi_folder: tuple[MDAN, Path],
) -> None:
    """FI (2 -> 8) to Emotion6 (2 -> 6): the polarity classifier is kept; the emotion
    classifiers are rebuilt with the rows of anger/disgust/fear/sadness carried over (same name,
    same parent) while joy and surprise (positive in Emotion6, absent from FI) start fresh."""
    source, folder = fi_folder
    model = mdan(weights=folder, taxonomy="emotion6")
    rep = model.transfer_report
    assert rep.parts_kept == (
        "backbone (resnet18)",
        "F5 (top of the top-down FPN)",
        "MHCCA lateral of level 1 (polarity)",
        "MHCCA lateral of level 2 (emotion)",
        "L-CAM/local classifier of level 1 (polarity)",
    )
    assert rep.parts_new == (
        "L-CAM/local classifier of level 2 (emotion)",
        "global classifier (emotion)",
    )
    polarity, emotion, glob = rep.classifiers
    assert polarity == ClassifierTransfer(
        "L-CAM/local classifier of level 1 (polarity)",
        "local_heads.0",
        "polarity",
        kept=True,
        carried=("positive", "negative"),
        fresh=(),
    )
    for head in (emotion, glob):
        assert not head.kept and head.level == "emotion"
        assert head.carried == ("anger", "disgust", "fear", "sadness")
        assert head.fresh == ("joy", "surprise")
    text = str(rep)
    assert text.splitlines()[0] == f"Fine-tuning transfer fi -> emotion6 (weights: {folder})"
    assert re.search(
        r"L-CAM/local classifier of level 1 \(polarity\) +kept: positive, negative", text
    )
    assert (
        "rebuilt: 4 labels carried over (anger, disgust, fear, sadness); 2 labels start fresh "
        "(joy, surprise)" in text
    )
    assert "laterals" not in text and "local_heads" not in text  # people's names, not modules
    # the report tells the truth about the tensors
    for head in (emotion, glob):
        for label in head.carried:
            src_row = source.state_dict()[f"{head.module}.weight"][
                FI.index(label, level=1 if head.module != "global_head" else -1)
            ]
            assert torch.equal(_row(model, head.module, label), src_row), (head.module, label)
        for label in head.fresh:
            row = _row(model, head.module, label)
            assert not any(
                torch.equal(row, r) for r in source.state_dict()[f"{head.module}.weight"]
            )


def test_the_old_fields_still_read_the_same(fi_folder: tuple[MDAN, Path]) -> None:
    _, folder = fi_folder
    rep = mdan_fi(weights=folder, taxonomy="emotion6").transfer_report
    assert rep.transferred == ("backbone", "f5", "laterals.0", "laterals.1", "local_heads.0")
    assert rep.reinitialised == ("local_heads.1", "global_head")
    assert rep.copied_rows == {
        "local_heads.1": ("anger", "disgust", "fear", "sadness"),
        "global_head": ("anger", "disgust", "fear", "sadness"),
    }
    legacy = TransferReport("a", "b", ("backbone",), ("global_head",))  # old call still works
    assert legacy.summary().startswith("transfer a -> b: kept backbone; new global_head")
    assert str(legacy).startswith("Fine-tuning transfer a -> b")


def test_aliases_and_order_are_followed_by_name(fi_folder: tuple[MDAN, Path]) -> None:
    """Labels are matched by name through the target's spelling (case, aliases), never by index:
    FI's eight emotions listed in reverse order, two of them under other spellings, all carry
    over to the right rows."""
    source, folder = fi_folder
    fine = list(reversed(FI.labels[1]))
    parents = {lb: FI.labels[0][FI.parents[1][FI.index(lb)]] for lb in fine}
    spelled = {"amusement": "Amused", "sadness": "SAD"}
    target = Taxonomy.from_levels(
        [["negative", "positive"], [spelled.get(lb, lb) for lb in fine]],
        [{spelled.get(lb, lb): p for lb, p in parents.items()}],
        name="fi_reordered",
        level_names=["polarity", "emotion"],
    )
    model = MDAN.from_pretrained(folder, taxonomy=target)
    rep = model.transfer_report
    assert [c.kept for c in rep.classifiers] == [False, False, False]  # reordered: rebuilt
    assert all(c.fresh == () for c in rep.classifiers)  # ... but every row carried over
    src = source.state_dict()
    for lb in fine:
        new = spelled.get(lb, lb)
        assert torch.equal(
            model.state_dict()["local_heads.1.weight"][target.index(new)],
            src["local_heads.1.weight"][FI.index(lb)],
        )
    for lb in ("positive", "negative"):
        assert torch.equal(
            model.state_dict()["local_heads.0.weight"][target.index(lb, level=0)],
            src["local_heads.0.weight"][FI.index(lb, level=0)],
        )


def test_a_shallower_target_names_what_it_drops(tmp_path: Path) -> None:
    folder = tiny_mdan("webemo", seed=2).save_pretrained(tmp_path / "webemo")
    rep = MDAN.from_pretrained(folder, taxonomy="fi").transfer_report
    assert rep.dropped == ("laterals.2", "local_heads.2")
    assert rep.parts_dropped == (
        "MHCCA lateral of level 3 (tertiary)",
        "L-CAM/local classifier of level 3 (tertiary)",
    )
    assert re.search(r"MHCCA lateral of level 3 \(tertiary\) +dropped", str(rep))


def test_init_from_goes_through_the_same_transfer(
    fi_folder: tuple[MDAN, Path], tmp_path: Path
) -> None:
    """Training with ``init_from`` keeps unchanged heads and carries matching rows, exactly as
    ``mdan(weights=..., taxonomy=...)`` does (it used to reset every head)."""
    _, folder = fi_folder
    cfg = TrainConfig(
        taxonomy="emotion6",
        backbone="resnet18",
        init_from=str(folder),
        pretrained="none",
        output_dir=str(tmp_path / "run"),
    )
    started = build_model(cfg, taxonomy=EMOTION6)
    loaded = mdan(weights=folder, taxonomy="emotion6")
    assert started.training  # ready to train
    assert started.transfer_report is not None
    assert started.transfer_report.classifiers == loaded.transfer_report.classifiers
    a, b = started.state_dict(), loaded.state_dict()
    kept = ("backbone.", "f5.", "laterals.", "local_heads.0.")
    for key in a:
        if key.startswith(kept):
            assert torch.equal(a[key], b[key]), key
    for label in ("anger", "sadness"):
        assert torch.equal(
            _row(started, "local_heads.1", label), _row(loaded, "local_heads.1", label)
        )


def test_parts_follow_the_models_own_switches(tmp_path: Path) -> None:
    """Table 5's base model (no MHCCA, no L-CAM) has plain lateral convs and local classifiers."""
    from mdan_zoo import MDANConfig, Preprocessing

    base = MDAN(
        FI,
        MDANConfig(backbone="resnet18", fpn_channels=32, mhcca=False, lcam=False),
        preprocessing=Preprocessing(input_size=64, resize_size=72),
    )
    folder = base.save_pretrained(tmp_path / "base")
    rep = MDAN.from_pretrained(folder, taxonomy="emotion6").transfer_report
    assert "lateral 1x1 conv of level 2 (emotion)" in rep.parts_kept
    assert rep.parts_new == ("local classifier of level 2 (emotion)", "global classifier (emotion)")
    assert "MHCCA" not in str(rep) and "L-CAM" not in str(rep)
