"""Activation memory per training image: MDAN (FI, WEBEmo) against ResNet-101 at 448 px, fp32
and bf16 autocast, with and without gradient checkpointing of MDAN's top-down branch.

Each figure is the growth of peak RSS per image over one training step (forward, loss,
backward): the step runs at batch 1 and at batch 2, each in a fresh forked process (peak RSS
above the built model, ``/proc/self/status`` VmHWM after resetting it), and the difference is
what one more image costs, free of the parameters and their gradients. Beside it, the bytes
autograd keeps for backward per image (saved tensors, each storage counted once, parameters
left out), counted on the ``meta`` device. The batch that fits per 80 GB follows from the per-image figure (weights, gradients and
SGD momentum set aside). Goal (issue 21): MDAN WEBEmo with checkpointing on at most 1.2x
ResNet-101 per image.

    PYTHONPATH=$PWD python benchmarks/train_memory.py [--size 448] [--quick]
"""

from __future__ import annotations

import argparse

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
        "--quick", action="store_true", help="ResNet-18, width 64, 64 px, fp32 only"
    )
    args = parser.parse_args()

    import torch

    threads = args.threads or torch.get_num_threads()
    backbone, width, size = ("resnet18", 64, 64) if args.quick else ("resnet101", 1024, args.size)
    from mdan_zoo import MDAN

    ckpt_ok = hasattr(MDAN, "set_grad_checkpointing")
    rows = []
    saved: dict[tuple[str, bool], float] = {}
    for bf16 in (False,) if args.quick else (False, True):
        variants = [(BASE, False), ("fi", False), ("webemo", False)]
        if ckpt_ok:
            variants += [("fi", True), ("webemo", True)]
        for name, ckpt in variants:
            spec = dict(model=name, backbone=backbone, width=width, ckpt=ckpt, size=size,
                        bf16=bf16, threads=threads)  # fmt: skip
            one = float(_common.in_fork(step_peak, {**spec, "batch": 1}))  # type: ignore[arg-type]
            two = float(_common.in_fork(step_peak, {**spec, "batch": 2}))  # type: ignore[arg-type]
            if not bf16:  # shapes only: the same for bf16
                saved[name, ckpt] = saved_bytes({**spec, "batch": 2}) - saved_bytes(
                    {**spec, "batch": 1}
                )
            rows.append((bf16, name, ckpt, one, two, saved[name, ckpt]))
    print(
        _common.header(f"training step memory per image at {size} px ({backbone}, width {width})")
    )
    print(
        "\n| dtype | model | checkpointing | peak batch 1 MiB | peak batch 2 MiB | per image MiB "
        f"| / {backbone} | saved for backward MiB/img (fp32) | batch per 80 GB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for bf16, name, ckpt, one, two, saved in rows:
        base = next(r for r in rows if r[0] == bf16 and r[1] == BASE)
        per, base_per = two - one, base[4] - base[3]
        label = f"{backbone} classifier (25 classes)" if name == BASE else f"MDAN {name} ({width})"
        print(
            f"| {'bf16' if bf16 else 'fp32'} | {label} | {'on' if ckpt else 'off'} | "
            f"{one / 2**20:.0f} | {two / 2**20:.0f} | {per / 2**20:.0f} | {per / base_per:.2f} | "
            f"{saved / 2**20:.0f} | {int(GPU_BYTES // per) if per > 0 else '-'} |"
        )
    if not ckpt_ok:
        print(
            "\n(MDAN.set_grad_checkpointing is not in this checkout: checkpointing rows left out)"
        )
    print(f"\ngoal: MDAN webemo with checkpointing <= {GOAL}x ResNet-101 per image")


if __name__ == "__main__":
    main()
