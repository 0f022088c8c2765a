"""The trainer's input pipeline: DataLoader settings chosen from the machine, and the numbers
that say whether the input starves the model.

Every epoch the trainer measures how long each step waited for its batch (the time blocked in
the loader's ``next``) and how long the loader's workers spent preparing the batches (summed
over workers, from inside them), and logs both as rates: the images/s the loader can deliver
and the images/s the model took when it did not wait. When waiting is more than
:data:`STARVED_SHARE` of the epoch, a warning names the fixes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, get_worker_info

from .._hints import docs_url

__all__ = [
    "STARVED_SHARE",
    "TIMING_KEYS",
    "EpochInput",
    "TimedDataset",
    "loader_options",
    "starvation_warning",
]

logger = logging.getLogger(__name__)

STARVED_SHARE = 0.2  # warn when the steps waited for data more than this share of the epoch
# the keys of an epoch's row (metrics.jsonl, TrainResult.history) that measure time: they differ
# between two runs of one config (a resumed run and an uninterrupted one agree on the others)
TIMING_KEYS = frozenset(
    {
        "train_seconds",
        "train_images_per_s",
        "data_wait_s",
        "data_wait_share",
        "first_batch_s",
        "loader_images_per_s",
        "loader_images_per_s_per_worker",
        "model_images_per_s",
    }
)
_MAX_SLOTS = 256  # worker slots in the shared timing tensor (DataLoader workers per process)
_PREFETCH = 2  # torch's default prefetch_factor
_RAM_SHARE = 0.25  # in-flight batches may take at most this share of the available memory


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of physical memory available now (Linux), None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def loader_options(
    *,
    workers: int,
    device: torch.device,
    batch_bytes: int,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> dict[str, Any]:
    """DataLoader keyword arguments for the trainer, the unset ones chosen from the machine.

    * ``pin_memory``: on when training on CUDA (page-locked batches copy to the GPU
      asynchronously, overlapping the step), off on CPUs (nothing to copy);
    * ``prefetch_factor`` (batches each worker keeps ready): torch's 2, lowered to 1 when
      ``workers x 2`` batches of ``batch_bytes`` would take more than a quarter of the memory
      available now;
    * ``persistent_workers``: off. The trainer builds one loader per epoch so that the epoch's
      order and augmentations are seeded from ``(seed, epoch, rank)`` and a resumed run repeats
      an uninterrupted one; persistent workers would carry their random state from epoch to
      epoch. What they would save is the workers' start-up, once per epoch, which the
      trainer measures and logs (``first_batch_s``).
    """
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": device.type == "cuda" if pin_memory is None else pin_memory,
        "persistent_workers": False,
    }
    if workers > 0:
        if prefetch_factor is None:
            prefetch_factor = _PREFETCH
            free = available_memory()
            if free is not None and workers * _PREFETCH * batch_bytes > _RAM_SHARE * free:
                prefetch_factor = 1
        options["prefetch_factor"] = prefetch_factor
    return options


class TimedDataset(Dataset):
    """``dataset`` with the seconds each DataLoader worker spends in ``__getitem__`` added up
    in shared memory (``busy``: one slot per worker; the main process uses slot 0 when
    ``workers=0``), so the main process knows the loader's own rate."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        # row 0: busy seconds, row 1: samples prepared, one column per worker
        self.busy = torch.zeros(2, _MAX_SLOTS, dtype=torch.float64)
        with contextlib.suppress(RuntimeError):  # without shared memory: no loader rate
            self.busy.share_memory_()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        start = time.perf_counter()
        try:
            return self.dataset[i]
        finally:
            info = get_worker_info()
            slot = 0 if info is None else info.id % _MAX_SLOTS
            self.busy[0, slot] += time.perf_counter() - start
            self.busy[1, slot] += 1

    def reset(self) -> None:
        self.busy.zero_()

    def busy_seconds(self) -> float:
        """Seconds spent in ``__getitem__`` since :meth:`reset`, summed over workers."""
        return float(self.busy[0].sum())

    def prepared(self) -> int:
        """Samples prepared since :meth:`reset` (prefetched ones included)."""
        return int(self.busy[1].sum())


@dataclass
class EpochInput:
    """What one epoch's input cost: filled in by the trainer's loop."""

    workers: int
    images: int = 0
    first_batch_s: float = 0.0  # the wait for the first batch (workers' start-up included)
    wait_s: float = 0.0  # the wait for every later batch
    busy_s: float = 0.0  # seconds the workers spent preparing samples, summed over workers
    prepared: int = 0  # samples the workers prepared in that time (prefetched ones included)
    epoch_s: float = 0.0

    def stats(self) -> dict[str, float]:
        """The epoch's row entries (``metrics.jsonl``)."""
        steps_s = self.epoch_s - self.first_batch_s
        share = self.wait_s / steps_s if steps_s > 0 else 0.0
        model_s = self.epoch_s - self.first_batch_s - self.wait_s
        per_worker = self.prepared / self.busy_s if self.busy_s > 0 else math.nan
        return {
            "data_wait_s": self.wait_s,
            "data_wait_share": share,
            "first_batch_s": self.first_batch_s,
            "loader_images_per_s": per_worker * max(1, self.workers),
            "loader_images_per_s_per_worker": per_worker,
            "model_images_per_s": self.images / model_s if model_s > 0 else math.nan,
        }


def starvation_warning(
    epoch: int, stats: dict[str, float], *, workers: int, cpus: int, decode: str
) -> str | None:
    """The warning text when the steps of ``epoch`` waited for data more than
    :data:`STARVED_SHARE` of the time, None otherwise."""
    share = stats["data_wait_share"]
    if not share > STARVED_SHARE:
        return None
    model, per_worker = stats["model_images_per_s"], stats["loader_images_per_s_per_worker"]
    need = math.ceil(model / per_worker) if per_worker > 0 and math.isfinite(model) else None
    more = (
        f"more workers (workers={workers} now; about {need} keep up with the model, one CPU "
        f"core each, and this process may use {cpus})"
        if need
        else f"more workers (workers={workers} now, one CPU core each; {cpus} here)"
    )
    who = f"{workers} workers, {per_worker:.0f} each" if workers else "in the main process"
    fixes = [more, "a smaller resize_size (decoding and resizing the photo dominate)"]
    fixes.append("files resized beforehand to resize_size on the shorter side")
    if decode != "gpu":
        fixes.append(
            f"decode=gpu (JPEG decoding and augmentation on the GPU, {docs_url('training.md')})"
        )
    return (
        f"epoch {epoch}: the input starved the model: the steps waited for data "
        f"{100 * share:.0f}% of the time ({stats['data_wait_s']:.1f} s). The loader delivers "
        f"about {stats['loader_images_per_s']:.0f} images/s ({who}), the model took "
        f"{model:.0f} images/s when fed. Fixes: " + "; ".join(fixes)
    )
