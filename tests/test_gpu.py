"""GPU readiness: AMP (bf16, fp16 + GradScaler) training steps, channels_last, predict and
decode=gpu (nvJPEG) on cuda.

Marked ``gpu`` and skipped without CUDA; on a GPU machine run ``python -m pytest -m gpu``
(docs/reproduce.md). Random images: these check numerics and plumbing on the device, not
learning (tests/test_learning.py and tests/test_train.py learn from real data on the CPU).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from mdan_zoo import MDAN, MDANConfig, get_taxonomy
from mdan_zoo.prediction._pipeline import predict
from mdan_zoo.training._config import TrainConfig
from mdan_zoo.training._trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TAX = get_taxonomy("fashion_mnist")  # 2 -> 4 -> 10: every part of MDAN runs
LITE18 = MDANConfig.lite(backbone="resnet18")


@pytest.fixture
def exact_fp32() -> Iterator[None]:
    """TF32 off while comparing float32 results (it is on for cuDNN convolutions by default)."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _random_sets(n_train: int = 48, n_val: int = 20, size: int = 64) -> dict[str, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    return {
        part: TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 10)
        for part, n in (("train", n_train), ("val", n_val))
    }


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_trainer_amp_steps_on_cuda(tmp_path: Path, amp: str) -> None:
    """Trainer on cuda under autocast: finite loss, every trainable weight moves, fp16 uses a
    GradScaler and bf16 does not; validation probabilities are float32 (Eq. 2, P_O)."""
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    config = TrainConfig(
        name=f"gpu-{amp}",
        taxonomy="fashion_mnist",
        dataset="fashion_mnist",
        backbone="resnet18",
        model={"fpn_channels": 256},
        input_size=64,
        resize_size=64,
        pretrained="none",
        epochs=1,
        batch_size=16,
        max_steps_per_epoch=3,
        lr_backbone=0.01,
        lr_new=0.01,
        amp=amp,
        device="cuda",
        workers=0,
        progress=False,
        eval_test=False,
        output_dir=str(tmp_path / "run"),
    )
    trainer = Trainer(config, datasets=_random_sets())
    assert trainer.amp_dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    result = trainer.fit()
    row = result.history[0]
    assert np.isfinite(row["train_loss"]) and 0 < row["train_loss"] < 20
    assert all(np.isfinite(v) for k, v in row.items() if k.startswith("val/"))
    moved = [k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])]
    assert len(moved) == len(before)
    report = trainer.validate("val")
    assert report.num_samples == 20


def test_paper_size_bf16_step_on_cuda(exact_fp32: None) -> None:
    """mdan_webemo's network (ResNet-101, width 1024, 448 px) under bf16 autocast: probabilities
    stay float32 and close to the float32 forward, gradients are finite, a few SGD steps on one
    batch lower its loss."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    model = MDAN(get_taxonomy("webemo"), MDANConfig()).cuda().train()
    x = torch.randn(4, 3, 448, 448, device="cuda")
    y = torch.tensor([0, 5, 12, 24], device="cuda")
    with torch.no_grad():
        model.eval()
        ref = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x)
        model.train()
    for a, b in zip(ref, low, strict=True):
        assert b.probs.dtype == b.global_probs.dtype == torch.float32
        torch.testing.assert_close(b.probs.sum(1), torch.ones(4, device="cuda"))
        assert (a.probs - b.probs).abs().max() < 0.05
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    losses = []
    for _ in range(6):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


def test_channels_last_matches_contiguous_on_cuda(exact_fp32: None) -> None:
    torch.manual_seed(0)
    model = MDAN(TAX, LITE18).cuda().eval()
    other = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 128, 128, device="cuda")
    with torch.no_grad():
        a = model(x, return_cams=True)
        b = other(x.contiguous(memory_format=torch.channels_last), return_cams=True)
    for la, lb in zip(a, b, strict=True):
        torch.testing.assert_close(lb.probs, la.probs, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(lb.lcam, la.lcam, rtol=1e-4, atol=1e-4)
    # and the backward pass: the same gradients in both memory formats (BatchNorm on running
    # statistics, which keeps random-weight gradients from amplifying rounding differences)
    target = torch.tensor([0, 4, 9], device="cuda")
    model.loss(model(x), target).backward()
    other.loss(other(x.contiguous(memory_format=torch.channels_last)), target).backward()
    for (name, p), q in zip(model.named_parameters(), other.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        assert (q.grad - p.grad).norm() <= 1e-3 * p.grad.norm(), name


def test_predict_on_cuda_matches_cpu(exact_fp32: None) -> None:
    torch.manual_seed(0)
    model = MDAN(TAX, LITE18).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(80 + 7 * i, 96, 3), dtype=np.uint8) for i in range(5)]
    cpu = model.predict(images, device="cpu", top_k=10)
    gpu = model.predict(images, device="cuda", top_k=10)
    assert next(model.parameters()).device.type == "cuda"
    for p, q in zip(cpu, gpu, strict=True):
        assert p.ok and q.ok
        for lp, lq in zip(p.levels, q.levels, strict=True):
            want = {t.label: t.prob for t in lp.top_k}
            got = {t.label: t.prob for t in lq.top_k}
            assert set(got) == set(want)
            assert max(abs(got[k] - want[k]) for k in want) < 1e-4
    # the serving switches of mdan_zoo.predict on cuda: channels_last exact, bf16 close
    fast = predict(copy.deepcopy(model), images, device="cuda", top_k=10, channels_last=True)
    low = predict(copy.deepcopy(model), images, device="cuda", top_k=10, bf16=True)
    for p, q, r in zip(gpu, fast, low, strict=True):
        for lp, lq, lr in zip(p.levels, q.levels, r.levels, strict=True):
            want = {t.label: t.prob for t in lp.top_k}
            assert max(abs(t.prob - want[t.label]) for t in lq.top_k) < 1e-4
            assert max(abs(t.prob - want[t.label]) for t in lr.top_k) < 0.05


def test_decode_gpu_matches_the_cpu_path_on_cuda(tmp_path: Path) -> None:
    """decode=gpu's nvJPEG + CUDA kernels against Pillow + the CPU v2 kernels on the same JPEGs
    with the same draws: within the JPEG decoders' tolerance (issue 24)."""
    from PIL import Image

    from mdan_zoo import Preprocessing
    from mdan_zoo.data import EncodedImages, ImageDataset, collate_encoded, decode_batch

    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((640 - 20 * i, 480), Image.Resampling.BICUBIC)
        paths.append(tmp_path / f"{i}.jpg")
        img.save(paths[-1], quality=90)
    pre = Preprocessing()
    cpu = ImageDataset([(p, 0) for p in paths], get_taxonomy("fi"), pre.train_transform())
    gpu = EncodedImages(ImageDataset([(p, 0) for p in paths], get_taxonomy("fi")), pre)
    want, items = [], []
    for i in range(len(paths)):
        torch.manual_seed(i)
        want.append(cpu[i][0])
        torch.manual_seed(i)
        items.append(gpu[i])
    got = decode_batch(collate_encoded(items)[0], "cuda", pre, dataset=gpu.dataset)
    assert got.device.type == "cuda"
    grey = ((got.cpu() - torch.stack(want)) * torch.tensor(pre.std).view(1, 3, 1, 1) * 255).abs()
    assert float(grey.mean()) <= 1.0 and float(grey.max()) <= 48.0, (grey.mean(), grey.max())
