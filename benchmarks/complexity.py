"""Parameter count and multiply-accumulates of MDAN's built-in configs vs torchvision ResNet-101.

The paper's Table 1 "GFLOPs" (ResNet-101: 30.4 at 448 x 448) are multiply-accumulates (MACs):
torchvision's own ResNet-101 card says 7.80 GFLOPS at 224, i.e. 31.2 G at 448. We count with
``torch.utils.flop_counter.FlopCounterMode``, which reports FLOPs = 2 x MACs for matmuls and
convolutions, and print both. Elementwise work (softmax, interpolation, L-CAM fusion) is not
counted by FlopCounterMode, as in the usual MAC counters. MDAN is counted twice: as it runs
(MHCCA folds Q and O into the per-head matrices where that is cheaper) and with Eq. 4 evaluated
literally (``fold=False``); both compute the same function.

    PYTHONPATH=$PWD python benchmarks/complexity.py [--size 448]
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, get_taxonomy
from mdan_zoo.layers import MHCCA

PAPER = {"MDAN (paper, Table 1)": (48.79, 101.4), "ResNet-101 (paper, Table 1)": (42.52, 30.4)}


def count(model: torch.nn.Module, size: int) -> tuple[float, float]:
    """(parameters in millions, GMACs) of one forward of a [1, 3, size, size] image."""
    model.eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    x = torch.zeros(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return params, counter.get_total_flops() / 2e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows: list[tuple[str, float, float]] = []
    for name in ("webemo", "mikels", "emotion6"):
        tax = get_taxonomy(name)
        label = f"MDAN {name} ({'/'.join(map(str, tax.num_classes))})"
        model = MDAN(tax, MDANConfig())
        rows.append((label, *count(model, args.size)))
        for m in model.modules():  # Eq. 4 evaluated literally: Q and O as 1x1 convs everywhere
            if isinstance(m, MHCCA):
                m.fold = False
        rows.append((f"{label}, Q/O never folded", *count(model, args.size)))
    rows.append(
        (
            "ResNet-101 (torchvision, 1000-class fc)",
            *count(torchvision.models.resnet101(), args.size),
        )
    )
    rows.append(
        (
            "ResNet-101 with an 8-class fc (FI-8)",
            *count(torchvision.models.resnet101(num_classes=8), args.size),
        )
    )
    trunk = MDAN(get_taxonomy("fi"), MDANConfig()).backbone
    rows.append(("ResNet-101 trunk alone (MDAN's backbone, no fc)", *count(trunk, args.size)))
    print(f"input {args.size}x{args.size}, batch 1; GMACs = FlopCounterMode FLOPs / 2")
    print("| model | params (M) | GMACs | GFLOPs (2 x MACs) |")
    print("|---|---:|---:|---:|")
    for label, params, gmacs in rows:
        print(f"| {label} | {params:.2f} | {gmacs:.1f} | {2 * gmacs:.1f} |")
    for label, (params, gmacs) in PAPER.items():
        print(f"| {label} | {params:.2f} | {gmacs:.1f} | - |")


if __name__ == "__main__":
    main()
