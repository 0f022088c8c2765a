"""Parameters and multiply-accumulates of MDAN's candidate structures vs the paper's Table 1.

Table 1 gives MDAN 48.79M parameters and 101.4 "GFLOPs" at 448 x 448 (ResNet-101: 42.52M,
30.4). The paper names the top-down width nowhere ("C5 is fed to a pointwise convolution and
its channel number is reduced", Sec. 3.1), so this script enumerates the structures the text
allows and prints params and MACs of each, to see which one Table 1 counted:

* the network as built, top-down width 256 / 512 / 1024 / 2048, with and without MHCCA's K/V
  projections (Table 5 row 2), counted by running it;
* at width 256, modules the paper does not describe but an FPN implementation might keep (FPN's
  3x3 output convolutions, the 1x1 laterals next to MHCCA), counted analytically.

The paper's "GFLOPs" are multiply-accumulates (MACs): its ResNet-101 figure, 30.4 at 448, is
torchvision's 7.80 G at 224 (also MACs) times 4 (31.2). We count with
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC for matmuls and convolutions) on
the ``meta`` device (shapes only, no arithmetic) and print GMACs. Elementwise work (softmax,
interpolation, L-CAM fusion, BatchNorm) is not counted, as in the usual MAC counters. MHCCA
folds Q and O into its per-head matrices where that is cheaper; ``Q/O never folded`` rows count
Eq. 4 evaluated literally (same function).

    PYTHONPATH=$PWD python benchmarks/complexity.py [--size 448] [--quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, get_taxonomy
from mdan_zoo.layers import MHCCA

PAPER_PARAMS_M, PAPER_GFLOPS = 48.79, 101.4
RESNET101_PAPER = (42.52, 30.4)
TOLERANCE_M = 0.1
TAXONOMIES = {"FI": "fi", "WEBEmo": "webemo", "Emotion6": "emotion6"}
C_LOW = {4: 1024, 3: 512, 2: 256}  # ResNet-101 channels of C4, C3, C2
SEMANTIC = (4, 3, 2)  # mapping (e): affective level 1, 2, 3 -> C4, C3, C2


def count(model: torch.nn.Module, size: int) -> tuple[float, float]:
    """(parameters in millions, GMACs) of one forward of a [1, 3, size, size] image."""
    model = model.to("meta").eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size, device="meta"))
    return params, counter.get_total_flops() / 2e9


def build(taxonomy: str, config: MDANConfig, *, fold: bool | None = None) -> MDAN:
    with torch.device("meta"):
        model = MDAN(get_taxonomy(taxonomy), config)
    for m in model.modules():
        if isinstance(m, MHCCA):
            m.fold = fold
    return model


def _extra_output_convs(width: int, levels: int, size: int) -> tuple[float, float]:
    """FPN's 3x3 output conv on F5 and on every used F level: (M params, GMACs)."""
    params = macs = 0.0
    for ls in (5, *SEMANTIC[:levels]):
        hw = (size // 2**ls) ** 2
        params += 9 * width * width + width
        macs += 9 * width * width * hw
    return params / 1e6, macs / 1e9


def _extra_laterals(width: int, levels: int, size: int) -> tuple[float, float]:
    """FPN's 1x1 lateral conv kept beside MHCCA on every used level: (M params, GMACs)."""
    params = macs = 0.0
    for ls in SEMANTIC[:levels]:
        hw = (size // 2**ls) ** 2
        params += C_LOW[ls] * width + width
        macs += C_LOW[ls] * width * hw
    return params / 1e6, macs / 1e9


WIDTHS = (256, 512, 1024, 2048)


def candidates(size: int) -> list[tuple[str, str, float, float]]:
    """(dataset, structure, M params, GMACs) of every candidate."""
    rows: list[tuple[str, str, float, float]] = []
    for dataset, tax in TAXONOMIES.items():
        levels = get_taxonomy(tax).num_levels
        for width in WIDTHS:
            for kv in (False, True):
                label = f"width {width}" + (", + K/V 1x1 (Table 5 row 2)" if kv else "")
                cfg = MDANConfig(fpn_channels=width, mhcca_kv_proj=kv)
                rows.append((dataset, label, *count(build(tax, cfg), size)))
        base_p, base_m = count(build(tax, MDANConfig(fpn_channels=256)), size)
        kv_p, kv_m = count(build(tax, MDANConfig(fpn_channels=256, mhcca_kv_proj=True)), size)
        extras: list[tuple[str, Callable[[int, int, int], tuple[float, float]]]] = [
            ("3x3 output convs (FPN [8])", _extra_output_convs),
            ("1x1 laterals kept beside MHCCA", _extra_laterals),
        ]
        total_p, total_m = kv_p, kv_m
        for name, fn in extras:
            p, m = fn(256, levels, size)
            rows.append((dataset, f"width 256, + {name} (analytic)", base_p + p, base_m + m))
            total_p, total_m = total_p + p, total_m + m
        rows.append(
            (
                dataset,
                "width 256, + K/V 1x1 + 3x3 output convs + kept laterals (analytic)",
                total_p,
                total_m,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--quick", action="store_true", help="FI only, width 256, 64 px")
    parser.add_argument("--threads", type=int, default=0, help="unused: counts, not times")
    args = parser.parse_args()
    if args.quick:
        global TAXONOMIES, WIDTHS
        TAXONOMIES, WIDTHS, args.size = {"FI": "fi"}, (256,), 64
    size = args.size
    print(f"input {size}x{size}, batch 1; GMACs = FlopCounterMode FLOPs / 2")

    print(f"\n## Which structure is Table 1's MDAN ({PAPER_PARAMS_M}M params, {PAPER_GFLOPS} G)?\n")
    print("| dataset | structure | params (M) | minus 48.79M | GMACs |")
    print("|---|---|---:|---:|---:|")
    rows = [] if args.quick else candidates(size)  # quick: the built-in configs only
    for dataset, label, params, gmacs in rows:
        diff = params - PAPER_PARAMS_M
        mark = " **match**" if abs(diff) <= TOLERANCE_M else ""
        print(f"| {dataset} | {label} | {params:.2f} | {diff:+.2f}{mark} | {gmacs:.1f} |")
    matches = [(d, lb) for d, lb, p, _ in rows if abs(p - PAPER_PARAMS_M) <= TOLERANCE_M]
    print(
        f"\nwithin {TOLERANCE_M}M of 48.79M: "
        + ("; ".join(f"{d}: {lb}" for d, lb in matches) or "none")
    )

    print("\n## The built-in configs\n")
    print("| model | params (M) | GMACs | GFLOPs (2 x MACs) |")
    print("|---|---:|---:|---:|")
    table: list[tuple[str, float, float]] = []
    for variant, cfg in (("paper size", MDANConfig()), ("lite", MDANConfig.lite())):
        for dataset, tax in TAXONOMIES.items():
            k = "/".join(map(str, get_taxonomy(tax).num_classes))
            label = f"MDAN {dataset} ({k}), {variant}, width {cfg.fpn_channels}"
            table.append((label, *count(build(tax, cfg), size)))
            table.append((f"{label}, Q/O never folded", *count(build(tax, cfg, fold=False), size)))
    with torch.device("meta"):
        resnet = torchvision.models.resnet101()
        resnet8 = torchvision.models.resnet101(num_classes=8)
    table.append(("ResNet-101 (torchvision, 1000-class fc)", *count(resnet, size)))
    table.append(("ResNet-101 with an 8-class fc (FI-8)", *count(resnet8, size)))
    table.append(
        (
            "ResNet-101 trunk alone (MDAN's backbone, no fc)",
            *count(build("fi", MDANConfig()).backbone, size),
        )
    )
    for label, params, gmacs in table:
        print(f"| {label} | {params:.2f} | {gmacs:.1f} | {2 * gmacs:.1f} |")
    print(f"| MDAN (paper, Table 1) | {PAPER_PARAMS_M:.2f} | {PAPER_GFLOPS:.1f} | - |")
    print(
        f"| ResNet-101 (paper, Table 1) | {RESNET101_PAPER[0]:.2f} | {RESNET101_PAPER[1]:.1f} | - |"
    )


if __name__ == "__main__":
    main()
