"""One dataset type for every adapter: image files with a fine label of a :class:`Taxonomy`.

Adapters (:mod:`mdan_zoo.data.adapters`) turn a public layout into a :class:`Listing` (relative
paths and fine labels, no file access beyond listing); :func:`check_files` then finds missing
or unreadable files and either stops with one error listing them or skips and counts them; an
:class:`ImageDataset` is what the trainer and the evaluation read. Images are decoded with
:func:`mdan_zoo.imageio.read_image`, the reader prediction uses, so both agree on what a valid
image is.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..imageio import IMAGE_EXTENSIONS, ImageReadError, read_image
from ..taxonomy import Taxonomy
from .fashion_mnist import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "CheckMode",
    "ImageDataset",
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
        with Image.open(path) as img:
            if img.width < 1 or img.height < 1:
                return "image has no pixels"
    except UnidentifiedImageError:
        return "not an image file Pillow can identify"
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt image header ({err})"
    return None


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
    ``mode``: ``exists`` (stat only), ``header`` (default: non-empty and identified by
    Pillow), ``full`` (decode every image; slow on large sets).
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

    Args:
        samples: (image path, fine class index) pairs; indices point into
            ``taxonomy.labels[-1]``.
        taxonomy: the label tree the indices belong to (checkpoints record it).
        transform: applied to the RGB PIL image (e.g. ``Preprocessing().train_transform()``).
        name: a short name for messages and reports.
        skipped: files left out by ``on_missing="skip"`` as (path, reason).
        dropped: samples the adapter left out on purpose, reason -> count.
        annotations: extra per-sample data keyed by path relative to the dataset root.
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
    ) -> None:
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
        )

    def image(self, i: int) -> Image.Image:
        """Sample ``i`` as an RGB PIL image (no transform); ImageReadError if unreadable."""
        return read_image(self.samples[i][0])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img: Any = self.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.samples[i][1]

    def __repr__(self) -> str:
        extra = f", skipped={len(self.skipped)}" if self.skipped else ""
        return (
            f"ImageDataset(name={self.name!r}, samples={len(self)}, "
            f"taxonomy={self.taxonomy.name!r}{extra})"
        )
