"""Peak training memory with and without gradient checkpointing, side by side, at 448 px.

Each variant runs one training step (forward, Eq. 3 loss, backward) of the paper-size network in
a fresh process, at two batch sizes; the growth of the peak resident memory over what the built
model already held (``ru_maxrss`` after the step minus the resident size before it) is measured
at each, and the slope between them is the training memory per image (constant costs, such as
thread pools and the allocator's first pages, cancel). The script prints each variant's slope,
its ratio to the step without checkpointing, and the step time. Variants: nothing checkpointed,
the top-down branch only, the trunk only, both (``model.set_grad_checkpointing(...)``). Goal
(issue 20): checkpointing lowers the training memory per image.

    PYTHONPATH=$PWD python benchmarks/grad_checkpointing.py [--model mdan_fi] [--batches 1,3]
        [--size 448] [--quick]

``--quick`` runs ResNet-18 at 224 px (seconds: for CI, so the script cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = {  # name -> (backbone, top_down)
    "none": (False, False),
    "top-down branch": (False, True),
    "trunk": (True, False),
    "trunk + top-down": (True, True),
}

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[6]))
from mdan_zoo import create_model
name, backbone, size, batch, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model = create_model(name, backbone=backbone or None).train()
model.set_grad_checkpointing(backbone=flags[0] == "1", top_down=flags[1] == "1")
x = torch.randn(batch, 3, size, size)
y = torch.randint(0, model.num_classes[-1], (batch,))
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
before = rss()
start = time.perf_counter()
model.loss(model(x), y).backward()
took = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"grown": peak - before, "seconds": took}))
"""


def _measure(name: str, backbone: str, size: int, batch: int, flags: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    argv = [sys.executable, "-c", CHILD, name, backbone, str(size), str(batch), flags, str(threads)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} {flags} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mdan_fi", help="zoo factory (mdan_fi)")
    parser.add_argument("--batches", default="1,3", help="the two batch sizes (1,3)")
    parser.add_argument("--size", type=int, default=448, help="input side in pixels (448)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process (2)")
    parser.add_argument("--quick", action="store_true", help="ResNet-18 at 224 px (seconds)")
    args = parser.parse_args()
    small, large = (int(b) for b in args.batches.split(","))
    backbone, size = ("resnet18", 224) if args.quick else ("", args.size)
    rows = {}
    for variant, (trunk, top) in VARIANTS.items():
        flags = f"{int(trunk)}{int(top)}"
        runs = [
            _measure(args.model, backbone, size, b, flags, args.threads) for b in (small, large)
        ]
        per_image = (runs[1]["grown"] - runs[0]["grown"]) / (large - small)
        rows[variant] = (per_image, runs[1]["seconds"] / large)
    base_mem, base_time = rows["none"]
    print(
        f"# {args.model} ({backbone or 'paper size'}), {size} px, training memory per image = "
        f"slope of the peak-memory growth between batch {small} and {large} (one step per fresh "
        f"process); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print("\n| checkpointed | MiB per image | vs none | step time per image (s) | vs none |")
    print("|---|---:|---:|---:|---:|")
    for variant, (mem, took) in rows.items():
        print(
            f"| {variant} | {mem / 2**20:.0f} | {mem / base_mem:.2f}x | {took:.2f} | "
            f"{took / base_time:.2f}x |"
        )


if __name__ == "__main__":
    main()
