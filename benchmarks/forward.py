"""Forward-pass time of MDAN (ResNet-101) vs torchvision's plain ResNet-101, side by side.

One process, CPU, eval mode under ``torch.inference_mode``; the models run interleaved
(A, B, C, A, B, C, ...) so that load from other processes hits all of them alike; we report the
median per model and the ratio MDAN / ResNet-101. Goal (issue 2): ratio <= 1.25.

    PYTHONPATH=$PWD python benchmarks/forward.py [--size 448] [--batches 1 8] [--repeats 7 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from mdan_zoo import MDAN, MDANConfig, get_taxonomy


def _time(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--repeats", type=int, nargs="+", default=[7, 3], help="timed rounds per batch size"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if len(args.repeats) != len(args.batches):
        parser.error("--repeats needs one value per --batches value")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models: dict[str, torch.nn.Module] = {
        "ResNet-101 (torchvision)": torchvision.models.resnet101(),
        "MDAN webemo 2/6/25": MDAN(get_taxonomy("webemo"), MDANConfig()),
        "MDAN fi 2/8": MDAN(get_taxonomy("fi"), MDANConfig()),
    }
    for m in models.values():
        m.eval()
    base = "ResNet-101 (torchvision)"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {args.size}x{args.size}"
    )
    print("| batch | model | median s | ratio to ResNet-101 |")
    print("|---:|---|---:|---:|")
    for batch, repeats in zip(args.batches, args.repeats, strict=True):
        x = torch.randn(batch, 3, args.size, args.size)
        for m in models.values():  # warm-up (allocator, oneDNN primitive cache)
            _time(m, x)
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(repeats):
            for name, m in models.items():
                times[name].append(_time(m, x))
        med = {k: statistics.median(v) for k, v in times.items()}
        for name in models:
            print(f"| {batch} | {name} | {med[name]:.3f} | {med[name] / med[base]:.3f} |")


if __name__ == "__main__":
    main()
