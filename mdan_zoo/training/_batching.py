"""Which training images each process sees in each optimizer step of an epoch.

Every training image is used exactly once per epoch (the small sets have ~164 training images
per fold; dropping the last partial batch would skip ~36 of them every epoch):

* the images are shuffled by one permutation drawn from ``(seed, epoch)`` (the permutation
  torch's ``DistributedSampler`` draws), cut into steps of ``batch_size`` images (global, all
  processes together), and the remainder forms a last, smaller step, which is what a plain
  ``DataLoader(shuffle=True)`` does;
* except when that remainder would leave a process fewer than 2 images: BatchNorm cannot
  normalise a batch of one (and with ``batchnorm=train`` a step of a handful of images gives
  noisy statistics), so the remainder is then folded into the step before, which grows by at
  most ``2 * processes - 1`` images;
* within a step each process takes every ``world``-th image (as ``DistributedSampler`` does)
  and runs its share in ``ceil(share / micro_batch_size)`` near-equal micro-batches, but never
  in micro-batches of one image (so with ``micro_batch_size=2`` an odd share has one of 3;
  ``micro_batch_size=1`` is taken as asked);
* each micro-batch's mean loss is weighted by ``its images * world / step images``, so that
  after DDP's gradient averaging the step's loss is the mean over its images whatever the
  step's size or its split over processes and micro-batches: two processes compute the same
  update as one.

The plan depends on nothing but ``(seed, epoch)`` and the sizes, so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

from ..config import ConfigError

__all__ = ["EpochBatches", "SeededSamples", "Step", "plan_epoch", "sample_seed"]

MIN_PER_PROCESS = 2
"""Fewest images a process gets in a step (BatchNorm needs two to normalise)."""


@dataclass(frozen=True)
class Step:
    """One optimizer step as seen by one process.

    Attributes:
        size: images in the step, all processes together.
        micro: this process's micro-batches, as dataset indices.
    """

    size: int
    micro: tuple[tuple[int, ...], ...]

    def weight(self, images: int, world: int) -> float:
        """Factor on a micro-batch's mean loss that makes the step's loss the mean over its
        images after DDP averages the gradients over ``world`` processes."""
        return images * world / self.size


def _split(items: list[int], pieces: int) -> tuple[tuple[int, ...], ...]:
    """``items`` in ``pieces`` consecutive parts whose sizes differ by at most one."""
    base, extra = divmod(len(items), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + base + (1 if i < extra else 0)
        out.append(tuple(items[start:end]))
        start = end
    return tuple(out)


def plan_epoch(
    num_images: int,
    *,
    batch_size: int,
    world: int,
    rank: int,
    micro_batch_size: int,
    seed: int,
    epoch: int,
) -> list[Step]:
    """The steps of one epoch for process ``rank`` of ``world`` (see the module docstring)."""
    need = MIN_PER_PROCESS * world
    if num_images < need:
        raise ConfigError(
            f"the training split has {num_images} images: each of the {world} processes needs "
            f"at least {MIN_PER_PROCESS} per step (BatchNorm), so at least {need} are needed"
        )
    gen = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(num_images, generator=gen).tolist()
    bounds = list(range(0, num_images, batch_size)) + [num_images]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < need:
        del bounds[-2]  # fold a remainder too small for BatchNorm into the step before
    steps = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        share = order[start:end][rank::world]
        pieces = math.ceil(len(share) / micro_batch_size)
        if micro_batch_size >= MIN_PER_PROCESS:
            pieces = min(pieces, len(share) // MIN_PER_PROCESS)
        steps.append(Step(size=end - start, micro=_split(share, pieces)))
    return steps


class EpochBatches(Sampler[list[int]]):
    """The micro-batches of :func:`plan_epoch` as a ``DataLoader`` batch sampler; ``steps``
    says which consecutive micro-batches make an optimizer step."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in self.steps:
            for micro in step.micro:
                yield list(micro)

    def __len__(self) -> int:
        return sum(len(s.micro) for s in self.steps)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training image's augmentation in one epoch (a 63-bit mix)."""
    x = seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB
    x &= (1 << 64) - 1
    x ^= x >> 31
    return x & ((1 << 63) - 1)


class SeededSamples(Dataset):  # type: ignore[type-arg]
    """``dataset`` whose samples draw their random augmentation (flips, crops) from torch's
    CPU generator seeded by :func:`sample_seed` of ``(seed, epoch, index)``, restored after.

    DataLoader workers each get their own generator, seeded per worker, so without this an
    image's flip depended on which worker read it and a run's weights on ``workers`` (and on
    the CPUs, which cap it). Now it depends on the seed, the epoch and the image only: the
    number of workers and of processes never changes a run.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int) -> None:  # type: ignore[type-arg]
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> object:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, index))
            return self.dataset[index]
