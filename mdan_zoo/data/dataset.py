"""One dataset type for every adapter: image files with a fine label of a :class:`Taxonomy`.

Adapters (:mod:`mdan_zoo.data.adapters`) turn a public layout into a :class:`Listing` (relative
paths and fine labels, no file access beyond listing); :func:`check_files` then finds missing
or unreadable files and either stops with one error listing them or skips and counts them; an
:class:`ImageDataset` is what the trainer and the evaluation read. Images are decoded with
:func:`mdan_zoo.imageio.read_image`, the reader prediction uses, so both agree on what a valid
image is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import ImageDecodeError
from ..imageio import IMAGE_EXTENSIONS, ImageReadError, read_image
from ..taxonomy import Taxonomy
from .fashion_mnist import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CheckMode",
    "ImageDataset",
    "ImageDecodeError",
    "Listing",
    "OnMissing",
    "check_files",
]

logger = logging.getLogger(__name__)


OnMissing = Literal["error", "skip"]
CheckMode = Literal["exists", "header", "full"]
_CHUNK = 512  # files per thread task (one future per file costs more than a stat)
_SHOW = 10  # how many bad files an error lists before "... and N more"


@dataclass(frozen=True)
class Listing:
    """What an adapter found: samples as (path relative to ``root``, fine class index).

    Attributes:
        name: the adapter / dataset name (``"fi"``), recorded in split files.
        root: the folder the relative paths start from.
        taxonomy: the taxonomy whose finest level the indices point into.
        entries: (relative POSIX path, fine index) per sample, sorted by path.
        official: an official split of the release (WEBEmo's train25/test25): part name ->
            positions in ``entries``; ``None`` where the release has none.
        dropped: samples the adapter left out on purpose, reason -> count (Abstract's tied
            votes, IAPS pictures with several categories).
        annotations: extra per-sample data of the release keyed by relative path (Emotion6's
            valence, arousal and emotion probabilities).
    """

    name: str
    root: Path
    taxonomy: Taxonomy
    entries: tuple[tuple[str, int], ...]
    official: Mapping[str, tuple[int, ...]] | None = None
    dropped: Mapping[str, int] = field(default_factory=dict)
    annotations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def label_names(self) -> list[str]:
        """Fine label name of every entry (what the content hash and stratification use)."""
        fine = self.taxonomy.labels[-1]
        return [fine[i] for _, i in self.entries]

    def path(self, rel: str) -> str:
        """Path of an entry (a string: pathlib is slow over 270k WEBEmo files)."""
        return os.path.join(self.root, rel)


def _probe(path: str, mode: CheckMode) -> str | None:
    """Reason ``path`` cannot be used, or None. ``header`` opens the file without decoding
    the pixels (cheap: a few bytes); ``full`` decodes it with :func:`read_image`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"cannot stat ({err.strerror or err})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if mode == "exists":
        return None
    if st.st_size == 0:
        return "the file is empty (0 bytes)"
    if mode == "full":
        try:
            read_image(path)
        except ImageReadError as err:
            return err.reason
        return None
    try:
        with open(path, "rb") as fh, Image.open(fh) as img:
            if img.width < 1 or img.height < 1:
                return "image has no pixels"
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and img.width * img.height > limit:
                return (
                    f"decompression bomb guard: {img.width * img.height:,} pixels is more than "
                    f"Pillow's limit of {limit:,}"
                )
            complete = _ends_as_it_should(fh, img.format, st.st_size)
    except UnidentifiedImageError:
        return "not an image file Pillow can identify"
    except Image.DecompressionBombError as err:
        return f"decompression bomb guard ({err})"
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt image header ({err})"
    if not complete:  # cut short, or only unusual: decoding tells
        try:
            read_image(path)
        except ImageReadError as err:
            return err.reason
    return None


def _ends_as_it_should(fh: Any, fmt: str | None, size: int) -> bool:
    """Whether the file ends the way its format ends (a few bytes read): a download cut
    short does not. Formats without such a marker pass."""
    if fmt == "JPEG":
        fh.seek(max(0, size - 2))
        return bool(fh.read(2) == b"\xff\xd9")
    if fmt == "PNG":
        fh.seek(max(0, size - 8))
        return bool(fh.read(8) == b"IEND\xaeB`\x82")
    if fmt == "GIF":
        fh.seek(max(0, size - 1))
        return bool(fh.read(1) == b";")
    if fmt in ("WEBP", "BMP"):  # the header states the file size
        fh.seek(4 if fmt == "WEBP" else 2)
        stated = int.from_bytes(fh.read(4), "little") + (8 if fmt == "WEBP" else 0)
        return stated <= size
    return True


def check_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    mode: CheckMode = "header",
    on_missing: OnMissing = "error",
    source: str = "the dataset",
    progress: bool = False,
    workers: int = 8,
) -> list[tuple[str, str]]:
    """Find missing or unreadable image files; return them as (path, reason).

    With ``on_missing="error"`` any bad file raises one :class:`DatasetError` that lists the
    first few and the count, and says how to fix it; with ``"skip"`` the caller drops them.
    ``mode``: ``exists`` (stat only), ``header`` (default: non-empty, identified by Pillow,
    within the decompression-bomb limit, and ending with its format's end marker; a file
    that does not is decoded to be sure), ``full`` (decode every image; slow on large sets).
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if mode not in ("exists", "header", "full"):
        raise ValueError(f"check must be 'exists', 'header' or 'full', got {mode!r}")
    from tqdm.auto import tqdm

    names = [os.fspath(p) for p in paths]
    chunks = [names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK)]
    reasons: list[str | None] = []
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(
            total=len(paths),
            desc=f"checking {source}",
            unit="file",
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        for chunk_reasons in pool.map(lambda c: [_probe(p, mode) for p in c], chunks):
            reasons += chunk_reasons
            bar.update(len(chunk_reasons))
    bad = [(p, r) for p, r in zip(names, reasons, strict=True) if r is not None]
    if bad and on_missing == "error":
        raise DatasetError(bad_files_message(bad, total=len(paths), source=source))
    return bad


def bad_files_message(bad: Sequence[tuple[str, str]], *, total: int, source: str) -> str:
    """The error text for missing / unreadable files: first few, count by reason, the fixes."""
    by_reason = Counter(r for _, r in bad)
    lines = [
        f"{len(bad)} of {total} image files of {source} are missing or unreadable "
        f"({', '.join(f'{n} {r}' for r, n in by_reason.most_common())}):"
    ]
    lines += [f"  {p}: {r}" for p, r in bad[:_SHOW]]
    if len(bad) > _SHOW:
        lines.append(f"  ... and {len(bad) - _SHOW} more")
    lines.append(
        "Fix: restore or re-download these files (or correct the root folder), or pass "
        "on_missing='skip' to leave them out; skipped files are "
        "counted and listed in dataset.skipped."
    )
    return "\n".join(lines)


class ImageDataset(Dataset):
    """Image files with fine labels of a taxonomy; ``dataset[i]`` is ``(image, fine_index)``.

    An image that fails to decode when it is read (it passed the up-front check, or changed
    since) stops with an :class:`ImageDecodeError` naming it under ``on_missing="error"``;
    under ``"skip"`` it is left out: the next readable sample of the list takes its place
    (so batches keep their size and an epoch reads the same images in every run, resumed or
    not), a warning names it, and :meth:`decode_failures` lists it, DataLoader workers
    included.

    Args:
        samples: (image path, fine class index) pairs; indices point into
            ``taxonomy.labels[-1]``.
        taxonomy: the label tree the indices belong to (checkpoints record it).
        transform: applied to the RGB PIL image (e.g. ``Preprocessing().train_transform()``).
        name: a short name for messages and reports.
        skipped: files left out by ``on_missing="skip"`` as (path, reason).
        dropped: samples the adapter left out on purpose, reason -> count.
        annotations: extra per-sample data keyed by path relative to the dataset root.
        on_missing: what an image that fails to decode when read does: ``"error"`` or
            ``"skip"`` (see above).
    """

    def __init__(
        self,
        samples: Iterable[tuple[str | os.PathLike[str], int]],
        taxonomy: Taxonomy,
        transform: Callable[[Image.Image], Any] | None = None,
        *,
        name: str = "custom",
        skipped: Sequence[tuple[str, str]] = (),
        dropped: Mapping[str, int] | None = None,
        annotations: Mapping[str, Mapping[str, Any]] | None = None,
        on_missing: OnMissing = "error",
    ) -> None:
        if on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        self.samples: list[tuple[str, int]] = [(str(p), int(t)) for p, t in samples]
        n = taxonomy.num_classes[-1]
        wrong = [(p, t) for p, t in self.samples if not 0 <= t < n]
        if wrong:
            raise DatasetError(
                f"{len(wrong)} samples of {name} have fine indices outside 0..{n - 1} of taxonomy "
                f"{taxonomy.name!r}, e.g. {wrong[:3]}: build the samples with "
                f"taxonomy.index(label, level=-1)"
            )
        self.taxonomy = taxonomy
        self.transform = transform
        self.name = name
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.dropped: dict[str, int] = dict(dropped or {})
        self.annotations: dict[str, Mapping[str, Any]] = dict(annotations or {})
        self.on_missing: OnMissing = on_missing
        # a byte per sample in shared memory: DataLoader workers (other processes) mark the
        # samples that failed to decode, and the main process reads the marks
        self._failed = torch.zeros(max(1, len(self.samples)), dtype=torch.uint8)
        with contextlib.suppress(RuntimeError):  # without shared memory, workers only log
            self._failed.share_memory_()
        self._warned: set[int] = set()  # per process: a worker warns once per file

    @property
    def targets(self) -> list[int]:
        """Fine class index of every sample."""
        return [t for _, t in self.samples]

    def level_targets(self, level: int | str) -> list[int]:
        """Class index of every sample at ``level`` (its ancestor at that level)."""
        depth = self.taxonomy.level_index(level)
        return [self.taxonomy.ancestor_indices(t)[depth] for _, t in self.samples]

    def class_counts(self, level: int | str = -1) -> dict[str, int]:
        """Samples per class name at ``level`` (default: finest), every class listed."""
        depth = self.taxonomy.level_index(level)
        counts = Counter(self.level_targets(depth))
        return {name: counts.get(i, 0) for i, name in enumerate(self.taxonomy.labels[depth])}

    def subset(self, indices: Sequence[int]) -> ImageDataset:
        """A dataset of the samples at ``indices`` (same taxonomy, transform and name)."""
        return ImageDataset(
            [self.samples[i] for i in indices],
            self.taxonomy,
            self.transform,
            name=self.name,
            skipped=self.skipped,
            dropped=self.dropped,
            annotations=self.annotations,
            on_missing=self.on_missing,
        )

    def decode_failures(self) -> list[tuple[str, str]]:
        """(path, reason) of the samples that failed to decode when read so far, in any
        process reading this dataset (DataLoader workers too)."""
        marked = torch.nonzero(self._failed[: len(self.samples)]).flatten().tolist()
        out = []
        for i in marked:
            try:
                read_image(self.samples[i][0])
                reason = "failed to decode when read (readable now)"
            except ImageReadError as err:
                reason = err.reason
            out.append((self.samples[i][0], reason))
        return out

    def image(self, i: int) -> Image.Image:
        """Sample ``i`` as an RGB PIL image (no transform); ImageReadError if unreadable."""
        return read_image(self.samples[i][0])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        n = len(self.samples)
        for j in (k % n for k in range(i, i + n)):
            try:
                img: Any = self.image(j)
            except ImageReadError as err:
                self._unreadable(j, err, instead_of=i)
                continue
            if self.transform is not None:
                img = self.transform(img)
            return img, self.samples[j][1]
        raise ImageDecodeError(
            f"{self.name}: none of the {n} images can be decoded (e.g. {self.samples[i][0]}); "
            "check the files with load_dataset(..., check='full')"
        )

    def _unreadable(self, j: int, err: ImageReadError, *, instead_of: int) -> None:
        self._failed[j] = 1
        if self.on_missing == "error":
            raise ImageDecodeError(
                f"cannot decode image {err.path} of {self.name}: {err.reason}. It "
                "passed the check made when the dataset was loaded (or changed since). Fix: "
                "replace or re-download it, find every such file up front with "
                "load_dataset(..., check='full'), or set on_missing='skip' to leave such files "
                "out (counted and logged)"
            )
        if j in self._warned:
            return
        self._warned.add(j)
        logger.warning(
            "%s: cannot decode %s (%s); left out (on_missing='skip'): the next readable "
            "image takes its place%s",
            self.name,
            err.path,
            err.reason,
            "" if j == instead_of else " (it stood in for another unreadable one)",
        )

    def __repr__(self) -> str:
        extra = f", skipped={len(self.skipped)}" if self.skipped else ""
        return (
            f"ImageDataset(name={self.name!r}, samples={len(self)}, "
            f"taxonomy={self.taxonomy.name!r}{extra})"
        )
