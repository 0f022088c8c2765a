"""Forward-pass time of MDAN (ResNet-101) vs torchvision's plain ResNet-101, side by side.

One process, CPU, eval mode under ``torch.inference_mode``; the models run interleaved
(A, B, C, A, B, C, ...) so that load from other processes hits all of them alike; we report the
median per model and the ratio MDAN / ResNet-101, both for wall-clock time and for the CPU time
of this process (``time.process_time``). On a shared machine the CPU time with ``--threads 1`` is
the steadier measure: it does not count the time other processes hold the cores.
Goal (issue 2): ratio <= 1.25.

    PYTHONPATH=$PWD python benchmarks/forward.py [--size 448] [--batches 1 8] [--repeats 7 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from mdan_zoo import MDAN, MDANConfig, get_taxonomy
from mdan_zoo.layers import MHCCA


def _time(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass."""
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--repeats", type=int, nargs="+", default=[7, 3], help="timed rounds per batch size"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--with-unfolded",
        action="store_true",
        help="also time WEBEmo MDAN with MHCCA's Q/O folding off (Eq. 4 evaluated literally)",
    )
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
    if args.with_unfolded:
        literal = MDAN(get_taxonomy("webemo"), MDANConfig())
        literal.load_state_dict(models["MDAN webemo 2/6/25"].state_dict())
        for mod in literal.modules():
            if isinstance(mod, MHCCA):
                mod.fold = False
        models["MDAN webemo 2/6/25, Q/O never folded"] = literal
    for m in models.values():
        m.eval()
    base = "ResNet-101 (torchvision)"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, input {args.size}x{args.size}"
    )
    print("| batch | model | wall s (median) | ratio | CPU s (median) | ratio |")
    print("|---:|---|---:|---:|---:|---:|")
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
            print(
                f"| {batch} | {name} | {wall[name]:.3f} | {wall[name] / wall[base]:.3f} "
                f"| {cpu[name]:.3f} | {cpu[name] / cpu[base]:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
