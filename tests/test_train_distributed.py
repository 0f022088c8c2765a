"""Two gloo processes on 127.0.0.1 train to the same weights as one process.

Each process takes every second image of the same seeded permutation (DistributedSampler) with
half the global batch, and DDP averages the gradients, so the update is the same one on the same
images. BatchNorm is the one thing that differs (per-process batch statistics), and torch's
SyncBatchNorm needs GPUs, so this test runs with ``batchnorm=frozen`` (running statistics of the
start weights, affine parameters still trained). The remaining difference is the order of the
floating-point sums of the all-reduce: the stated tolerance is 1e-5 absolute on every weight
after 2 epochs of 2 steps (observed differences are around 1e-7).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import fashion_sets, load_weights, tiny_config

from mdan_zoo.training._trainer import train

TOLERANCE = 1e-5
# 2 epochs of 2 steps each: crosses an epoch boundary (set_epoch, validation, checkpoint).
# Longer runs drift apart chaotically from float rounding alone: L-CAM picks children by an
# argmax and min-max scales its maps, so 1e-7 differences grow to ~1e-4 in 10 steps even
# between two single-process runs with 1 and 2 threads.
COMMON = {"batchnorm": "frozen", "eval_test": False, "max_steps_per_epoch": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str, sets: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    train(tiny_config(Path(tmp), output_dir=f"{tmp}/{out}", **COMMON), datasets=sets)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """Both runs go through the same spawned-process path; only WORLD_SIZE differs."""
    sets = fashion_sets(train_per_class=6, val_per_class=2)
    tiny_config(tmp_path)  # writes the start weights once, before the processes read them
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), sets, "ddp"), nprocs=2, join=True)
    mp.spawn(_worker, args=(1, _free_port(), str(tmp_path), sets, "one"), nprocs=1, join=True)
    wa, wb = load_weights(tmp_path / "ddp"), load_weights(tmp_path / "one")
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    logs = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("ddp", "one")]
    top = sorted(
        ((float((wa[k].float() - wb[k].float()).abs().max()), k) for k in wa), reverse=True
    )[:4]
    losses = [[json.loads(x)["train_loss"] for x in log.splitlines()] for log in logs]
    assert worst <= TOLERANCE, (top, losses)
    # and the runs really moved: the weights are far from the start
    moved = max(
        float((wa[f"backbone.{k}"].float() - w0.float()).abs().max())
        for k, w0 in torch.load(tmp_path / "resnet18.pth", weights_only=True).items()
        if f"backbone.{k}" in wa and w0.is_floating_point()
    )
    assert moved > 100 * TOLERANCE, moved
    ddp_log = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(ddp_log) == 2
