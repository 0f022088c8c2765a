"""Forward-pass time of MDAN (ResNet-101) vs torchvision's plain ResNet-101, side by side, and
how close each comes to its arithmetic (MACs).

One process, CPU, eval mode under ``torch.inference_mode``; the models run interleaved
(A, B, C, A, B, C, ...) so that load from other processes hits all of them alike; we report the
median per model, the ratio MDAN / ResNet-101, and that ratio divided by the ratio of their
multiply-accumulates (counted with ``FlopCounterMode``, as ``benchmarks/complexity.py``):
``(MDAN time / ResNet-101 time) / (MDAN MACs / ResNet-101 MACs)``. 1.00 means MDAN's extra work
runs exactly as fast per MAC as ResNet-101's convolutions; above 1 is overhead (elementwise work,
copies, small matrix products). Both for wall-clock time and for the CPU time of this process
(``time.process_time``); on a shared machine the CPU time with ``--threads 1`` is the steadier
measure: it does not count the time other processes hold the cores.

Goal (issue 8): per-MAC ratio <= 1.10 for the paper-size ``mdan_fi()`` and ``mdan_webemo()``
at 448 px, batch 1. The lighter variant (``MDANConfig.lite()``) runs beside them.

    PYTHONPATH=$PWD python benchmarks/forward.py [--size 448] [--batches 1 8] [--repeats 7 5]
    PYTHONPATH=$PWD python benchmarks/forward.py --quick    # 64 px, paper size, batch 1

CPU time comes first (with ``OMP_WAIT_POLICY=PASSIVE``, set by ``benchmarks/_common.py``);
"ratio" is what a user pays (MDAN time / ResNet-101 time), "per MAC" that divided by the MACs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, get_taxonomy
from mdan_zoo.layers import MHCCA

GOAL = 1.10
BASE = "ResNet-101 (torchvision)"


def _time(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass."""
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - start, time.process_time() - cpu


def gmacs(model: torch.nn.Module, size: int) -> float:
    """Multiply-accumulates (G) of one forward of a [1, 3, size, size] image."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 2e9


def build_models(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    models: dict[str, torch.nn.Module] = {BASE: torchvision.models.resnet101()}
    variants = [("paper", MDANConfig())]
    if not args.no_lite:
        variants.append(("lite", MDANConfig.lite()))
    for variant, cfg in variants:
        for tax in ("fi", "webemo"):
            k = "/".join(map(str, get_taxonomy(tax).num_classes))
            models[f"MDAN {tax} {k}, {variant} ({cfg.fpn_channels})"] = MDAN(get_taxonomy(tax), cfg)
    if args.with_unfolded:
        literal = MDAN(get_taxonomy("webemo"), MDANConfig())
        for mod in literal.modules():
            if isinstance(mod, MHCCA):
                mod.fold = False
        models["MDAN webemo 2/6/25, paper, Q/O never folded"] = literal
    for m in models.values():
        m.eval()
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--repeats",
        type=_common.rounds_arg,
        nargs="+",
        default=[7, 5],
        help="timed rounds per batch size (at least 5)",
    )
    parser.add_argument("--quick", action="store_true", help="64 px, batch 1, no lite, 5 rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--no-lite", action="store_true", help="leave out MDANConfig.lite()")
    parser.add_argument(
        "--with-unfolded",
        action="store_true",
        help="also time WEBEmo MDAN with MHCCA's Q/O folding off (Eq. 4 evaluated literally)",
    )
    args = parser.parse_args()
    if args.quick:
        args.size, args.batches, args.repeats, args.no_lite = 64, [1], [5], True
    if len(args.repeats) != len(args.batches):
        parser.error("--repeats needs one value per --batches value")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = build_models(args)
    macs = {k: gmacs(m, args.size) for k, m in models.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {args.size}x{args.size}"
    )
    print(
        "| batch | model | GMACs/img | CPU s (median) | ratio | per MAC | wall s (median) | ratio "
        "| per MAC |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch, repeats in zip(args.batches, args.repeats, strict=True):
        x = torch.randn(batch, 3, args.size, args.size)
        for m in models.values():  # warm-up (allocator, oneDNN primitive cache)
            _time(m, x)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
        for _ in range(repeats):
            for name, m in models.items():
                times[name].append(_time(m, x))
        wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
        cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
        for name in models:
            mac_ratio = macs[name] / macs[BASE]
            w, c = wall[name] / wall[BASE], cpu[name] / cpu[BASE]
            print(
                f"| {batch} | {name} | {macs[name]:.1f} | {cpu[name]:.3f} | {c:.3f} "
                f"| {c / mac_ratio:.3f} | {wall[name]:.3f} | {w:.3f} | {w / mac_ratio:.3f} |",
                flush=True,
            )
    print(
        f"\nper MAC = (MDAN time / ResNet-101 time) / (MDAN MACs / ResNet-101 MACs); goal <= {GOAL}"
    )


if __name__ == "__main__":
    main()
