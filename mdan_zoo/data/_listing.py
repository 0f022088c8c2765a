"""What every dataset adapter shares: finding the files, naming labels, building the Listing.

The adapters (:mod:`.adapters`, :mod:`.emoset`, :mod:`.findingemo`) differ in where labels come
from; the walk over image folders, the label matching through the taxonomy and the final checks
of a :class:`~.dataset.Listing` (empty classes, unknown labels, the fix to print) are here once.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._hints import docs_url
from ..taxonomy import Taxonomy
from .dataset import IMAGE_EXTENSIONS, Listing
from .fashion_mnist import DatasetError

logger = logging.getLogger(__name__)

SPLIT_DIR_NAME = "mdan_splits"
"""Folder under a dataset root where split files go by default; folder walkers skip it."""

SHOW = 10


# ---------------------------------------------------------------------------- helpers
def dataset_root(root: str | os.PathLike[str], what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"{what}: dataset folder {path} does not exist or is not a folder; pass the folder "
            f"that holds the dataset (see {docs_url('datasets.md')} for the layout)"
        )
    return path


def walk_images(
    top: Path, *, skip_dirs: Iterable[str] = (), empty: list[Path] | None = None
) -> tuple[list[Path], int]:
    """Image files under ``top`` (sorted, hidden entries and the split folder skipped) and the
    number of other files ignored. ``empty``, if given, receives the folders under ``top``
    with no image anywhere below them."""
    skip = {SPLIT_DIR_NAME, *skip_dirs}
    found: list[Path] = []
    ignored = 0
    folders: list[str] = []
    with_images: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip)
        folders.append(dirpath)
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            if Path(fname).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / fname)
                with_images.add(dirpath)
            else:
                ignored += 1
    if empty is not None:
        full = {str(p) for d in with_images for p in (Path(d), *Path(d).parents)}
        empty += [Path(d) for d in folders if d != str(top) and d not in full]
    return found, ignored


def warn_empty_folders(name: str, base: Path, folders: Sequence[Path], tax: Taxonomy) -> None:
    """An empty class folder is usually a download or an unpacking cut short: say so."""
    if not folders:
        return
    shown = []
    for folder in folders[:SHOW]:
        known = canonical_or_none(tax, folder.name)
        note = "" if known else " (not a label)"
        shown.append(f"{relative_name(folder, base)}/{note}")
    more = f" and {len(folders) - SHOW} more" if len(folders) > SHOW else ""
    logger.warning(
        "%s: %d folder(s) under %s hold no images: %s%s; a class whose folder is empty gets no "
        "samples (check the download or the unpacking)",
        name,
        len(folders),
        base,
        ", ".join(shown),
        more,
    )


def relative_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class Labels:
    """Resolves label names to fine indices and collects the unknown ones for one error."""

    def __init__(self, taxonomy: Taxonomy, source: str) -> None:
        self.taxonomy = taxonomy
        self.source = source
        self.unknown: dict[str, list[str]] = defaultdict(list)

    def fine(self, label: str, where: str) -> int | None:
        try:
            return self.taxonomy.index(self.taxonomy.canonical(label), level=-1)
        except KeyError:
            self.unknown[label].append(where)
            return None

    def raise_if_unknown(self, fix: str) -> None:
        if not self.unknown:
            return
        tax = self.taxonomy
        items = sorted(self.unknown.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        shown = ", ".join(
            f"{label!r} ({len(where)} x, e.g. {where[0]})" for label, where in items[:SHOW]
        )
        more = f" and {len(items) - SHOW} more" if len(items) > SHOW else ""
        coarse = sorted({label for label in self.unknown if is_coarse(tax, label)})
        note = (
            f" ({', '.join(map(repr, coarse))} name a coarser level: samples need a fine label)"
            if coarse
            else ""
        )
        raise DatasetError(
            f"{self.source}: {len(items)} label(s) not among the fine labels of taxonomy "
            f"{tax.name!r}: {shown}{more}{note}. Known fine labels: {list(tax.labels[-1])}; "
            f"aliases: {dict(sorted(tax.aliases.items()))}. Fix: {fix}"
        )


def is_coarse(tax: Taxonomy, label: str) -> bool:
    try:
        name = tax.canonical(label)
    except KeyError:
        return False
    return name not in tax.labels[-1]


RENAME_FIX = (
    "rename them to a known label (case is ignored), or pass a taxonomy that has them, e.g. "
    "Taxonomy.from_nested(..., aliases={'<your name>': '<label>'})"
)


def finish_listing(
    name: str,
    root: Path,
    taxonomy: Taxonomy,
    pairs: Iterable[tuple[str, int]],
    *,
    official: Mapping[str, Sequence[str]] | None = None,
    dropped: Mapping[str, int] | None = None,
    annotations: Mapping[str, Mapping[str, Any]] | None = None,
) -> Listing:
    """Sort by path, drop exact duplicates (counted), refuse one path with two labels."""
    labels: dict[str, int] = {}
    conflicts: list[str] = []
    dup = 0
    for rel, idx in pairs:
        if rel in labels:
            if labels[rel] != idx:
                conflicts.append(rel)
            else:
                dup += 1
            continue
        labels[rel] = idx
    if conflicts:
        raise DatasetError(
            f"{name}: {len(conflicts)} file(s) are listed with two different labels, e.g. "
            f"{conflicts[:SHOW]}: give each file one label"
        )
    drops = dict(dropped or {})
    if dup:
        drops["duplicate entries"] = drops.get("duplicate entries", 0) + dup
        logger.info("%s: %d duplicate entries ignored", name, dup)
    entries = tuple(sorted(labels.items()))
    if not entries:
        raise DatasetError(
            f"{name}: no images found under {root}; check the folder against the layout in "
            f"{docs_url('datasets.md')}"
        )
    present = set(labels.values())
    absent = [c for i, c in enumerate(taxonomy.labels[-1]) if i not in present]
    if absent:
        logger.warning(
            "%s: %d of %d classes of taxonomy %r have no samples under %s: %s; the model never "
            "sees them in training",
            name,
            len(absent),
            len(taxonomy.labels[-1]),
            taxonomy.name,
            root,
            ", ".join(absent[:SHOW]) + (", ..." if len(absent) > SHOW else ""),
        )
    off = None
    if official is not None:
        pos = {rel: i for i, (rel, _) in enumerate(entries)}
        off = {part: tuple(sorted({pos[r] for r in rels})) for part, rels in official.items()}
    for reason, n in drops.items():
        if n:
            logger.info("%s: %d samples dropped (%s)", name, n, reason)
    return Listing(
        name=name,
        root=root,
        taxonomy=taxonomy,
        entries=entries,
        official=off,
        dropped=drops,
        annotations=dict(annotations or {}),
    )


def find_file(root: Path, names: Sequence[str], what: str, fix: str) -> Path:
    """A file in ``root`` whose name matches one of ``names`` (case ignored)."""
    wanted = {n.lower() for n in names}
    for child in sorted(root.iterdir()):
        if child.is_file() and child.name.lower() in wanted:
            return child
    raise DatasetError(f"{what}: missing {' or '.join(names)} in {root}. {fix}")


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig", errors="strict").splitlines()
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err}") from err


def read_csv_rows(path: Path) -> list[list[str]]:
    """The rows of a CSV file; a malformed one (a field over csv's 128 KiB limit, a NUL) is a
    :class:`DatasetError` naming the file and the line."""
    reader = csv.reader(read_lines(path))
    try:
        return list(reader)
    except csv.Error as err:
        raise DatasetError(
            f"{path} line {reader.line_num}: {err}; a label file holds short `path,label` "
            "fields: check that this is the right file and that its quotes are balanced"
        ) from None


def canonical_or_none(tax: Taxonomy, label: str) -> str:
    try:
        return tax.canonical(label)
    except KeyError:
        return ""
