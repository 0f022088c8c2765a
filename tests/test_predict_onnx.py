"""``mdan-zoo predict --weights model.onnx`` (issue 21): an ONNX export runs through ONNX
Runtime and answers what the PyTorch checkpoint answers: the same labels at every level, the
same probabilities to 1e-4, the same consistent answer; what an export cannot do is refused
with exit status 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import skimage.data
import torch
from _photos import feat_photo, tiny_model
from PIL import Image

from mdan_zoo.cli import main
from mdan_zoo.export import export_onnx

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("onnx_cli")
    torch.manual_seed(3)
    model = tiny_model("webemo")
    model.weights_origin = "test"
    folder = model.save_pretrained(root / "weights")
    onnx = export_onnx(model, root / "model.onnx")
    photos = [str(feat_photo("single_face.jpg")), str(feat_photo("multi_face.jpg"))]
    for name in ("coffee", "chelsea", "astronaut"):
        path = root / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
        photos.append(str(path))
    return folder, onnx, photos


def _records(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["predict", *argv, "--json", "--no-progress", "--batch-size", "2"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-4), where
    else:
        assert a == b, where


def test_onnx_weights_answer_as_the_pytorch_checkpoint(exported, capsys) -> None:  # noqa: ANN001
    folder, onnx, photos = exported
    torch_out = _records(capsys, *photos, "--weights", str(folder), "--top-k", "4")
    onnx_out = _records(capsys, *photos, "--weights", str(onnx), "--top-k", "4")
    assert len(onnx_out) == len(photos) == 5
    _same(torch_out, onnx_out)
    assert all(r["consistent"] and r["joint_prob"] is not None for r in onnx_out)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--save-attention", "maps"], "attention maps"),
        (["--bf16"], "--bf16 applies to the PyTorch model"),
    ],
)
def test_what_an_export_cannot_do_is_a_usage_error(exported, capsys, tmp_path, flags, said) -> None:  # noqa: ANN001
    _, onnx, photos = exported
    flags = [str(tmp_path / f) if f == "maps" else f for f in flags]
    assert main(["predict", photos[0], "--weights", str(onnx), *flags]) == 2
    assert said in capsys.readouterr().err


def test_a_damaged_or_missing_onnx_file_is_a_usage_error(exported, capsys, tmp_path) -> None:  # noqa: ANN001
    _, onnx, photos = exported
    assert main(["predict", photos[0], "--weights", str(tmp_path / "none.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx.read_bytes()[:1000])
    assert main(["predict", photos[0], "--weights", str(bad)]) == 2
    assert "export it again" in capsys.readouterr().err
