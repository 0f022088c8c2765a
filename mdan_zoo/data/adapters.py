"""Adapters: the layouts people actually have, read into a :class:`Listing`.

Each ``list_<name>(root, *, taxonomy=None)`` reads only names and annotation files (no image is
decoded, nothing is downloaded) and matches labels by *name* through the taxonomy
(:meth:`Taxonomy.canonical`: case ignored, aliases followed), never by index. Unknown labels stop
with one error naming them and the known labels. Layouts: ``../docs/datasets.md``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from ..taxonomy import Taxonomy, get_taxonomy
from ._listing import (
    RENAME_FIX,
    SHOW,
    SPLIT_DIR_NAME,
    Labels,
    canonical_or_none,
    dataset_root,
    find_file,
    finish_listing,
    read_csv_rows,
    read_lines,
    relative_name,
    walk_images,
    warn_empty_folders,
)
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


# ---------------------------------------------------------------------------- FI
def list_fi(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """FI (You et al., AAAI 2016): ``root/<emotion>/<emotion>_<id>.jpg``; the folder names the
    label (capitalised folders accepted, ``sad`` -> ``sadness``)."""
    tax = taxonomy or get_taxonomy("fi")
    base = dataset_root(root, "FI")
    return _by_top_folder("fi", base, tax)


def _by_top_folder(name: str, base: Path, tax: Taxonomy) -> Listing:
    labels = Labels(tax, f"{name} ({base})")
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
        files, n_ignored = walk_images(child)
        ignored += n_ignored
        if not files:
            empty.append(child)
            continue
        idx = labels.fine(child.name, f"{child.name}/ with {len(files)} images")
        if idx is not None:
            pairs += [(relative_name(f, base), idx) for f in files]
    deeper = _label_parents(base, tax) if labels.unknown else []
    hint = (
        f"the label folders seem to be in {deeper[0]}: pass that folder as root; " if deeper else ""
    )
    labels.raise_if_unknown(
        f"{hint}each folder under {base} must be named by a label; {RENAME_FIX}"
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
    warn_empty_folders(name, base, empty, tax)
    return finish_listing(name, base, tax, pairs)


def _label_parents(base: Path, tax: Taxonomy) -> list[Path]:
    """Sub-folders of ``base`` whose own sub-folders are mostly fine labels (a root one level
    too high)."""
    fine = {n.lower() for n in tax.labels[-1]}
    out = []
    for child in sorted(p for p in base.iterdir() if p.is_dir()):
        subs = [p.name for p in child.iterdir() if p.is_dir()]
        known = [n for n in subs if canonical_or_none(tax, n).lower() in fine]
        if len(known) >= 2 and len(known) * 2 > len(subs):
            out.append(child)
    return out


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
    base = dataset_root(root, "folder")
    empty: list[Path] = []
    files, ignored = walk_images(base, empty=empty)
    warn_empty_folders("folder", base, empty, tax)
    fine_names = {n.lower() for n in tax.labels[-1]}
    labels = Labels(tax, f"folder ({base})")
    pairs: list[tuple[str, int]] = []
    misplaced: list[str] = []
    nolabel: dict[str, list[str]] = defaultdict(list)
    for f in files:
        rel = relative_name(f, base)
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
            + RENAME_FIX
        )
    if misplaced:
        raise DatasetError(
            f"folder ({base}): {len(misplaced)} images sit under folders that contradict the "
            f"taxonomy {tax.name!r}, e.g. {misplaced[:SHOW]}. Fix: nest folders as the "
            f"taxonomy does (coarse/mid/fine) or keep only the fine-label folder"
        )
    if ignored:
        logger.info("folder: %d non-image files ignored", ignored)
    return finish_listing("folder", base, tax, pairs)


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
    rows = read_csv_rows(path)
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
    labels = Labels(taxonomy, f"csv ({path})")
    pairs: list[tuple[str, int]] = []
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if len(row) <= max(pcol, lcol):
            raise DatasetError(
                f"csv: {path} row {lineno} {row} has {len(row)} column(s); expected path,label"
            )
        rel, label = row[pcol].strip(), row[lcol].strip()
        idx = labels.fine(label, f"row {lineno}")
        if idx is not None:
            pairs.append((relative_name(base / rel, base), idx))
    labels.raise_if_unknown(f"correct the label column of {path}; {RENAME_FIX}")
    return finish_listing("csv", base, taxonomy, pairs)


# ---------------------------------------------------------------------------- WEBEmo
_WEBEMO_FIX = (
    "The WEBEmo release (Panda et al., ECCV 2018) ships category.txt, train25.txt and "
    "test25.txt; put them in the dataset folder with the images you fetched under "
    "<split>/<label>/<basename of the URL>."
)


def _read_categories(path: Path) -> list[str]:
    names: list[str] = []
    for lineno, line in enumerate(read_lines(path), start=1):
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
    base = dataset_root(root, "WEBEmo")
    cat_file = find_file(base, ["category.txt"], "WEBEmo", _WEBEMO_FIX)
    categories = _read_categories(cat_file)
    labels = Labels(tax, f"WEBEmo {cat_file.name}")
    cat_idx = [labels.fine(c, f"{cat_file.name} index {i}") for i, c in enumerate(categories)]
    labels.raise_if_unknown(f"correct {cat_file} or pass the taxonomy it was made for")
    pairs: list[tuple[str, int]] = []
    official: dict[str, list[str]] = {}
    dir_cache: dict[tuple[str, int], str] = {}
    for split, fname in (("train", "train25.txt"), ("test", "test25.txt")):
        list_file = find_file(base, [fname], "WEBEmo", _WEBEMO_FIX)
        rels: list[str] = []
        bad: list[str] = []
        for lineno, line in enumerate(read_lines(list_file), start=1):
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
            shown = "; ".join(bad[:SHOW])
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
    return finish_listing("webemo", base, tax, pairs, official=official)


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
    base = dataset_root(root, "Emotion6")
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
    lines = [ln for ln in read_lines(path) if ln.strip()]
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
    base = dataset_root(root, "ArtPhoto")
    files, ignored = walk_images(base)
    labels = Labels(tax, f"ArtPhoto ({base})")
    pairs: list[tuple[str, int]] = []
    for f in files:
        prefix = f.name.split("_", 1)[0] if "_" in f.name else f.stem
        idx = labels.fine(prefix, f.name)
        if idx is not None:
            pairs.append((relative_name(f, base), idx))
    labels.raise_if_unknown(
        "ArtPhoto file names start with the emotion and an underscore (amusement_12.jpg); "
        + RENAME_FIX
    )
    if ignored:
        logger.info("ArtPhoto: %d non-image files ignored", ignored)
    return finish_listing("artphoto", base, tax, pairs)


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
    base = dataset_root(root, "Abstract")
    gt = find_file(base, ["ABSTRACT_groundTruth.csv"], "Abstract", _ABSTRACT_FIX)
    rows = [r for r in read_csv_rows(gt) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DatasetError(f"Abstract {gt}: needs a header and one row per image")
    header = [_unquote(c) for c in rows[0]]
    labels = Labels(tax, f"Abstract {gt.name} header")
    cols = [labels.fine(h, "header") for h in header[1:]]
    labels.raise_if_unknown(f"the columns after the file name must be emotions; {RENAME_FIX}")
    files, _ = walk_images(base)
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
        rel = relative_name(found, base) if found is not None else name
        fine = cols[winners[0]]
        assert fine is not None
        pairs.append((rel, fine))
    return finish_listing("abstract", base, tax, pairs, dropped={"tied votes": ties})


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
    base = dataset_root(root, "IAPS")
    list_file = find_file(base, ["iaps_list.txt", "iaps_list.csv"], "IAPS", _IAPS_FIX)
    files, _ = walk_images(base)
    by_stem: dict[str, Path] = {}
    for f in files:
        by_stem.setdefault(f.stem.lower(), f)
    labels = Labels(tax, f"IAPS {list_file.name}")
    pairs: list[tuple[str, int]] = []
    several = 0
    for lineno, line in enumerate(read_lines(list_file), start=1):
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
        rel = relative_name(found, base) if found is not None else f"{tokens[0]}.jpg"
        pairs.append((rel, fine))
    labels.raise_if_unknown(f"correct the categories in {list_file}; {RENAME_FIX}")
    return finish_listing("iaps", base, tax, pairs, dropped={"several categories": several})
