"""Activation memory per training image: MDAN (FI, WEBEmo) against ResNet-101 at 448 px, fp32
and bf16 autocast, with and without gradient checkpointing of MDAN's top-down branch.

Each figure is the growth of peak RSS per image over one training step (forward, loss,
backward): the step runs at batch 1 and at batch 3, each ``--repeats`` times (default 3) in a
fresh forked process (peak RSS above the built model, ``/proc/self/status`` VmHWM after
resetting it); per image is the slope between the two medians, (batch 3 - batch 1) / 2, free
of the parameters and their gradients. One step per batch size is not enough: glibc keeps
freed heap memory and moves its mmap threshold as tensors are freed, so the same step's peak
varies by tens of MiB between processes (the spread is printed). ``--mmap-threshold BYTES``
pins glibc's threshold in the children (``mallopt``), so every tensor above it is its own
mapping and RSS follows the bytes tensors occupy rather than the heap's history. Beside it,
the bytes autograd keeps for backward per image (saved tensors, each storage counted once,
parameters left out), counted on the ``meta`` device. The batch that fits per 80 GB follows
from the per-image figure (weights, gradients and SGD momentum set aside). Goal (issue 21):
MDAN WEBEmo with checkpointing on at most 1.2x ResNet-101 per image.

    PYTHONPATH=$PWD python benchmarks/train_memory.py [--size 448] [--repeats 3]
        [--dtypes fp32,bf16] [--mmap-threshold BYTES] [--quick]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)

GOAL = 1.2
GPU_BYTES = 80e9
BASE = "ResNet classifier (25 classes)"  # torchvision's, on MDAN's backbone


def build(name: str, backbone: str, width: int, checkpointing: bool):  # noqa: ANN201
    import torch
    import torchvision

    from mdan_zoo import MDAN, MDANConfig, get_taxonomy

    torch.manual_seed(0)
    if name == BASE:
        return getattr(torchvision.models, backbone)(num_classes=25)
    model = MDAN(get_taxonomy(name), MDANConfig(backbone=backbone, fpn_channels=width))
    if checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _loss(model, x, y):  # noqa: ANN001, ANN202
    import torch

    out = model(x)
    if isinstance(out, torch.Tensor):
        return torch.nn.functional.cross_entropy(out, y)
    return model.loss(out, y)


def step_peak(spec: dict) -> float:
    """Peak RSS above the built model (bytes) of one training step; run in a fork."""
    import torch

    if spec["mmap_threshold"]:  # M_MMAP_THRESHOLD (-3): fixed, so glibc stops moving it
        ctypes.CDLL("libc.so.6").mallopt(-3, spec["mmap_threshold"])
    torch.set_num_threads(spec["threads"])
    model = build(spec["model"], spec["backbone"], spec["width"], spec["ckpt"]).train()
    x = torch.randn(spec["batch"], 3, spec["size"], spec["size"])
    y = torch.zeros(spec["batch"], dtype=torch.long)
    rest = _common.reset_peak()
    with torch.autocast("cpu", torch.bfloat16, enabled=spec["bf16"]):
        loss = _loss(model, x, y)
    loss.backward()
    return float(_common.peak_above(rest))


def saved_bytes(spec: dict) -> float:
    """Bytes autograd keeps for backward in one forward (each storage once, parameters left
    out), counted on the ``meta`` device: shapes only, no arithmetic; fp32."""
    import torch

    with torch.device("meta"):
        model = build(spec["model"], spec["backbone"], spec["width"], spec["ckpt"])
    model.to("meta").train()  # MDAN builds its index tables on the CPU
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    x = torch.zeros(spec["batch"], 3, spec["size"], spec["size"], device="meta")
    y = torch.zeros(spec["batch"], dtype=torch.long, device="meta")
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in params:
            seen.setdefault(storage._cdata, storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _loss(model, x, y)
    return float(sum(seen.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per batch size (median)"
    )
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32, bf16 or both")
    parser.add_argument(
        "--mmap-threshold", type=int, default=0, help="pin glibc's M_MMAP_THRESHOLD (bytes)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="ResNet-18, width 64, 64 px, fp32 only, 1 repeat"
    )
    args = parser.parse_args()

    import torch

    threads = args.threads or torch.get_num_threads()
    backbone, width, size = ("resnet18", 64, 64) if args.quick else ("resnet101", 1024, args.size)
    from mdan_zoo import MDAN

    ckpt_ok = hasattr(MDAN, "set_grad_checkpointing")
    rows = []
    saved: dict[tuple[str, bool], float] = {}
    repeats = 1 if args.quick else args.repeats
    dtypes = ("fp32",) if args.quick else tuple(args.dtypes.split(","))

    def peaks(spec: dict, batch: int) -> list[float]:
        return [
            float(_common.in_fork(step_peak, {**spec, "batch": batch}))  # type: ignore[arg-type]
            for _ in range(repeats)
        ]

    for bf16 in [d == "bf16" for d in dtypes]:
        variants = [(BASE, False), ("fi", False), ("webemo", False)]
        if ckpt_ok:
            variants += [("fi", True), ("webemo", True)]
        for name, ckpt in variants:
            spec = dict(model=name, backbone=backbone, width=width, ckpt=ckpt, size=size,
                        bf16=bf16, threads=threads,
                        mmap_threshold=args.mmap_threshold)  # fmt: skip
            one, three = peaks(spec, 1), peaks(spec, 3)
            if not bf16:  # shapes only: the same for bf16
                saved[name, ckpt] = saved_bytes({**spec, "batch": 2}) - saved_bytes(
                    {**spec, "batch": 1}
                )
            rows.append((bf16, name, ckpt, one, three, saved[name, ckpt]))
    what = f"training step memory per image at {size} px ({backbone}, width {width})"
    pinned = f", glibc mmap threshold {args.mmap_threshold} B" if args.mmap_threshold else ""
    print(_common.header(f"{what}; median of {repeats} processes per batch size{pinned}"))
    print(
        "\n| dtype | model | checkpointing | peak batch 1 MiB (min-max) | peak batch 3 MiB "
        f"(min-max) | per image MiB | / {backbone} | saved for backward MiB/img (fp32) "
        "| batch per 80 GB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")

    def cell(values: list[float]) -> str:
        lo, mid, hi = min(values), statistics.median(values), max(values)
        return f"{mid / 2**20:.0f} ({lo / 2**20:.0f}-{hi / 2**20:.0f})"

    def slope(one: list[float], three: list[float]) -> float:
        return (statistics.median(three) - statistics.median(one)) / 2

    for bf16, name, ckpt, one, three, saved in rows:
        base = next(r for r in rows if r[0] == bf16 and r[1] == BASE)
        per, base_per = slope(one, three), slope(base[3], base[4])
        label = f"{backbone} classifier (25 classes)" if name == BASE else f"MDAN {name} ({width})"
        print(
            f"| {'bf16' if bf16 else 'fp32'} | {label} | {'on' if ckpt else 'off'} | "
            f"{cell(one)} | {cell(three)} | {per / 2**20:.0f} | {per / base_per:.2f} | "
            f"{saved / 2**20:.0f} | {int(GPU_BYTES // per) if per > 0 else '-'} |"
        )
    if not ckpt_ok:
        print(
            "\n(MDAN.set_grad_checkpointing is not in this checkout: checkpointing rows left out)"
        )
    print(f"\ngoal: MDAN webemo with checkpointing <= {GOAL}x ResNet-101 per image")


if __name__ == "__main__":
    main()
