"""The fine-tuning and prediction workflow of a new user (issue 11): a real training run, a
second run started from it with another taxonomy (``init_from``), predictions that warn when
the weights are random, pictures whose captions fit, and messages that point at the fix."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from zoo_helpers import photos, tiny_mdan

from mdan_zoo import (
    MDAN,
    Taxonomy,
    TrainConfig,
    UntrainedWeightsWarning,
    WeightsError,
    create_model,
    export_run,
    get_taxonomy,
    load_pretrained,
)
from mdan_zoo.cli import build_parser
from mdan_zoo.cli._predict_run import run_cli
from mdan_zoo.prediction.overlay import render_overlay
from mdan_zoo.training._demo import epoch_lines
from mdan_zoo.training._setup import build_model

FASHION = get_taxonomy("fashion_mnist")


def _tiny_run(tmp: Path, **changes: object) -> TrainConfig:
    fields: dict[str, object] = dict(
        name="tiny",
        taxonomy="fashion_mnist",
        dataset="fashion_mnist",
        subset_per_class=4,
        backbone="resnet18",
        input_size=32,
        resize_size=32,
        pretrained="none",
        epochs=1,
        batch_size=8,
        max_steps_per_epoch=2,
        workers=0,
        device="cpu",
        progress=False,
        eval_test=False,
        eval_batch_size=40,
        output_dir=str(tmp / "run"),
    )
    fields.update(changes)
    return TrainConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> tuple[Path, MDAN]:
    """One real (tiny) training run on Fashion-MNIST images: its folder and trained model."""
    tmp = tmp_path_factory.mktemp("workflow")
    from mdan_zoo.training._trainer import Trainer

    trainer = Trainer(_tiny_run(tmp))
    result = trainer.fit()
    return result.output_dir, trainer.model


# ------------------------------------------------------------------ items 4 + 5: init_from
def test_init_from_a_run_folder_keeps_heads_and_carries_labels_by_name(
    run: tuple[Path, MDAN], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The second run's taxonomy renames one item (``Sneaker`` -> ``trainers``): every head
    whose labels are unchanged is kept, the item classifiers carry nine rows and start one
    fresh, and the weights are the run's (no head reset, as before issue 11)."""
    run_dir, _ = run
    nested = FASHION.to_nested()
    nested["footwear_and_bags"]["shoes"] = ["Sandal", "trainers", "Ankle boot"]
    mine = Taxonomy.from_nested(nested, name="fashion_renamed", level_names=FASHION.level_names)
    with caplog.at_level(logging.INFO, logger="mdan_zoo.training._setup"):
        model = build_model(
            _tiny_run(tmp_path, taxonomy="fashion_renamed", init_from=str(run_dir)), taxonomy=mine
        )
    rep = model.transfer_report
    assert rep is not None and rep.source == str(run_dir)
    logged = [r.getMessage() for r in caplog.records if r.name == "mdan_zoo.training._setup"]
    assert logged == [f"init_from {run_dir}:\n{rep}"]  # the people's report, in the run's log
    family, group, item, glob = rep.classifiers
    assert family.kept and group.kept and not item.kept and not glob.kept
    assert item.fresh == glob.fresh == ("trainers",)
    assert len(item.carried) == 9 and "Sneaker" not in item.carried
    from mdan_zoo.training._checkpoints import load_checkpoint

    src = load_checkpoint(run_dir).model.state_dict()
    dst = model.state_dict()
    for key in ("backbone.conv1.weight", "f5.weight", "local_heads.0.weight", "local_heads.1.bias"):
        assert torch.equal(src[key], dst[key]), key
    coat_src, coat_dst = FASHION.index("Coat"), mine.index("Coat")
    assert torch.equal(src["global_head.weight"][coat_src], dst["global_head.weight"][coat_dst])


# ------------------------------------------------------------------ item 1: a config as taxonomy
def test_a_config_named_as_its_own_taxonomy_says_which_file_to_point_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdan_zoo.cli import main

    config = tmp_path / "my_emotions.json"
    config.write_text(
        json.dumps(
            {
                "name": "mine",
                "taxonomy": str(config),
                "dataset": "folder",
                "data_root": str(tmp_path),
                "output_dir": str(tmp_path / "run"),
            }
        )
    )
    assert main(["train", str(config)]) != 0
    err = capsys.readouterr().err
    assert f"taxonomy file {config} is a training config" in err
    assert "Taxonomy.to_json" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_emotions.json"]  # nothing made


# ------------------------------------------------------------------ item 3: a run folder loads
def _with_a_later_epoch(run_dir: Path, out: Path) -> Path:
    """A copy of ``run_dir`` (one epoch) whose newest epoch (2, its weights changed) is not
    the one validation selected (1): what a run looks like after an epoch that got worse."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(run_dir, out)
    ckpts = out / "checkpoints"
    shutil.copytree(ckpts / "epoch-0001", ckpts / "epoch-0002")
    weights = ckpts / "epoch-0002" / "model.safetensors"
    tensors = load_file(weights)
    tensors["global_head.weight"] = tensors["global_head.weight"] + 1.0
    save_file(tensors, weights)
    state = json.loads((ckpts / "epoch-0002" / "state.json").read_text())
    state["epoch"] = 2
    state["files"]["model.safetensors"] = {
        "bytes": weights.stat().st_size,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (ckpts / "epoch-0002" / "state.json").write_text(json.dumps(state))
    (ckpts / "last.json").write_text(
        json.dumps({"dir": "epoch-0002", "epoch": 2, "best": {"dir": "epoch-0001", "epoch": 1}})
    )
    return out


def test_a_training_run_folder_loads_its_selected_epoch_everywhere(
    run: tuple[Path, MDAN], tmp_path: Path
) -> None:
    """``MDAN.from_pretrained(RUN_DIR)``, ``weights=RUN_DIR`` and ``--weights RUN_DIR`` load
    the validation-selected epoch with its taxonomy, config and preprocessing, not the newest."""
    run_dir = _with_a_later_epoch(run[0], tmp_path / "run")
    selected = run_dir / "checkpoints" / "epoch-0001"
    from mdan_zoo.training._checkpoints import load_checkpoint

    want = load_checkpoint(run_dir, which="best").model.state_dict()
    newest = load_checkpoint(run_dir, which="last").model.state_dict()
    assert not torch.equal(want["global_head.weight"], newest["global_head.weight"])
    for model in (
        MDAN.from_pretrained(run_dir),
        create_model("mdan", weights=str(run_dir)),
        load_pretrained(str(run_dir)),
    ):
        assert model.checkpoint_source == str(selected)
        assert model.taxonomy.same_tree(FASHION) and model.preprocessing.input_size == 32
        assert model.config.backbone == "resnet18" and not model.training
        got = model.state_dict()
        assert all(torch.equal(want[k], got[k]) for k in want)
    epoch2 = MDAN.from_pretrained(run_dir / "checkpoints" / "epoch-0002")  # one epoch, named
    assert torch.equal(epoch2.state_dict()["global_head.weight"], newest["global_head.weight"])
    photo = tmp_path / "photo.png"
    photos()[0].save(photo)
    out, err = io.StringIO(), io.StringIO()
    code = run_cli([str(photo)], model_name=None, weights=str(run_dir), stdout=out, stderr=err)
    expected = MDAN.from_pretrained(run_dir).predict([photos()[0]])[0]
    assert code == 0 and "Untrained" not in err.getvalue()
    answer = " > ".join(f"{p.label} {p.prob:.3f}" for p in expected.consistent)
    assert f"answer  {answer}  (joint P_O {expected.joint_prob:.3f}: the path" in out.getvalue()


def test_a_damaged_or_empty_run_folder_is_refused_with_the_file_and_the_fix(
    run: tuple[Path, MDAN], tmp_path: Path
) -> None:
    run_dir = shutil.copytree(run[0], tmp_path / "run")
    weights = run_dir / "checkpoints" / "epoch-0001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    with pytest.raises(WeightsError, match="truncated") as info:
        MDAN.from_pretrained(run_dir)
    assert "checkpoints/epoch-0001" in str(info.value) and "Restore" in str(info.value)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # untouched
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(WeightsError, match=r"holds no checkpoint: expected .*last\.json"):
        MDAN.from_pretrained(empty)
    with pytest.raises(WeightsError, match="a training run's output_dir .* loads as it is"):
        MDAN.from_pretrained(empty / "checkpoints")  # neither a run nor a Hub-layout folder
    protocol = tmp_path / "protocol"
    shutil.copytree(run[0], protocol / "seed-0")
    with pytest.raises(WeightsError, match=r"holds training runs \(seed-0\), not one run: load"):
        MDAN.from_pretrained(protocol)


def test_the_unpublished_message_names_what_now_works() -> None:
    from mdan_zoo import UnpublishedWeightsError, mdan_fi

    with pytest.raises(UnpublishedWeightsError) as info:
        mdan_fi(pretrained=True)
    text = str(info.value)
    assert "mdan_fi(weights='path/to/run')" in text and "mdan-zoo export" in text


def test_export_never_overwrites_a_run_or_an_earlier_export_unasked(
    run: tuple[Path, MDAN], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exporting into the run folder itself overwrote its config.json (the training config);
    a second export into the same folder replaced the first without a word."""
    from mdan_zoo.cli import main

    run_dir = shutil.copytree(run[0], tmp_path / "run")

    def snapshot(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.json*")}

    before = snapshot(run_dir)
    assert main(["export", str(run_dir), str(run_dir)]) == 1
    assert "is a training run's folder; exporting there would overwrite" in capsys.readouterr().err
    assert snapshot(run_dir) == before and not (run_dir / "model.safetensors").exists()
    with pytest.raises(WeightsError, match="training run's folder; saving there"):
        run[1].save_pretrained(run_dir)
    assert snapshot(run_dir) == before
    out = tmp_path / "exported"
    assert main(["export", str(run_dir), str(out)]) == 0
    first = snapshot(out)
    (out / "notes.txt").write_text("mine")
    assert main(["export", str(run_dir), str(out), "--which", "last"]) == 1
    err = capsys.readouterr().err
    assert "already holds an export (README.md, config.json, model.safetensors, notes.txt)" in err
    assert "--overwrite" in err and snapshot(out) == first
    assert main(["export", str(run_dir), str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only the export's own files replaced
    assert MDAN.from_pretrained(out).checkpoint_source == str(out)


# ------------------------------------------------------------------ item 2: eval preprocessing
def test_eval_uses_the_checkpoints_preprocessing_and_says_which(
    run: tuple[Path, MDAN], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run trained at 32 px, evaluated with a config that names no sizes (448 / 512): the
    default evaluates at the checkpoint's 32 px; --set of a size or --preprocessing config
    use the config's sizes; each says which on its first line."""
    from dataclasses import replace

    from mdan_zoo.cli import main
    from mdan_zoo.evaluation import evaluate
    from mdan_zoo.training._checkpoints import load_checkpoint
    from mdan_zoo.training._setup import build_datasets

    run_dir, _ = run
    data = json.loads((run_dir / "config.json").read_text())
    del data["input_size"], data["resize_size"]
    config = tmp_path / "eval.json"
    config.write_text(json.dumps(data))
    model = load_checkpoint(run_dir).model
    cfg = TrainConfig.from_file(config)

    def table(pre: object) -> str:
        val = build_datasets(cfg, taxonomy=model.taxonomy, preprocessing=pre)["val"]  # type: ignore[arg-type]
        return evaluate(model, val, batch_size=40).table(f"tiny: val split ({len(val)} images)")

    assert main(["eval", str(config), "--split", "val", "--no-progress"]) == 0
    first, rest = capsys.readouterr().out.split("\n", 1)
    assert first == (
        "preprocessing: the checkpoint's (input_size 32, resize_size 32); the config says "
        "input_size 448, resize_size 512: --preprocessing config uses it"
    )
    assert rest.strip() == table(model.preprocessing).strip()
    sized = ["--set", "input_size=64", "--set", "resize_size=72"]
    assert main(["eval", str(config), "--split", "val", "--no-progress", *sized]) == 0
    first, rest = capsys.readouterr().out.split("\n", 1)
    assert first == (
        "preprocessing: the config's (input_size 64, resize_size 72); the checkpoint was "
        "trained with input_size 32, resize_size 32"
    )
    assert (
        rest.strip() == table(replace(model.preprocessing, input_size=64, resize_size=72)).strip()
    )
    out = tmp_path / "report"
    args = ["eval", str(config), "--split", "val", "--no-progress", "--out", str(out)]
    assert main([*args, "--preprocessing", "config", "--set", "input_size=64"]) == 0
    said = capsys.readouterr().out.split("\n", 1)[0]
    assert said.startswith("preprocessing: the config's (input_size 64, resize_size 512)")
    assert said in (out / "report.txt").read_text()
    report = (out / "report.json").read_bytes()
    assert main(args) == 1  # the same --out again: refused before any work, nothing replaced
    assert "already holds a report (report.json)" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == report
    assert main([*args, "--overwrite"]) == 0
    assert "the checkpoint's" in (out / "report.txt").read_text()


def test_eval_without_a_run_or_with_bad_weights_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdan_zoo.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["eval", "fashion_mnist_demo", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "runs/fashion_mnist_demo holds no training run of 'fashion_mnist_demo'" in err
    assert "`mdan-zoo train fashion_mnist_demo`" in err and "Traceback" not in err
    assert main(["eval", "fashion_mnist_demo", "--checkpoint", "nowhere"]) == 1
    assert "checkpoint 'nowhere' not found" in capsys.readouterr().err
    import mdan_zoo.zoo

    seen = {}

    def refused(source: str, **kwargs: object) -> MDAN:
        seen.update(kwargs, source=source)
        raise WeightsError("the Hub refused the token (401)")

    monkeypatch.setattr(mdan_zoo.zoo, "load_pretrained", refused)
    args = ["eval", "fashion_mnist_demo", "--checkpoint", "org/private", "--token", "hf_x"]
    assert main(args) == 1  # --token reaches the Hub load, as in predict and download
    assert seen == {"source": "org/private", "token": "hf_x"}
    assert "refused the token" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made


def test_the_paper_literal_crop_trains_and_travels_with_the_weights(tmp_path: Path) -> None:
    """Issue 8: ``--set resize_size=null`` (Sec. 5.2's crop from the original image) is a
    trainer config too, and the run's weights carry it."""
    from mdan_zoo.config import ConfigError
    from mdan_zoo.training._trainer import Trainer

    cfg = _tiny_run(tmp_path).with_overrides(["resize_size=null"])
    assert cfg.resize_size is None and cfg.preprocessing().resize_size is None
    Trainer(cfg).fit()
    model = MDAN.from_pretrained(tmp_path / "run")
    assert model.preprocessing.resize_size is None and model.preprocessing.input_size == 32
    with pytest.raises(ConfigError, match="resize_size .* must be >= input_size"):
        _tiny_run(tmp_path).with_overrides(["resize_size=16"])


# ------------------------------------------------------------------ item 6: untrained weights
def test_random_weights_warn_once_and_trained_or_loaded_ones_do_not(
    run: tuple[Path, MDAN], tmp_path: Path
) -> None:
    images = photos()[:1]
    fresh = tiny_mdan("webemo")
    with pytest.warns(UntrainedWeightsWarning, match="never trained or loaded") as caught:
        fresh.predict(images)
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        fresh.predict(images)  # once per model
        _, trained = run
        trained.predict(images)  # the trainer marked it
        loaded = tiny_mdan("webemo")
        loaded.load_state_dict(fresh.state_dict())
        loaded.predict(images)  # a full load_state_dict counts
        backbone = tiny_mdan("webemo")
        trunk = {k[9:]: v for k, v in fresh.state_dict().items() if k.startswith("backbone.")}
        backbone.load_backbone_state_dict(trunk)
        backbone.predict(images)  # ImageNet-style backbone weights count
    # a checkpoint saved from random weights says so, and loading it warns again
    folder = tiny_mdan("webemo").save_pretrained(tmp_path / "random")
    assert json.loads((folder / "config.json").read_text())["untrained"] is True
    with pytest.warns(UntrainedWeightsWarning, match="was saved from a model that was never"):
        load_pretrained(folder).predict(images)
    partly = tiny_mdan("webemo")
    partly.load_state_dict(
        {k: v for k, v in fresh.state_dict().items() if not k.startswith("global_head")},
        strict=False,
    )
    with pytest.warns(UntrainedWeightsWarning):
        partly.predict(images)  # a partial load leaves random heads


def test_predict_cli_prints_the_warning_on_stderr_once(
    run: tuple[Path, MDAN], tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photos()[0].save(photo)
    folder = tiny_mdan("webemo").save_pretrained(tmp_path / "random")
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # no second, Python warning
        code = run_cli([str(photo)], model_name=None, weights=str(folder), stdout=out, stderr=err)
    assert code == 0 and err.getvalue().count("UntrainedWeightsWarning") == 1
    assert "mdan-zoo predict: UntrainedWeightsWarning: the checkpoint" in err.getvalue()
    run_dir, _ = run
    exported = export_run(run_dir, tmp_path / "exported")
    out, err = io.StringIO(), io.StringIO()
    code = run_cli([str(photo)], model_name=None, weights=str(exported), stdout=out, stderr=err)
    assert code == 0 and "Untrained" not in err.getvalue() and str(photo) in out.getvalue()


# ------------------------------------------------------------------ item 9: pictures, demo, names
def test_captions_fit_their_panel_and_show_the_given_labels() -> None:
    """Long level and label names are shortened to their panel: the white gaps between panels
    stay white; and the labels passed in (the consistent answer) are what is printed."""
    image = photos()[0]
    rng = np.random.default_rng(0)

    class Level:
        def __init__(self, level: str, label: str) -> None:
            self.level, self.label, self.prob, self.kind = level, label, 0.5, "L-CAM"
            self.map = rng.random((image.size[1], image.size[0])).astype(np.float32)

    long = "an extraordinarily long emotion label that never fits"
    levels = [Level("polarity level with a long name", long), Level("emotion", long)]
    sheet = np.asarray(render_overlay(image, levels, panel_size=96, legend=False))
    gap, column = 8, 96
    for i in range(1, 3):  # the gap between panel i-1 and panel i, caption rows included
        x = gap + i * (column + gap) - gap
        assert (sheet[:, x : x + gap] == 255).all(), f"caption runs into panel {i}"
    drawn: list[str] = []
    real = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):  # noqa: ANN001, ANN202
        drawn.append(text)
        return real(self, xy, text, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageDraw.ImageDraw, "text", record)
        a = render_overlay(image, levels, panel_size=96, labels=[("joy", 0.5), ("awe", 0.5)])
    assert "answer: joy 0.50" in drawn and "answer: awe 0.50" in drawn  # the labels given
    assert not np.array_equal(np.asarray(a)[: sheet.shape[0]], sheet)
    with pytest.raises(ValueError, match="labels has 1 entries for 2 levels"):
        render_overlay(image, levels, labels=[("joy", 0.5)])


@pytest.mark.filterwarnings("ignore::mdan_zoo.UntrainedWeightsWarning")
def test_attention_pictures_caption_the_consistent_answer() -> None:
    model = tiny_mdan("webemo")
    (maps,) = model.attention_maps(photos()[:1])
    answer = [(c.label, c.prob) for c in maps.prediction.consistent]
    expected = render_overlay(maps.image, maps.levels, panel_size=128, labels=answer)
    assert np.array_equal(np.asarray(maps.overlay(panel_size=128)), np.asarray(expected))


def test_the_demo_marks_only_the_selected_epoch() -> None:
    history = [
        {"epoch": e, "train_loss": 1.0, "train_images_per_s": 10.0, "val/overall/mean": acc,
         "selected": sel}
        for e, acc, sel in ((1, 0.4, True), (2, 0.3, False), (3, 0.6, True))
    ]  # fmt: skip
    lines = epoch_lines(history, best_epoch=3)
    assert [line.endswith("<- selected") for line in lines] == [False, False, True]


def test_a_mistyped_model_name_gets_a_suggestion() -> None:
    with pytest.raises(
        KeyError, match=r"no model named 'mdan_webemmo' \(did you mean 'mdan_webemo'\?\)"
    ):
        create_model("mdan_webemmo")
    with pytest.raises(KeyError) as info:
        create_model("resnet50")
    assert "did you mean" not in str(info.value)


def test_predict_weights_help_names_every_kind_of_weights() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    predict = sub.choices["predict"]  # type: ignore[attr-defined]
    help_text = next(a.help for a in predict._actions if a.dest == "weights")
    assert ".safetensors" in help_text and "hf-hub:" in help_text and "export" in help_text
    assert "training run's output_dir" in help_text


def test_a_portrait_photo_keeps_room_for_captions() -> None:
    tall = Image.new("RGB", (40, 200), (0, 128, 0))

    class Level:
        level, label, prob, kind = "emotion", "contentment", 0.9, "CAM"
        map = np.zeros((200, 40), np.float32)

    sheet = render_overlay(tall, [Level()], panel_size=128)
    assert sheet.width == 2 * 64 + 3 * 8  # the column is at least half a panel wide
