"""Reading and transforming images for predict, in DataLoader worker processes while the model runs.

The inputs arrive as a stream of ``(index, name, item)`` (a folder walk, a generator); they are
cut into batches in the main process and handed to a ``torch.utils.data.DataLoader`` as its
``batch_sampler``, so the loader pulls them lazily (``prefetch_factor`` batches per worker
ahead) and returns batches in input order. Each worker decodes (``read_image``) and transforms
its batch and stacks the good images into one tensor (pinned on GPU). A file that cannot be
read, or that runs out of memory while it is decoded, becomes an error for that file only.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..imageio import ImageReadError, read_image, to_pil_image
from ._options import PredictOptions

__all__ = ["LoadedBatch", "batch_loader", "default_workers", "load_image"]

log = logging.getLogger(__name__)

Entry = tuple[int, str, Any]  # (input index, source name, path / image / array / tensor / error)


def default_workers(device: str | torch.device | None = None) -> int:
    """Decoding worker processes for ``workers=None``: the cores this process may use (divided
    among torchrun's local ranks) minus one for the main process; at most 8 on a GPU (one core
    decodes 30-130 photos/s, a GPU runs MDAN at hundreds to thousands), 1 on a CPU (the model
    needs the cores and is the bottleneck there), 0 on a single core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    spare = max(1, cores // ranks) - 1
    if spare < 1:
        return 0
    if torch.device(device or "cpu").type == "cuda":
        return min(8, spare)
    return 1


def load_image(name: str, item: Any, opts: PredictOptions) -> Any:
    """An input item -> an upright RGB PIL image, or :class:`ImageReadError`."""
    if isinstance(item, ImageReadError):
        raise item
    if isinstance(item, Path):
        return read_image(item, allow_truncated=opts.allow_truncated, max_pixels=opts.max_pixels)
    return to_pil_image(item, name=name)


@dataclass
class LoadedBatch:
    """One batch as the model gets it.

    Attributes:
        entries: ``(index, name, error)`` of every input of the batch, in order; ``error`` is
            None for the images in ``x``.
        x: the transformed good images ``[n_good, 3, S, S]`` (None when all failed).
        photos: the decoded good images (only when attention maps are wanted).
    """

    entries: list[tuple[int, str, str | None]]
    x: torch.Tensor | None
    photos: list[Any]

    def pin_memory(self) -> LoadedBatch:  # called by the DataLoader's pinning thread
        x = self.x.pin_memory() if self.x is not None else None
        return LoadedBatch(self.entries, x, self.photos)


class _Decode(Dataset):  # type: ignore[type-arg]
    """A 'dataset' whose indices are the inputs themselves: ``dataset[entries]`` decodes them."""

    def __init__(self, transform: Callable[[Any], torch.Tensor], opts: PredictOptions) -> None:
        self.transform = transform
        self.opts = opts
        self.keep_photos = opts.with_maps

    def __len__(self) -> int:  # pragma: no cover - never sized: the stream has no length
        raise TypeError("a stream of inputs has no length")

    def __getitem__(self, entry: Entry) -> tuple[int, str, Any, Any]:
        index, name, item = entry
        try:
            photo = load_image(name, item, self.opts)
            return index, name, self.transform(photo), photo if self.keep_photos else None
        except ImageReadError as err:
            reason = err.reason
        except MemoryError:
            reason = (
                "out of memory while reading or resizing this image (too many pixels for this "
                "machine); lower --max-pixels, or shrink the file"
            )
        except Exception as err:  # noqa: BLE001 - one odd file must not stop a million others
            log.debug("cannot transform %s", name, exc_info=True)
            reason = f"cannot transform the image ({type(err).__name__}: {err})"
        log.debug("skipping %s: %s", name, reason)
        return index, name, reason, None

    def __getitems__(self, entries: list[Entry]) -> list[tuple[int, str, Any, Any]]:
        return [self[e] for e in entries]


def _collate(rows: list[tuple[int, str, Any, Any]]) -> LoadedBatch:
    good = [r[2] for r in rows if isinstance(r[2], torch.Tensor)]
    return LoadedBatch(
        entries=[(i, n, None if isinstance(v, torch.Tensor) else v) for i, n, v, _ in rows],
        x=torch.stack(good) if good else None,
        photos=[r[3] for r in rows if isinstance(r[2], torch.Tensor)],
    )


def _chunks(entries: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    while chunk := list(itertools.islice(entries, size)):
        yield chunk


def batch_loader(
    entries: Iterator[Entry],
    transform: Callable[[Any], torch.Tensor],
    opts: PredictOptions,
    *,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[LoadedBatch]:
    """Batches of decoded, transformed inputs, in input order, read by ``workers`` processes
    (0: in this process, between forward passes); ``opts`` say the batch size, how images
    are read and whether the decoded photos are kept (for attention maps)."""
    batch_size = opts.batch_size
    dataset = _Decode(transform, opts)
    loader = DataLoader(
        dataset,
        batch_sampler=_chunks(entries, batch_size),  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
    )
    return iter(loader)
