"""Predicting with many processes: ``torchrun ... -m mdan_zoo predict ... --output FILE``.

Every rank walks the same inputs and keeps every ``world``-th one (input ``i`` goes to rank
``i % world``), predicts them and appends its records to its own part,
``FILE.part<rank>-of-<world>``. When all ranks are done, rank 0 merges the parts into ``FILE`` in
input order (:func:`~mdan_zoo.predict_output.merge_outputs`) and removes them. The process
group is plain ``torch.distributed`` from torchrun's environment: nccl on GPUs, gloo on CPUs,
plus a gloo group for the small messages (counts, barriers), so they never touch a GPU.
If a rank dies, torchrun stops the others and names it; the parts stay, and ``--resume``
(with any number of processes, one included) carries on from them.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .predict_output import PART_SUFFIX

__all__ = ["Shard", "existing_parts", "part_path", "shard_from_env"]

log = logging.getLogger(__name__)


@dataclass
class Shard:
    """This process's place in a torchrun job (``world == 1``: a plain single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None  # the gloo group for counts and barriers, once started
    started: bool = False

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def mine(self, index: int) -> bool:
        """Whether input number ``index`` is this rank's."""
        return index % self.world == self.rank

    def device(self, device: str | None) -> str | None:
        """``--device cuda`` means this rank's GPU (``cuda:LOCAL_RANK``)."""
        if self.sharded and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def start(self, device: str | None) -> None:
        """Join the process group (nccl when this rank runs on a GPU, gloo otherwise)."""
        if not self.sharded or self.started:
            return
        on_gpu = device is not None and torch.device(device).type == "cuda"
        if on_gpu:
            torch.cuda.set_device(torch.device(device or "cuda"))
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if on_gpu else "gloo", timeout=datetime.timedelta(hours=2)
            )
            self.started = True
        self.group = dist.new_group(backend="gloo") if on_gpu else dist.group.WORLD

    def barrier(self) -> None:
        if self.sharded:
            dist.barrier(group=self.group)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (``[value]`` when not sharded)."""
        if not self.sharded:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value, group=self.group)
        return out

    def stop(self) -> None:
        if self.started and dist.is_initialized():
            dist.destroy_process_group()
            self.started = False


def shard_from_env() -> Shard:
    """The rank and world size torchrun set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    return Shard(rank=rank, world=world, local_rank=local)


def part_path(output: Path, rank: int, world: int) -> Path:
    """Where rank ``rank`` of ``world`` writes its records: ``FILE.part<rank>-of-<world>``."""
    return output.with_name(f"{output.name}.part{rank}-of-{world}")


def existing_parts(output: Path) -> list[Path]:
    """Parts of ``output`` left by a sharded run (any number of ranks), sorted."""
    if not output.parent.is_dir():
        return []
    prefix = output.name
    found = []
    with os.scandir(output.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and PART_SUFFIX.fullmatch(entry.name[len(prefix) :]):
                found.append(output.parent / entry.name)
    return sorted(found, key=lambda p: tuple(int(g) for g in PART_SUFFIX.findall(p.name)[0][::-1]))
