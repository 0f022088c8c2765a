"""The GPU check's side-by-side measurements: MDAN FI vs torchvision's ResNet-101.

Same GPU, same process, models interleaved round by round (A, B, A, B, ...) so that a clock or
another job hits both alike; medians. Per-MAC ratios divide the time ratio by the ratio of the
multiply-accumulates, counted with ``FlopCounterMode`` on the ``meta`` device.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, get_taxonomy

MDAN_NAME, BASE_NAME = "MDAN FI", "ResNet"  # the baseline: ResNet-101 (ResNet-18 in --smoke)
INFERENCE_MODES = ("eager", "channels_last", "bf16", "compile")  # compile last: the slowest
COMPILE_S = 90.0  # a guess at inductor's compile time for both (not measured on a GPU yet)


def _builders(sizes: Any) -> dict[str, Callable[[], nn.Module]]:
    cfg = MDANConfig(backbone=sizes.backbone, fpn_channels=sizes.fpn_channels)
    return {
        MDAN_NAME: lambda: MDAN(get_taxonomy("fi"), cfg),
        BASE_NAME: lambda: torchvision.models.get_model(sizes.baseline, num_classes=8),
    }


def _loss(model: nn.Module, out: Any, y: torch.Tensor) -> torch.Tensor:
    if isinstance(model, MDAN):
        return model.loss(out, y)
    return nn.functional.cross_entropy(out, y)


def gmacs(make: Callable[[], nn.Module], size: int, *, train: bool) -> float:
    """Multiply-accumulates (G) per [1, 3, size, size] image: forward, or forward + backward."""
    with torch.device("meta"):
        model = make()
    model.to("meta").train(train)
    x = torch.zeros(2, 3, size, size, device="meta")  # 2: BatchNorm trains on 1 x 1 maps too
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        if train:
            _loss(model, out, torch.zeros(2, dtype=torch.long, device="meta")).backward()
    return counter.get_total_flops() / 2e9 / 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, on: bool) -> Any:
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Bench:
    """One model on the device with its optimizer; training steps and inference passes."""

    def __init__(self, make: Callable[[], nn.Module], device: torch.device, sizes: Any) -> None:
        torch.manual_seed(0)
        self.model = make().to(device)
        self.device, self.sizes = device, sizes
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-3
        )
        self.bf16 = device.type == "cuda"  # the trainer's amp: bf16 autocast on GPUs only

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.sizes.size
        x = torch.randn(n, 3, s, s, device=self.device)
        return x, torch.randint(0, 8, (n,), device=self.device)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model.train()
        with _autocast(self.device, self.bf16):
            loss = _loss(self.model, self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def fits(self, n: int) -> bool:
        """Whether a training step at batch ``n`` fits in the device's memory."""
        try:
            x, y = self.batch(n)
            self.step(x, y)
            _sync(self.device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            self.opt.zero_grad(set_to_none=True)
            _free(self.device)

    @contextlib.contextmanager
    def checkpointing(self, on: bool) -> Iterator[bool]:
        """``set_grad_checkpointing(on)`` where the model has it; yields whether it does."""
        fn = getattr(self.model, "set_grad_checkpointing", None)
        if fn is None:
            yield False
            return
        fn(on)
        try:
            yield True
        finally:
            fn(False)


def _time(fn: Callable[[], None], device: torch.device, repeats: int) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


def _ratios(rows: dict[str, dict[str, Any]], macs: dict[str, float], key: str) -> None:
    """Fill ``rows[key]`` with the MDAN / ResNet time ratio and its per-MAC version."""
    a, b = rows[key].get(MDAN_NAME), rows[key].get(BASE_NAME)
    if isinstance(a, float) and isinstance(b, float) and a > 0 and b > 0:
        rows[key]["time_ratio"] = b / a  # images/s: the time ratio is the inverse
        rows[key]["per_mac"] = (b / a) / (macs[MDAN_NAME] / macs[BASE_NAME])


def compare_models(device: torch.device, sizes: Any, *, deadline: float) -> dict[str, Any]:
    builders = _builders(sizes)
    out: dict[str, Any] = {"batch": sizes.batch, "size": sizes.size, "failures": []}
    out["names"] = {MDAN_NAME: f"MDAN FI on {sizes.backbone}, width {sizes.fpn_channels}"}
    out["names"][BASE_NAME] = f"torchvision {sizes.baseline}"
    train_macs = {k: gmacs(f, sizes.size, train=True) for k, f in builders.items()}
    fwd_macs = {k: gmacs(f, sizes.size, train=False) for k, f in builders.items()}
    out["gmacs_train"], out["gmacs_forward"] = train_macs, fwd_macs
    benches = {k: Bench(f, device, sizes) for k, f in builders.items()}
    rows: dict[str, dict[str, Any]] = {}
    # training images/s (bf16 autocast on GPUs, as the trainer), interleaved rounds
    x, y = benches[MDAN_NAME].batch(sizes.batch)
    for b in benches.values():
        for _ in range(2):
            b.step(x, y)
    times: dict[str, list[float]] = {k: [] for k in benches}
    for _ in range(3):
        for k, b in benches.items():
            times[k].append(_time(lambda b=b: b.step(x, y), device, sizes.timed_steps))
    rows["train"] = {k: sizes.batch / statistics.median(v) for k, v in times.items()}
    _ratios(rows, train_macs, "train")
    out["rows"] = rows
    out["compile_seconds"] = {}
    out["memory"] = _memory(benches, device, sizes)
    if time.perf_counter() < deadline:
        out["largest_batch"] = {
            k: _largest(b, out["memory"].get(k), device, sizes) for k, b in benches.items()
        }
    else:
        out["largest_batch"] = {"skipped": "over budget"}
    # inference images/s in each mode (torch.compile last: it compiles for a minute or two)
    for mode in INFERENCE_MODES:
        rows[f"infer_{mode}"] = {}
        left = deadline - time.perf_counter()
        if left < (COMPILE_S if mode == "compile" and sizes.compile_backend != "eager" else 0):
            rows[f"infer_{mode}"]["skipped"] = f"over budget ({max(0, left):.0f} s left)"
            continue
        for k, b in benches.items():
            try:
                rows[f"infer_{mode}"][k] = _infer(b, mode, x, out["compile_seconds"], k)
            except Exception as err:  # noqa: BLE001 - one mode failing is a finding, not the end
                rows[f"infer_{mode}"][k] = f"{type(err).__name__}: {str(err)[:300]}"
                out["failures"].append(
                    f"inference {mode} of {k}: {type(err).__name__}: {err}"[:500]
                )
            _free(device)
        _ratios(rows, fwd_macs, f"infer_{mode}")
    return out


def _infer(
    bench: Bench, mode: str, x: torch.Tensor, compile_s: dict[str, float], name: str
) -> float:
    model, device = bench.model.eval(), bench.device
    inp = x
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        inp = x.contiguous(memory_format=torch.channels_last)
    fn: Callable[[torch.Tensor], Any] = model
    if mode == "compile":
        fn = torch.compile(model, backend=bench.sizes.compile_backend)
    low = mode == "bf16"

    def run() -> None:
        with torch.inference_mode(), _autocast(device, low):
            fn(inp)

    try:
        t = time.perf_counter()
        run()  # warm-up (compiles)
        _sync(device)
        if mode == "compile":
            compile_s[name] = time.perf_counter() - t
        run()
        return x.shape[0] / min(_time(run, device, bench.sizes.timed_steps) for _ in range(3))
    finally:
        bench.model.to(memory_format=torch.contiguous_format)
        torch._dynamo.reset()


def _peak(b: Bench, n: int, device: torch.device) -> int:
    """Peak bytes allocated during one training step at batch ``n``."""
    x, y = b.batch(n)
    b.opt.zero_grad(set_to_none=True)
    _free(device)
    torch.cuda.reset_peak_memory_stats(device)
    b.step(x, y)
    _sync(device)
    del x, y
    b.opt.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated(device)


def _memory(benches: dict[str, Bench], device: torch.device, sizes: Any) -> dict[str, Any]:
    """Training memory per image (MB): the slope of the step's peak between batch n/2 and n
    (what one more image costs; weights, gradients and optimizer state are the ``fixed`` part;
    ``*_peak_per_image_mb`` is the step's whole peak at batch n divided by n),
    with and without gradient checkpointing where the model offers ``set_grad_checkpointing``."""
    out: dict[str, Any] = {}
    n, half = sizes.batch, max(1, sizes.batch // 2)
    for k, b in benches.items():
        entry: dict[str, Any] = {}
        for ckpt in (False, True):
            label = "checkpointing" if ckpt else "plain"
            with b.checkpointing(ckpt) as offered:
                if ckpt and not offered:
                    entry[label] = "not offered (no set_grad_checkpointing)"
                    continue
                if device.type != "cuda":
                    b.step(*b.batch(n))  # the code path runs; CPU memory is not measured
                    entry[label] = None
                    continue
                full, part = _peak(b, n, device), _peak(b, half, device)
                per_image = (full - part) / (n - half) if n > half else full / n
                entry[label] = per_image / 2**20
                entry[f"{label}_fixed_mb"] = (full - n * per_image) / 2**20
                entry[f"{label}_peak_per_image_mb"] = full / n / 2**20  # the step's peak / n
        out[k] = entry
    return out


def _largest(
    bench: Bench, memory: dict[str, Any] | None, device: torch.device, sizes: Any
) -> dict[str, Any]:
    """The largest training batch that fits (bisection, starting from the memory estimate)."""
    tried: dict[int, bool] = {}

    def fits(n: int) -> bool:
        if n not in tried:
            tried[n] = bench.fits(n)
        return tried[n]

    cap = sizes.max_batch
    per_image = memory.get("plain") if memory else None
    if device.type == "cuda" and isinstance(per_image, float) and per_image > 0:
        total = torch.cuda.get_device_properties(device).total_memory / 2**20
        guess = int((0.95 * total - memory.get("plain_fixed_mb", 0.0)) / per_image)
        lo, hi = 0, None
        guess = max(1, min(cap, guess))
    else:
        lo, hi, guess = 0, None, sizes.batch
    n = guess
    for _ in range(12):  # doubling until a failure, then bisection to 5 %
        if fits(n):
            lo = n
            if n >= cap:
                break
            n = min(cap, n * 2) if hi is None else (lo + hi) // 2
        else:
            hi = n
            n = (lo + hi) // 2 if lo else max(1, n // 2)
        if hi is not None and lo and hi - lo <= max(1, lo // 20):
            break
    return {"fits": lo, "fails": hi, "capped": lo >= cap, "tried": dict(sorted(tried.items()))}
