"""FindingEmo (Mertens et al., NeurIPS 2024 Datasets and Benchmarks): labels from the PyPI
package ``findingemo-light``, images from the user's own download.

The package ships the labels only: ``findingemo_light/data/annotations_single.ann`` (CSV, one
row per image: ``index,user,image_path,tags,age,valence,arousal,emotion,dec_factors,ambiguity,
datetime``; 25,869 rows in version 1.0.0) and ``dataset_urls_exploded.json`` (``rel_path``,
``url``). Its downloader ``findingemo_light.paper.download_multi.download_data(target_dir)``
stores each image at ``os.path.join(target_dir, *rel_path.split("/"))``: the ``image_path``
column (``/Run_2/<query folder>/<file>``) is a path *relative to that folder* with a leading
``/``. So ``root`` here is the ``target_dir`` you downloaded to, and a row's image is
``root/Run_2/<query folder>/<file>``.

Labels are the ``emotion`` column, Plutchik's 24 emotions (8 primaries x 3 intensities), matched
by name to the ``plutchik3`` taxonomy (polarity -> primary -> emotion). Valence (-3..3), arousal
(0..6), ambiguity (0..6), age groups, tags and decisive factors are kept per sample in
``annotations``. Dead URLs make every download incomplete: the listing holds every annotated
image (so everyone gets the same split), the missing ones are counted here and left to the
loader's ``on_missing`` (the shipped ``findingemo`` config skips them).

The package documents no train/test split; ``DEFAULT_SPLITS["findingemo"]`` is a seeded,
stratified 80 / 5 / 15 split, as for FI and as EmoSet's official one.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._hints import docs_url
from ..taxonomy import Taxonomy, get_taxonomy
from ._listing import Labels, dataset_root, finish_listing
from .dataset import Listing
from .emoset import Folder
from .fashion_mnist import DatasetError

__all__ = [
    "FINDINGEMO_ANNOTATIONS",
    "findingemo_annotation_file",
    "list_findingemo",
    "read_findingemo_annotations",
    "valence_by_label",
    "valence_table",
]

logger = logging.getLogger(__name__)

FINDINGEMO_ANNOTATIONS = "annotations_single.ann"
"""The annotation file's name in the package (and in ``root``, where a copy takes precedence)."""

_REQUIRED = ("image_path", "emotion", "valence", "arousal")
_COLUMNS = "index,user,image_path,tags,age,valence,arousal,emotion,dec_factors,ambiguity,datetime"
_INSTALL = "pip install findingemo-light"
_FIX = (
    "FindingEmo's labels come with the PyPI package findingemo-light (`pip install "
    "findingemo-light`); download the images with `from findingemo_light.paper.download_multi "
    "import download_data; download_data(target_dir=ROOT)` and pass ROOT as root (see "
    f"{docs_url('datasets.md')})."
)


def _package_file(name: str) -> Path | None:
    spec = importlib.util.find_spec("findingemo_light")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / name
    return path if path.is_file() else None


def findingemo_annotation_file() -> Path:
    """``annotations_single.ann`` of the installed ``findingemo-light``; ``DatasetError`` with
    the install command if the package is absent."""
    path = _package_file(FINDINGEMO_ANNOTATIONS)
    if path is None:
        raise DatasetError(
            f"FindingEmo: the package findingemo-light, which holds the labels, is not installed "
            f"(or lacks data/{FINDINGEMO_ANNOTATIONS}): run `{_INSTALL}`, or put a copy of "
            f"{FINDINGEMO_ANNOTATIONS} in the dataset folder"
        )
    return path


def _number(cell: str, column: str, where: str) -> int | float:
    try:
        value = float(cell)
    except ValueError:
        raise DatasetError(f"{where}: {column} {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: {column} {cell!r} is not a finite number")
    return int(value) if value.is_integer() else value


def _names(cell: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in cell.split(",") if n.strip())


def read_findingemo_annotations(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a FindingEmo annotation file, each with ``line`` (its line number),
    ``image_path``, ``emotion`` and the numeric and list columns parsed; a header that is not
    FindingEmo's or a malformed row is a ``DatasetError`` naming the file and line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"FindingEmo: cannot read annotation file {path}: {err}") from err
    cols = [c.strip().lower() for c in header or []]
    absent = [c for c in _REQUIRED if c not in cols]
    if absent:
        raise DatasetError(
            f"FindingEmo: {path} line 1: header {header} is not FindingEmo's (it lacks "
            f"{absent}; expected {_COLUMNS}). Pass findingemo-light's {FINDINGEMO_ANNOTATIONS}."
        )
    pos = {c: i for i, c in enumerate(cols)}
    out: list[dict[str, Any]] = []
    for line, row in rows:
        if not any(c.strip() for c in row):
            continue
        where = f"FindingEmo {path} line {line}"
        if len(row) != len(cols):
            raise DatasetError(f"{where}: {len(row)} columns, the header has {len(cols)}")

        def cell(name: str, row: list[str] = row) -> str:
            return row[pos[name]].strip() if name in pos else ""

        record: dict[str, Any] = {
            "line": line,
            "image_path": cell("image_path"),
            "emotion": cell("emotion"),
            "valence": _number(cell("valence"), "valence", where),
            "arousal": _number(cell("arousal"), "arousal", where),
            "ambiguity": _number(cell("ambiguity"), "ambiguity", where)
            if cell("ambiguity")
            else None,
            "index": _number(cell("index"), "index", where) if cell("index") else None,
            "age": _names(cell("age")),
            "tags": _names(cell("tags")),
            "dec_factors": _names(cell("dec_factors")),
        }
        if not record["image_path"] or not record["emotion"]:
            raise DatasetError(f"{where}: empty image_path or emotion")
        out.append(record)
    return out


def _image_rel(image_path: str, where: str) -> str:
    """The image's path under ``root``, as the package's downloader stores it."""
    parts = [p for p in image_path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise DatasetError(
            f"{where}: image_path {image_path!r} does not name a file inside the download "
            f"folder (expected /Run_<n>/<folder>/<file>)"
        )
    return "/".join(parts)


def list_findingemo(
    root: str | os.PathLike[str],
    *,
    taxonomy: Taxonomy | None = None,
    annotation_file: str | os.PathLike[str] | None = None,
) -> Listing:
    """FindingEmo: every row of the annotation file (``annotation_file``, else
    ``root/annotations_single.ann`` if present, else the installed package's) with its image
    at ``root/<image_path>``; labels matched by name, the other columns in ``annotations``.
    Images not downloaded are counted and logged; the loader's ``on_missing`` decides."""
    tax = taxonomy or get_taxonomy("plutchik3")
    base = dataset_root(root, "FindingEmo")
    if annotation_file is not None:
        ann = Path(annotation_file).expanduser()
        if not ann.is_file():
            raise DatasetError(f"FindingEmo: annotation file {ann} does not exist. {_FIX}")
    elif (base / FINDINGEMO_ANNOTATIONS).is_file():
        ann = base / FINDINGEMO_ANNOTATIONS
    else:
        ann = findingemo_annotation_file()
    logger.info("FindingEmo: labels from %s", ann)
    records = read_findingemo_annotations(ann)
    labels = Labels(tax, f"FindingEmo {ann}")
    known: dict[str, int] = {}  # 24 names over 25k rows: look each up once
    pairs: list[tuple[str, int]] = []
    annotations: dict[str, dict[str, Any]] = {}
    for rec in records:
        where = f"FindingEmo {ann} line {rec['line']}"
        rel = _image_rel(rec["image_path"], where)
        fine = known.get(rec["emotion"])
        if fine is None:
            fine = labels.fine(rec["emotion"], f"line {rec['line']}")
            if fine is None:
                continue
            known[rec["emotion"]] = fine
        pairs.append((rel, fine))
        annotations[rel] = {
            k: rec[k]
            for k in ("valence", "arousal", "ambiguity", "age", "tags", "dec_factors", "index")
        }
    labels.raise_if_unknown(
        f"the emotion column holds Plutchik's 24 emotions ({', '.join(tax.labels[-1])}); "
        f"correct line(s) of {ann}, or pass the taxonomy the file was made for"
    )
    folder = Folder(base)
    missing = [rel for rel, _ in pairs if not folder.has(rel)]
    if pairs and len(missing) == len(pairs):
        raise DatasetError(_nothing_downloaded(base, ann, len(pairs)))
    if missing:
        no_url = _without_url(missing)
        logger.warning(
            "FindingEmo: %d of %d annotated images are not in %s (not downloaded%s); "
            "on_missing='skip' leaves them out and counts them",
            len(missing),
            len(pairs),
            base,
            f"; {no_url} of them have no URL in findingemo-light" if no_url else "",
        )
    return finish_listing("findingemo", base, tax, pairs, annotations=annotations)


def _without_url(rels: Sequence[str]) -> int:
    """How many of ``rels`` the package's URL list cannot fetch (0 if it is not installed)."""
    path = _package_file("dataset_urls_exploded.json")
    if path is None:
        return 0
    try:
        urls = json.loads(path.read_text(encoding="utf-8"))
        known = {_image_rel(str(u["rel_path"]), "") for u in urls if u.get("url")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DatasetError):
        return 0
    return sum(rel not in known for rel in rels)


def _nothing_downloaded(base: Path, ann: Path, n: int) -> str:
    names = {p.name for p in base.iterdir()}
    if {"train.json", "image", "annotation"} <= names:
        hint = "This folder looks like EmoSet-118K: read it with the 'emoset' adapter. "
    else:
        runs = sorted(base.glob("*/Run_[0-9]*"))
        hint = (
            f"The images seem to be under {runs[0].parent}: pass that folder as root. "
            if runs
            else "Pass the folder you gave download_data(target_dir=...), the one holding "
            "Run_1/ and Run_2/. "
        )
    return f"FindingEmo: none of the {n} images named by {ann} is under {base}. {hint}{_FIX}"


def valence_by_label(
    annotation_file: str | os.PathLike[str] | None = None, *, taxonomy: Taxonomy | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Valence statistics of the images labelled with each label, at every level of the
    taxonomy (default ``plutchik3``; an image counts for its fine label's ancestors):
    ``{level: {label: {"n", "mean", "sd", "ci95", "positive", "negative"}}}`` where
    ``positive`` / ``negative`` are the shares of images with valence above / below 0.
    The polarity of surprise and anticipation in ``plutchik3`` was chosen from this table."""
    tax = taxonomy or get_taxonomy("plutchik3")
    path = Path(annotation_file) if annotation_file is not None else findingemo_annotation_file()
    values: dict[tuple[int, int], list[float]] = defaultdict(list)
    labels = Labels(tax, f"FindingEmo {path}")
    for rec in read_findingemo_annotations(path):
        fine = labels.fine(rec["emotion"], f"line {rec['line']}")
        if fine is None:
            continue
        for depth, idx in enumerate(tax.ancestor_indices(fine)):
            values[(depth, idx)].append(float(rec["valence"]))
    labels.raise_if_unknown(f"correct the emotion column of {path}")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for depth, names in enumerate(tax.labels):
        table: dict[str, dict[str, float]] = {}
        for idx, name in enumerate(names):
            v = values.get((depth, idx), [])
            n = len(v)
            mean = sum(v) / n if n else math.nan
            sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else math.nan
            table[name] = {
                "n": n,
                "mean": mean,
                "sd": sd,
                "ci95": 1.96 * sd / math.sqrt(n) if n > 1 else math.nan,
                "positive": sum(x > 0 for x in v) / n if n else math.nan,
                "negative": sum(x < 0 for x in v) / n if n else math.nan,
            }
        out[tax.level_names[depth]] = table
    return out


def valence_table(annotation_file: str | os.PathLike[str] | None = None) -> str:
    """:func:`valence_by_label` as the Markdown tables of docs/taxonomy.md (one per level)."""
    tables = valence_by_label(annotation_file)
    path = annotation_file or findingemo_annotation_file()
    lines = [f"FindingEmo valence (-3..3) by label, from {path}"]
    for level, table in tables.items():
        lines += [
            "",
            f"| {level} | images | mean valence | 95 % CI | valence > 0 | valence < 0 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {s['n']:,} | {s['mean']:+.2f} | ±{s['ci95']:.2f} | "
            f"{s['positive']:.0%} | {s['negative']:.0%} |"
            for name, s in table.items()
        ]
    return "\n".join(lines)
