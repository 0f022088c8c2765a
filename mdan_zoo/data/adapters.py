"""Adapters: the layouts people actually have, read into a :class:`Listing`.

Each ``list_<name>(root, *, taxonomy=None)`` reads only names and annotation files (no image is
decoded, nothing is downloaded) and matches labels by *name* through the taxonomy
(:meth:`Taxonomy.canonical`: case ignored, aliases followed), never by index. Unknown labels stop
with one error naming them and the known labels. Layouts: ``../docs/datasets.md``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from ..taxonomy import Taxonomy, get_taxonomy
from .dataset import IMAGE_EXTENSIONS, Listing
from .fashion_mnist import DatasetError

__all__ = [
    "SPLIT_DIR_NAME",
    "list_abstract",
    "list_artphoto",
    "list_csv",
    "list_emotion6",
    "list_fi",
    "list_folder",
    "list_iaps",
    "list_webemo",
    "url_basename",
]

logger = logging.getLogger(__name__)

SPLIT_DIR_NAME = "mdan_splits"
"""Folder under a dataset root where split files go by default; folder walkers skip it."""

_SHOW = 10


# ---------------------------------------------------------------------------- helpers
def _root(root: str | os.PathLike[str], what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"{what}: dataset folder {path} does not exist or is not a folder; pass the folder "
            f"that holds the dataset (see docs/datasets.md for the layout)"
        )
    return path


def _walk_images(
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


def _warn_empty_folders(name: str, base: Path, folders: Sequence[Path], tax: Taxonomy) -> None:
    """An empty class folder is usually a download or an unpacking cut short: say so."""
    if not folders:
        return
    shown = []
    for folder in folders[:_SHOW]:
        known = _canonical_or_none(tax, folder.name)
        note = "" if known else " (not a label)"
        shown.append(f"{_rel(folder, base)}/{note}")
    more = f" and {len(folders) - _SHOW} more" if len(folders) > _SHOW else ""
    logger.warning(
        "%s: %d folder(s) under %s hold no images: %s%s; a class whose folder is empty gets no "
        "samples (check the download or the unpacking)",
        name,
        len(folders),
        base,
        ", ".join(shown),
        more,
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


class _Labels:
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
            f"{label!r} ({len(where)} x, e.g. {where[0]})" for label, where in items[:_SHOW]
        )
        more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
        coarse = sorted({label for label in self.unknown if _is_coarse(tax, label)})
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


def _is_coarse(tax: Taxonomy, label: str) -> bool:
    try:
        name = tax.canonical(label)
    except KeyError:
        return False
    return name not in tax.labels[-1]


_RENAME_FIX = (
    "rename them to a known label (case is ignored), or pass a taxonomy that has them, e.g. "
    "Taxonomy.from_nested(..., aliases={'<your name>': '<label>'})"
)


def _finish(
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
            f"{conflicts[:_SHOW]}: give each file one label"
        )
    drops = dict(dropped or {})
    if dup:
        drops["duplicate entries"] = drops.get("duplicate entries", 0) + dup
        logger.info("%s: %d duplicate entries ignored", name, dup)
    entries = tuple(sorted(labels.items()))
    if not entries:
        raise DatasetError(
            f"{name}: no images found under {root}; check the folder against the layout in "
            f"docs/datasets.md"
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
            ", ".join(absent[:_SHOW]) + (", ..." if len(absent) > _SHOW else ""),
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


def _find_file(root: Path, names: Sequence[str], what: str, fix: str) -> Path:
    """A file in ``root`` whose name matches one of ``names`` (case ignored)."""
    wanted = {n.lower() for n in names}
    for child in sorted(root.iterdir()):
        if child.is_file() and child.name.lower() in wanted:
            return child
    raise DatasetError(f"{what}: missing {' or '.join(names)} in {root}. {fix}")


def _read_text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig", errors="strict").splitlines()
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err}") from err


# ---------------------------------------------------------------------------- FI
def list_fi(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """FI (You et al., AAAI 2016): ``root/<emotion>/<emotion>_<id>.jpg``; the folder names the
    label (capitalised folders accepted, ``sad`` -> ``sadness``)."""
    tax = taxonomy or get_taxonomy("fi")
    base = _root(root, "FI")
    return _by_top_folder("fi", base, tax)


def _by_top_folder(name: str, base: Path, tax: Taxonomy) -> Listing:
    labels = _Labels(tax, f"{name} ({base})")
    pairs: list[tuple[str, int]] = []
    loose = []
    empty: list[Path] = []
    ignored = 0
    for child in sorted(base.iterdir()):
        if child.name.startswith(".") or child.name == SPLIT_DIR_NAME:
            continue
        if not child.is_dir():
            if child.suffix.lower() in IMAGE_EXTENSIONS:
                loose.append(child.name)
            continue
        files, n_ignored = _walk_images(child)
        ignored += n_ignored
        if not files:
            empty.append(child)
            continue
        idx = labels.fine(child.name, f"{child.name}/ with {len(files)} images")
        if idx is not None:
            pairs += [(_rel(f, base), idx) for f in files]
    deeper = _label_parents(base, tax) if labels.unknown else []
    hint = (
        f"the label folders seem to be in {deeper[0]}: pass that folder as root; " if deeper else ""
    )
    labels.raise_if_unknown(
        f"{hint}each folder under {base} must be named by a label; {_RENAME_FIX}"
    )
    if loose:
        logger.warning(
            "%s: %d images directly in %s have no label folder and are ignored (e.g. %s)",
            name,
            len(loose),
            base,
            loose[0],
        )
    if ignored:
        logger.info("%s: %d non-image files ignored", name, ignored)
    _warn_empty_folders(name, base, empty, tax)
    return _finish(name, base, tax, pairs)


def _label_parents(base: Path, tax: Taxonomy) -> list[Path]:
    """Sub-folders of ``base`` whose own sub-folders are mostly fine labels (a root one level
    too high)."""
    fine = {n.lower() for n in tax.labels[-1]}
    out = []
    for child in sorted(p for p in base.iterdir() if p.is_dir()):
        subs = [p.name for p in child.iterdir() if p.is_dir()]
        known = [n for n in subs if _canonical_or_none(tax, n).lower() in fine]
        if len(known) >= 2 and len(known) * 2 > len(subs):
            out.append(child)
    return out


def _canonical_or_none(tax: Taxonomy, label: str) -> str:
    try:
        return tax.canonical(label)
    except KeyError:
        return ""


# ---------------------------------------------------------------------------- generic folder
def list_folder(root: str | os.PathLike[str], *, taxonomy: Taxonomy) -> Listing:
    """Any taxonomy from a folder tree: every image needs a folder on its path named by a fine
    label (``root/<fine>/x.jpg``, ``root/train/<fine>/x.jpg``); folders named by coarser labels
    (``root/<coarse>/<mid>/<fine>/x.jpg``) are checked against the taxonomy. Folders named by
    no label (``train/``, ``images/``) are allowed anywhere."""
    if taxonomy is None:
        raise DatasetError(
            "folder: a taxonomy is required (taxonomy=get_taxonomy(...) or Taxonomy.from_json)"
        )
    tax = taxonomy
    base = _root(root, "folder")
    empty: list[Path] = []
    files, ignored = _walk_images(base, empty=empty)
    _warn_empty_folders("folder", base, empty, tax)
    fine_names = {n.lower() for n in tax.labels[-1]}
    labels = _Labels(tax, f"folder ({base})")
    pairs: list[tuple[str, int]] = []
    misplaced: list[str] = []
    nolabel: dict[str, list[str]] = defaultdict(list)
    for f in files:
        rel = _rel(f, base)
        parts = PurePosixPath(rel).parts[:-1]
        canon: list[str | None] = []
        for part in parts:
            try:
                canon.append(tax.canonical(part))
            except KeyError:
                canon.append(None)
        fine_at = [i for i, c in enumerate(canon) if c is not None and c.lower() in fine_names]
        if not fine_at:
            key = "/".join(parts) if parts else "."
            nolabel[key].append(rel)
            continue
        k = fine_at[-1]
        fine = canon[k]
        assert fine is not None
        idx = tax.index(fine, level=-1)
        # every other labelled folder above must be an ancestor, coarse to fine
        path_names = tax.ancestors(fine)[:-1]
        pos = 0
        ok = True
        for c in canon[:k]:
            if c is None:
                continue
            try:
                pos = path_names.index(c, pos) + 1
            except ValueError:
                ok = False
                break
        if not ok:
            misplaced.append(f"{rel} (taxonomy path: {'/'.join(tax.ancestors(fine))})")
            continue
        pairs.append((rel, idx))
    if nolabel:
        for key, rels in nolabel.items():
            labels.unknown[key.rsplit("/", 1)[-1]].append(f"{key}/ with {len(rels)} images")
        labels.raise_if_unknown(
            "put every image in a folder named by a fine label (case ignored, aliases allowed); "
            + _RENAME_FIX
        )
    if misplaced:
        raise DatasetError(
            f"folder ({base}): {len(misplaced)} images sit under folders that contradict the "
            f"taxonomy {tax.name!r}, e.g. {misplaced[:_SHOW]}. Fix: nest folders as the "
            f"taxonomy does (coarse/mid/fine) or keep only the fine-label folder"
        )
    if ignored:
        logger.info("folder: %d non-image files ignored", ignored)
    return _finish("folder", base, tax, pairs)


# ---------------------------------------------------------------------------- CSV
_PATH_COLS = ("path", "file", "filename", "file_name", "image", "image_path")


def list_csv(csv_file: str | os.PathLike[str], *, taxonomy: Taxonomy) -> Listing:
    """Any taxonomy from a CSV of ``path,label`` rows (header optional: columns named ``path``
    (or ``file``/``filename``/``image``) and ``label``). Relative paths start at the CSV's
    folder."""
    if taxonomy is None:
        raise DatasetError("csv: a taxonomy is required (taxonomy=get_taxonomy(...))")
    path = Path(csv_file).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"csv: missing label file {path}: pass the CSV file itself (rows `path,label`)"
        )
    base = path.parent
    rows = list(csv.reader(_read_text(path)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"csv: {path} has no rows; expected `path,label` lines")
    head = [c.strip().lower() for c in rows[0]]
    pcol, lcol, start = 0, 1, 0
    if head and head[0] in _PATH_COLS or "label" in head:
        start = 1
        pcol = next((i for i, c in enumerate(head) if c in _PATH_COLS), -1)
        lcol = head.index("label") if "label" in head else -1
        if pcol < 0 or lcol < 0:
            raise DatasetError(f"csv: {path} header {rows[0]} needs a 'path' and a 'label' column")
    labels = _Labels(taxonomy, f"csv ({path})")
    pairs: list[tuple[str, int]] = []
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if len(row) <= max(pcol, lcol):
            raise DatasetError(
                f"csv: {path} row {lineno} {row} has {len(row)} column(s); expected path,label"
            )
        rel, label = row[pcol].strip(), row[lcol].strip()
        idx = labels.fine(label, f"row {lineno}")
        if idx is not None:
            pairs.append((_rel(base / rel, base), idx))
    labels.raise_if_unknown(f"correct the label column of {path}; {_RENAME_FIX}")
    return _finish("csv", base, taxonomy, pairs)


# ---------------------------------------------------------------------------- WEBEmo
_WEBEMO_FIX = (
    "The WEBEmo release (Panda et al., ECCV 2018) ships category.txt, train25.txt and "
    "test25.txt; put them in the dataset folder with the images you fetched under "
    "<split>/<label>/<basename of the URL>."
)


def _read_categories(path: Path) -> list[str]:
    names: list[str] = []
    for lineno, line in enumerate(_read_text(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) >= 2 and tokens[0].isdigit():
            if int(tokens[0]) != len(names):
                raise DatasetError(
                    f"{path} line {lineno}: index {tokens[0]} out of order (expected "
                    f"{len(names)}); the file must list categories in index order"
                )
            tokens = tokens[1:]
        elif len(tokens) >= 2 and tokens[-1].isdigit():
            if int(tokens[-1]) != len(names):
                raise DatasetError(
                    f"{path} line {lineno}: index {tokens[-1]} out of order (expected "
                    f"{len(names)}); the file must list categories in index order"
                )
            tokens = tokens[:-1]
        names.append(" ".join(tokens))
    if not names:
        raise DatasetError(f"{path} lists no categories. {_WEBEMO_FIX}")
    return names


def url_basename(url: str) -> str:
    """File name a downloader stores a URL under: last path segment, query dropped, decoded."""
    base = url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
    if "://" in base and base.count("/") < 3:
        return ""  # only a host, no path
    name = base.rsplit("/", 1)[-1]
    return unquote(name) if "%" in name else name


def list_webemo(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """WEBEmo: ``category.txt`` + ``train25.txt`` / ``test25.txt`` (``<url> <index>`` lines,
    index into category.txt, names matched to the taxonomy by name, typos included) and images
    stored as ``<split>/<label>/<basename>``. The official split is kept on the listing."""
    tax = taxonomy or get_taxonomy("webemo")
    base = _root(root, "WEBEmo")
    cat_file = _find_file(base, ["category.txt"], "WEBEmo", _WEBEMO_FIX)
    categories = _read_categories(cat_file)
    labels = _Labels(tax, f"WEBEmo {cat_file.name}")
    cat_idx = [labels.fine(c, f"{cat_file.name} index {i}") for i, c in enumerate(categories)]
    labels.raise_if_unknown(f"correct {cat_file} or pass the taxonomy it was made for")
    pairs: list[tuple[str, int]] = []
    official: dict[str, list[str]] = {}
    dir_cache: dict[tuple[str, int], str] = {}
    for split, fname in (("train", "train25.txt"), ("test", "test25.txt")):
        list_file = _find_file(base, [fname], "WEBEmo", _WEBEMO_FIX)
        rels: list[str] = []
        bad: list[str] = []
        for lineno, line in enumerate(_read_text(list_file), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2 or not tokens[-1].lstrip("-").isdigit():
                bad.append(f"line {lineno}: {line.strip()[:80]!r} (expected '<url> <index>')")
                continue
            k = int(tokens[-1])
            if not 0 <= k < len(categories):
                bad.append(f"line {lineno}: index {k} outside 0..{len(categories) - 1}")
                continue
            fine = cat_idx[k]
            assert fine is not None
            key = (split, k)
            if key not in dir_cache:
                dir_cache[key] = _webemo_dir(base, split, categories[k], tax.labels[-1][fine])
            rel = f"{dir_cache[key]}/{url_basename(' '.join(tokens[:-1]))}"
            rels.append(rel)
            pairs.append((rel, fine))
        if bad:
            shown = "; ".join(bad[:_SHOW])
            raise DatasetError(
                f"WEBEmo {list_file}: {len(bad)} malformed line(s): {shown}. {_WEBEMO_FIX}"
            )
        official[split] = rels
    both = set(official["train"]) & set(official["test"])
    if both:
        raise DatasetError(
            f"WEBEmo: {len(both)} files are in both train25.txt and test25.txt, e.g. "
            f"{sorted(both)[:3]}"
        )
    return _finish("webemo", base, tax, pairs, official=official)


def _webemo_dir(base: Path, split: str, released: str, canonical: str) -> str:
    """``<split>/<label>`` as stored: the category.txt spelling, else the taxonomy's."""
    for label in dict.fromkeys([released, canonical, released.lower(), canonical.lower()]):
        if (base / split / label).is_dir():
            return f"{split}/{label}"
    return f"{split}/{released}"


# ---------------------------------------------------------------------------- Emotion6
_E6_FIX = (
    "Emotion6 (Peng et al., CVPR 2015) is laid out as images/<emotion>/<N>.jpg with "
    "ground_truth.txt beside the images folder."
)


def list_emotion6(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """Emotion6: ``images/<emotion>/<N>.jpg``; the folder is the single label. If
    ``ground_truth.txt`` (tab-separated, header row) is present its valence, arousal and
    emotion probabilities are attached as ``annotations`` (keyed by relative path)."""
    tax = taxonomy or get_taxonomy("emotion6")
    base = _root(root, "Emotion6")
    images = base / "images"
    if not images.is_dir():
        raise DatasetError(f"Emotion6: no images folder in {base}. {_E6_FIX}")
    listing = _by_top_folder("emotion6", images, tax)
    entries = tuple((f"images/{rel}", idx) for rel, idx in listing.entries)
    gt = next((c for c in sorted(base.iterdir()) if c.name.lower() == "ground_truth.txt"), None)
    annotations = _emotion6_ground_truth(gt) if gt is not None else {}
    if gt is None:
        logger.info("Emotion6: no ground_truth.txt in %s; folder labels only", base)
    return Listing(
        name="emotion6",
        root=base,
        taxonomy=tax,
        entries=entries,
        dropped=listing.dropped,
        annotations=annotations,
    )


def _emotion6_ground_truth(path: Path) -> dict[str, dict[str, Any]]:
    lines = [ln for ln in _read_text(path) if ln.strip()]
    if not lines:
        raise DatasetError(f"Emotion6 {path} is empty. {_E6_FIX}")
    header = [
        re.sub(r"^prob(ability)?[._ ]*", "", h.strip().strip("[]'\"").strip().lower())
        for h in lines[0].split("\t")
    ]
    if len(header) < 2 or not header[0].startswith(("file", "image", "name")):
        raise DatasetError(
            f"Emotion6 {path}: expected a tab-separated header starting with the file name "
            f"column (filename, valence, arousal, anger, ...), got {lines[0][:120]!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != len(header):
            raise DatasetError(
                f"Emotion6 {path} line {lineno}: {len(cells)} tab-separated fields, header has "
                f"{len(header)}"
            )
        try:
            values = {h: float(c) for h, c in zip(header[1:], cells[1:], strict=True)}
        except ValueError as err:
            raise DatasetError(f"Emotion6 {path} line {lineno}: {err}") from None
        out[f"images/{cells[0].strip(chr(39) + chr(34))}"] = values
    return out


# ---------------------------------------------------------------------------- ArtPhoto
def list_artphoto(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """ArtPhoto (Machajdik & Hanbury 2010): flat files ``<emotion>_<...>.jpg``; the label is the
    prefix before the first ``_`` (``sad`` -> ``sadness``)."""
    tax = taxonomy or get_taxonomy("artphoto")
    base = _root(root, "ArtPhoto")
    files, ignored = _walk_images(base)
    labels = _Labels(tax, f"ArtPhoto ({base})")
    pairs: list[tuple[str, int]] = []
    for f in files:
        prefix = f.name.split("_", 1)[0] if "_" in f.name else f.stem
        idx = labels.fine(prefix, f.name)
        if idx is not None:
            pairs.append((_rel(f, base), idx))
    labels.raise_if_unknown(
        "ArtPhoto file names start with the emotion and an underscore (amusement_12.jpg); "
        + _RENAME_FIX
    )
    if ignored:
        logger.info("ArtPhoto: %d non-image files ignored", ignored)
    return _finish("artphoto", base, tax, pairs)


# ---------------------------------------------------------------------------- Abstract
_ABSTRACT_FIX = (
    "The Abstract set (Machajdik & Hanbury 2010) ships ABSTRACT_groundTruth.csv (quoted file "
    "names, one vote count column per emotion) with its 280 images; put both in the folder."
)


def _unquote(cell: str) -> str:
    return cell.strip().strip("'\"").strip()


def list_abstract(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """Abstract: ``ABSTRACT_groundTruth.csv`` vote counts per emotion; label = most votes;
    images with tied votes are dropped and counted (``dropped["tied votes"]``). Images are
    found by file name anywhere under the folder."""
    tax = taxonomy or get_taxonomy("abstract")
    base = _root(root, "Abstract")
    gt = _find_file(base, ["ABSTRACT_groundTruth.csv"], "Abstract", _ABSTRACT_FIX)
    rows = [r for r in csv.reader(_read_text(gt)) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DatasetError(f"Abstract {gt}: needs a header and one row per image")
    header = [_unquote(c) for c in rows[0]]
    labels = _Labels(tax, f"Abstract {gt.name} header")
    cols = [labels.fine(h, "header") for h in header[1:]]
    labels.raise_if_unknown(f"the columns after the file name must be emotions; {_RENAME_FIX}")
    files, _ = _walk_images(base)
    by_name: dict[str, Path] = {}
    for f in files:
        by_name.setdefault(f.name.lower(), f)
    pairs: list[tuple[str, int]] = []
    ties = 0
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DatasetError(
                f"Abstract {gt} line {lineno}: {len(row)} columns, header has {len(header)}"
            )
        name = _unquote(row[0])
        try:
            votes = [float(_unquote(c)) for c in row[1:]]
        except ValueError as err:
            raise DatasetError(f"Abstract {gt} line {lineno}: bad vote count ({err})") from None
        top = max(votes)
        winners = [i for i, v in enumerate(votes) if v == top]
        if len(winners) != 1:
            ties += 1
            continue
        found = by_name.get(name.lower())
        rel = _rel(found, base) if found is not None else name
        fine = cols[winners[0]]
        assert fine is not None
        pairs.append((rel, fine))
    return _finish("abstract", base, tax, pairs, dropped={"tied votes": ties})


# ---------------------------------------------------------------------------- IAPS
_IAPS_FIX = (
    "Write the Mikels et al. (2005) picture list as iaps_list.txt in the folder (one "
    "'<picture number> <category>' line each, e.g. '1050 fear') and put the IAPS images "
    "(licence-restricted; request them from the CSEA, University of Florida) beside it, named "
    "by picture number (1050.jpg)."
)


def list_iaps(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """IAPS subset (Mikels 2005): a list file ``iaps_list.txt`` / ``.csv`` of picture numbers
    and categories; images supplied by the user, found by picture number (``1050.jpg``)
    anywhere under the folder. Pictures with several categories are dropped and counted."""
    tax = taxonomy or get_taxonomy("iaps")
    base = _root(root, "IAPS")
    list_file = _find_file(base, ["iaps_list.txt", "iaps_list.csv"], "IAPS", _IAPS_FIX)
    files, _ = _walk_images(base)
    by_stem: dict[str, Path] = {}
    for f in files:
        by_stem.setdefault(f.stem.lower(), f)
    labels = _Labels(tax, f"IAPS {list_file.name}")
    pairs: list[tuple[str, int]] = []
    several = 0
    for lineno, line in enumerate(_read_text(list_file), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        tokens = [t for t in re.split(r"[,;\t ]+", text) if t]
        if not re.fullmatch(r"\d+(\.\d+)?", tokens[0]):
            if lineno == 1 or not pairs:
                continue  # a header row
            raise DatasetError(
                f"IAPS {list_file} line {lineno}: {line.strip()!r} does not start with a picture "
                f"number. {_IAPS_FIX}"
            )
        if len(tokens) < 2:
            raise DatasetError(
                f"IAPS {list_file} line {lineno}: picture {tokens[0]} has no category. {_IAPS_FIX}"
            )
        names = [c for t in tokens[1:] for c in re.split(r"[/+]", t) if c]
        cats = {labels.fine(c, f"line {lineno}") for c in names}
        if None in cats:
            continue
        if len(cats) > 1:
            several += 1
            continue
        (fine,) = cats
        assert fine is not None
        found = by_stem.get(tokens[0].lower())
        rel = _rel(found, base) if found is not None else f"{tokens[0]}.jpg"
        pairs.append((rel, fine))
    labels.raise_if_unknown(f"correct the categories in {list_file}; {_RENAME_FIX}")
    return _finish("iaps", base, tax, pairs, dropped={"several categories": several})
