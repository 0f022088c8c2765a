"""Two gloo processes on 127.0.0.1 train to the same weights as one process.

Each process takes every second image of the same seeded permutation (DistributedSampler) with
half the global batch, and DDP averages the gradients, so the update is the same one on the same
images. BatchNorm is the one thing that differs (per-process batch statistics), and torch's
SyncBatchNorm needs GPUs, so this test runs with ``batchnorm=frozen`` (running statistics of the
start weights, affine parameters still trained). The remaining difference is the order of the
floating-point sums of the all-reduce: the stated tolerance is 1e-5 absolute on every weight
after 2 epochs (observed differences are around 1e-7).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import fashion_sets, load_weights, tiny_config

from mdan_zoo.train import train

TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str, sets: dict) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    cfg = tiny_config(Path(tmp), batchnorm="frozen", eval_test=False, output_dir=f"{tmp}/ddp")
    train(cfg, datasets=sets)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    sets = fashion_sets(train_per_class=6, val_per_class=2)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), sets), nprocs=2, join=True)
    single = train(
        tiny_config(
            tmp_path, batchnorm="frozen", eval_test=False, output_dir=str(tmp_path / "one")
        ),
        datasets=sets,
    )
    wa, wb = load_weights(tmp_path / "ddp"), load_weights(single.output_dir)
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    assert worst <= TOLERANCE, worst
    # and the runs really moved: the weights are far from the start
    moved = max(
        float((wa[k].float() - w0.float()).abs().max())
        for k, w0 in torch.load(tmp_path / "resnet18.pth", weights_only=True).items()
        if f"backbone.{k}" in wa and w0.is_floating_point()
    )
    assert moved > 100 * TOLERANCE, moved
    ddp_log = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(ddp_log) == 2
