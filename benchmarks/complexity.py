"""Parameters and multiply-accumulates of MDAN vs the paper's Table 1, per built-in and per
mapping of Fig. 2.

Table 1 gives MDAN 48.79M parameters and 101.4 "GFLOPs" at 448 x 448 (ResNet-101: 42.52M,
30.4). The paper names the top-down width nowhere ("C5 is fed to a pointwise convolution and
its channel number is reduced", Sec. 3.1), nor how it counted. This script prints:

1. the structures the text allows (top-down width 256 / 512 / 1024 / 2048, MHCCA's K/V
   projections on or off, counted by running the network; at width 256 modules the paper does
   not describe but an FPN implementation might keep, counted analytically), to see which one
   Table 1's 48.79M is;
2. every built-in (the registry's entries) at the paper size: parameters, GMACs, GFLOPs
   (= 2 x MACs), with Eq. 4 in the order we run it and in its literal order (Q and O on every
   position); the lighter variant; ResNet-101 as torchvision builds it (stride on the 3x3 conv)
   and as He et al. [6] did (stride on the first 1x1 conv, "original style");
3. the six mappings of Fig. 2 at the paper size, as the full model and as Table 2's network
   (local learning only, no MHCCA, no L-CAM);
4. with ``--readings``: every combination of taxonomy, width, evaluation order, K/V, trunk
   style, input size and unit (MACs or 2 x MACs), and which of them give both 48.79M and 101.4.

We count with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC for matmuls and
convolutions) on the ``meta`` device (shapes only, no arithmetic). Elementwise work (softmax,
interpolation, L-CAM fusion, BatchNorm) is not counted, as in the usual MAC counters.

    PYTHONPATH=$PWD python benchmarks/complexity.py [--size 448] [--readings] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, get_taxonomy, get_weights, list_weights
from mdan_zoo.config import MAPPINGS
from mdan_zoo.layers import MHCCA

PAPER_PARAMS_M, PAPER_GFLOPS = 48.79, 101.4
RESNET101_PAPER = (42.52, 30.4)
TOLERANCE_M = 0.1
TOLERANCE_G = 0.01  # relative, for 101.4
TAXONOMIES = {"FI": "fi", "WEBEmo": "webemo", "Emotion6": "emotion6"}
C_LOW = {4: 1024, 3: 512, 2: 256}  # ResNet-101 channels of C4, C3, C2
SEMANTIC = (4, 3, 2)  # mapping (e): affective level 1, 2, 3 -> C4, C3, C2


def original_style(model: torch.nn.Module) -> torch.nn.Module:
    """Move every bottleneck's stride from its 3x3 conv (torchvision, "ResNet v1.5") to its
    first 1x1 conv, as He et al. [6] (and Caffe's released ResNets) built them."""
    for m in model.modules():
        if isinstance(m, torchvision.models.resnet.Bottleneck) and m.conv2.stride != (1, 1):
            m.conv1.stride, m.conv2.stride = m.conv2.stride, (1, 1)
    return model


def count(model: torch.nn.Module, size: int) -> tuple[float, float]:
    """(parameters in millions, GMACs) of one forward of a [1, 3, size, size] image."""
    model = model.to("meta").eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size, device="meta"))
    return params, counter.get_total_flops() / 2e9


def build(
    taxonomy: str, config: MDANConfig, *, fold: bool | None = None, original: bool = False
) -> MDAN:
    with torch.device("meta"):
        model = MDAN(get_taxonomy(taxonomy), config)
    for m in model.modules():
        if isinstance(m, MHCCA):
            m.fold = fold
    if original:
        original_style(model.backbone)
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


def builtins(size: int) -> list[tuple[str, float, float, float]]:
    """(label, M params, GMACs, GMACs with Eq. 4 literal) of every registry entry."""
    rows = []
    for name in list_weights():
        entry = get_weights(name)
        k = "/".join(map(str, entry.get_taxonomy().num_classes))
        params, gmacs = count(build(entry.taxonomy, entry.config), size)
        _, literal = count(build(entry.taxonomy, entry.config, fold=False), size)
        rows.append((f"{name} ({k})", params, gmacs, literal))
    return rows


def mappings(size: int) -> list[tuple[str, str, float, float, float, float]]:
    """(dataset, mapping, full M params, full GMACs, Table 2 M params, Table 2 GMACs)."""
    rows = []
    for dataset, tax in TAXONOMIES.items():
        levels = get_taxonomy(tax).num_levels
        for name, mapping in MAPPINGS.items():
            full = count(build(tax, MDANConfig(mapping=name)), size)
            table2 = MDANConfig(mapping=name, mhcca=False, lcam=False, alpha=1.0)
            rows.append(
                (dataset, mapping.describe(levels), *full, *count(build(tax, table2), size))
            )
    return rows


def readings() -> list[tuple[str, float, float]]:
    """(reading, M params, G) of every combination tried for Table 1's 48.79M / 101.4."""
    out = []
    grid = itertools.product(
        TAXONOMIES.items(), (256, 512, 1024, 2048), (None, False), (False, True), (False, True)
    )
    for (dataset, tax), width, fold, kv, original in grid:
        cfg = MDANConfig(fpn_channels=width, mhcca_kv_proj=kv)
        for size in (224, 448, 512):
            params, gmacs = count(build(tax, cfg, fold=fold, original=original), size)
            label = (
                f"{dataset}, width {width}, {'literal' if fold is False else 'folded'} Eq. 4, "
                f"K/V {'on' if kv else 'off'}, {'original' if original else 'torchvision'} "
                f"trunk, {size} px"
            )
            out.append((f"{label}, MACs", params, gmacs))
            out.append((f"{label}, 2 x MACs", params, 2 * gmacs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--readings", action="store_true", help="also run the full grid (slow)")
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

    print("\n## Every built-in at the paper size, and the baselines\n")
    print(
        "| model | params (M) | GMACs | GFLOPs (2 x MACs) | GMACs, Eq. 4 literal | GFLOPs, Eq. 4 literal |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, params, gmacs, literal in builtins(size):
        print(
            f"| {label} | {params:.2f} | {gmacs:.1f} | {2 * gmacs:.1f} | {literal:.1f} "
            f"| {2 * literal:.1f} |"
        )
    print("\n| model | params (M) | GMACs | GFLOPs (2 x MACs) |")
    print("|---|---:|---:|---:|")
    table: list[tuple[str, float, float]] = []
    for dataset, tax in TAXONOMIES.items():
        k = "/".join(map(str, get_taxonomy(tax).num_classes))
        table.append(
            (f"MDAN {dataset} ({k}), lite, width 256", *count(build(tax, MDANConfig.lite()), size))
        )
    with torch.device("meta"):
        resnet = torchvision.models.resnet101()
        resnet8 = torchvision.models.resnet101(num_classes=8)
        resnet8_orig = original_style(torchvision.models.resnet101(num_classes=8))
    table.append(("ResNet-101 (torchvision, 1000-class fc)", *count(resnet, size)))
    table.append(("ResNet-101 with an 8-class fc (FI-8), torchvision", *count(resnet8, size)))
    table.append(
        ("ResNet-101 with an 8-class fc, original style (He et al.)", *count(resnet8_orig, size))
    )
    table.append(
        (
            "ResNet-101 trunk alone (MDAN's backbone, no fc)",
            *count(build("fi", MDANConfig()).backbone, size),
        )
    )
    for label, params, gmacs in table:
        print(f"| {label} | {params:.2f} | {gmacs:.1f} | {2 * gmacs:.1f} |")
    print(f"| MDAN (paper, Table 1) | {PAPER_PARAMS_M:.2f} | - | {PAPER_GFLOPS:.1f} |")
    print(
        f"| ResNet-101 (paper, Table 1) | {RESNET101_PAPER[0]:.2f} | - | {RESNET101_PAPER[1]:.1f} |"
    )

    print("\n## The mappings of Fig. 2 at the paper size (width 1024)\n")
    print(
        "| dataset | mapping | full model: params (M) | GMACs | Table 2 network: params (M) | GMACs |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for dataset, label, fp, fm, tp, tm in mappings(size):
        print(f"| {dataset} | {label} | {fp:.2f} | {fm:.1f} | {tp:.2f} | {tm:.1f} |")

    if args.readings:
        grid = readings()
        hits = [
            r
            for r in grid
            if abs(r[1] - PAPER_PARAMS_M) <= TOLERANCE_M
            and abs(r[2] - PAPER_GFLOPS) <= TOLERANCE_G * PAPER_GFLOPS
        ]
        near = min(grid, key=lambda r: abs(r[2] - PAPER_GFLOPS) + 10 * abs(r[1] - PAPER_PARAMS_M))
        params_ok = [r for r in grid if abs(r[1] - PAPER_PARAMS_M) <= TOLERANCE_M]
        print(f"\n## {len(grid)} readings of Table 1\n")
        print(f"within {TOLERANCE_M}M of 48.79M and 1 % of 101.4: {len(hits)}")
        for label, p, g in hits:
            print(f"  {label}: {p:.2f}M, {g:.1f}")
        print(f"within {TOLERANCE_M}M of 48.79M: {len(params_ok)}; the nearest to 101.4:")
        for label, p, g in sorted(params_ok, key=lambda r: abs(r[2] - PAPER_GFLOPS))[:4]:
            print(f"  {label}: {p:.2f}M, {g:.1f}")
        print(f"closest overall: {near[0]}: {near[1]:.2f}M, {near[2]:.1f}")


if __name__ == "__main__":
    main()
