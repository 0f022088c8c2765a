"""What the zoo shows means what it says: attention captions name the classes each map was
built from, confusion matrices say how many images a row holds, the printed answer says when
it lies outside the top-k, CPU threads fit the cores, a missing extra names its pip install,
an unreachable Hub fails fast, and ``dir(mdan_zoo)`` holds only public names."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _photos import feat_photo, tiny_model
from PIL import Image, ImageDraw

import mdan_zoo
from mdan_zoo._threads import thread_budget
from mdan_zoo.evaluation import save_confusion_png
from mdan_zoo.layers import lcam_map
from mdan_zoo.prediction import LabelProb, LevelPrediction, Prediction
from mdan_zoo.taxonomy import get_taxonomy

PHOTO = feat_photo("single_face.jpg")
pytestmark = pytest.mark.filterwarnings("ignore::mdan_zoo.UntrainedWeightsWarning")


def test_each_attention_map_names_the_classes_it_was_built_from() -> None:
    """L-CAM at level d fuses the CAMs of the children of level d-1's P_L argmax: rebuilding
    M from the classes LevelAttention names gives the very map the network applied."""
    model = tiny_model("webemo")
    (maps,) = model.attention_maps([str(PHOTO)])
    x = model.eval_transform()(Image.open(PHOTO).convert("RGB"))[None]
    with torch.no_grad():
        out = model(x, return_cams=True)
    for depth, (lv, att) in enumerate(zip(out, maps.levels, strict=True)):
        assert att.kind == "L-CAM" and att.classes
        keep = torch.tensor([[label in att.classes for label in lv.labels]])
        again = lcam_map(lv.cams, keep)[:, 0]
        assert torch.allclose(again, lv.lcam, atol=1e-6), depth
        if depth == 0:
            assert att.parent is None and att.classes == lv.labels
            assert att.built_from().startswith("all classes: ")
        else:
            pick = int(out[depth - 1].local_probs[0].argmax())
            assert att.parent == out[depth - 1].labels[pick]
            assert att.built_from().startswith(f"under {att.parent}: ")
    assert maps.to_dict()["levels"][1]["parent"] == maps.levels[1].parent


def test_the_png_prints_what_level_attention_says(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("webemo")
    (maps,) = model.attention_maps([str(PHOTO)])
    drawn: list[str] = []
    real = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):  # noqa: ANN001, ANN202
        drawn.append(text)
        return real(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    sheet = maps.overlay(panel_size=512)  # wide panels: no caption is shortened
    for att, answer in zip(maps.levels, maps.prediction.consistent, strict=True):
        said = att.built_from()  # as is, or shortened with "..." to fit its panel
        assert any(t == said or (t.endswith("...") and said.startswith(t[:-3])) for t in drawn)
        assert f"answer: {answer.label} {answer.prob:.2f}" in drawn  # marked as the answer
    assert any("answer: the hierarchy-consistent prediction" in t for t in drawn)
    # the colour bar: a jet ramp from blue (low) to red (high) in the bottom strip
    strip = np.asarray(sheet)[-12:]
    assert (strip[..., 2] > 200).any() and (strip[..., 0] > 200).any()


def test_confusion_rows_say_how_many_images_and_mark_empty_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tax = get_taxonomy("fashion_mnist")
    m = np.eye(10, dtype=np.int64) * 7
    m[3] = 0  # no test image of class 3
    drawn: list[str] = []
    real = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):  # noqa: ANN001, ANN202
        drawn.append(text)
        return real(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    geo = save_confusion_png(m, tax, 2, tmp_path / "c.png")
    assert drawn.count("n=7") == 9 and drawn.count("n=0") == 1
    assert "no images of this class" in drawn and "100%" in drawn and "0%" in drawn
    assert "0" not in drawn and "100" not in drawn  # every percentage carries its sign
    img = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))
    row = geo["order"].index(3)
    y = geo["y0"] + row * geo["cell"] + 2
    x = geo["x0"] + 2
    assert tuple(img[y, x]) == (250, 236, 190)  # shaded: not a row of 0 % recall


def test_the_printed_answer_says_when_it_lies_outside_the_top_k() -> None:
    from mdan_zoo.prediction._stream import _format_block

    pred = Prediction(
        source="a.jpg",
        levels=(
            LevelPrediction("polarity", "positive", 0.6, (LabelProb("positive", 0.6),)),
            LevelPrediction("emotion", "amusement", 0.67, (LabelProb("amusement", 0.67),)),
        ),
        consistent=(LabelProb("negative", 0.4), LabelProb("rage", 0.079)),
        joint_prob=0.0316,
        argmax_consistent=True,
    )
    assert pred.outside_top_k == ("polarity", "emotion")
    text = _format_block(pred, None)
    assert "negative 0.400 > rage 0.079" in text and "largest product of P_O" in text
    assert "[answer rage 0.079: outside the top 1]" in text
    inside = Prediction(
        source="b.jpg",
        levels=pred.levels[:1],
        consistent=(LabelProb("positive", 0.6),),
        joint_prob=0.6,
        argmax_consistent=True,
    )
    assert inside.outside_top_k == () and "outside" not in _format_block(inside, None)


def test_threads_and_workers_fit_the_cores() -> None:
    torch_default = torch.get_num_threads()
    for cores in (1, 2, 4, 16):
        for workers in (0, 1, 4, 32):
            threads, w = thread_budget(None, workers, cores=cores, load=0.0)
            assert threads >= 1 and threads + w <= max(cores, 1 + w) and threads <= torch_default
            assert w + threads <= cores or (cores == 1 and w == 0)
    # a machine other work already fills (load above cores + 1): one thread, not a spin-fight
    assert thread_budget(None, 0, cores=2, load=9.0)[0] == 1
    assert thread_budget(None, 0, cores=2, load=2.5)[0] == min(2, torch_default)
    assert thread_budget(2, 0, cores=2, load=9.0) == (2, 0)  # asked for: honoured
    assert thread_budget(3, 4, cores=4) == (3, 1)
    assert thread_budget(8, 4, cores=4) == (8, 0)  # asked for: honoured, no worker left
    with pytest.raises(ValueError, match="threads"):
        thread_budget(0, 0)


def test_threads_reach_torch_in_predict_and_are_put_back() -> None:
    model = tiny_model("webemo")
    seen: list[int] = []
    forward = model.forward

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    model.forward = spy  # type: ignore[method-assign]
    before = torch.get_num_threads()
    model.predict([str(PHOTO)], threads=1)
    assert seen == [1] and torch.get_num_threads() == before


@pytest.mark.parametrize("command", ["train fi", "eval fi", "predict x --model m", "demo"])
def test_every_running_command_takes_threads(command: str) -> None:
    from mdan_zoo.cli import build_parser

    args = build_parser().parse_args([*command.split(), "--threads", "3"])
    assert args.threads == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command.split(), "--threads", "0"])


def test_a_missing_extra_names_its_pip_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from mdan_zoo.export import OnnxRuntimeModel, export_onnx

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(mdan_zoo.MissingDependencyError, match=r"pip install 'mdan_zoo\[onnx\]'"):
        export_onnx(tiny_model("fi"), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ImportError, match=r"onnxruntime.*pip install 'mdan_zoo\[onnx\]'"):
        OnnxRuntimeModel(tmp_path / "m.onnx")


def test_dir_of_the_package_holds_only_public_names() -> None:
    names = dir(mdan_zoo)
    assert "MDAN" in names and "predict" in names
    assert not {"Any", "importlib", "TYPE_CHECKING", "annotations"} & set(names)
    assert all(not n.startswith("_") or n == "__version__" for n in names)


def test_an_unreachable_hub_fails_within_seconds_naming_offline_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mdan_zoo import MDAN, WeightsError

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # refused at once
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE=1") as err:
        MDAN.from_pretrained("org/name")
    assert time.perf_counter() - start < 5
    assert "connection refused" in str(err.value)
