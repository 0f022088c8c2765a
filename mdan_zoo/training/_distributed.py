"""torchrun plumbing and seeding for the trainer: ranks, devices, the process group.

Plain ``torch.distributed``: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` come from torchrun's
environment; nccl on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError
from ._config import TrainConfig

__all__ = ["DistInfo", "epoch_seed", "seed_all", "set_bn_frozen", "setup_distributed"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    distributed: bool = False  # a process group runs (also with one process, when the caller
    # started it: the DDP and collective code paths then run as with many)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(config: TrainConfig) -> tuple[DistInfo, torch.device, bool]:
    """Read torchrun's environment; start the process group if it is not running yet."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if dist.is_initialized():  # the caller's process group: its own size and rank
        world, rank = dist.get_world_size(), dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if config.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    elif config.device == "cuda":
        device = torch.device(f"cuda:{local_rank}")
    else:
        device = torch.device(config.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={config.device} but CUDA is not available; use device=auto")
        torch.cuda.set_device(device)
    started = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        started = True
    if world > 1 and config.batchnorm == "sync" and device.type != "cuda":
        raise ConfigError(
            "batchnorm=sync needs GPUs (torch's SyncBatchNorm); on CPU use batchnorm=frozen"
        )
    info = DistInfo(
        rank=rank,
        world=world,
        local_rank=local_rank,
        distributed=world > 1 or dist.is_initialized(),
    )
    return info, device, started


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**31)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_bn_frozen(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
