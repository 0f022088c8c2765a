"""EmoSet-118K (Yang et al., ICCV 2023) in its official release layout, with its official split.

The release (``EmoSet-118K.zip``, layout documented in the authors' README and read by their
``EmoSet.py``)::

    root/info.json                 label <-> index maps of the emotions and attributes
    root/train.json, val.json, test.json
                                   [emotion, image_id, image path, annotation path] entries
    root/image/<emotion>/<image_id>.jpg
    root/annotation/<emotion>/<image_id>.json   brightness, colorfulness, scene, object,
                                                facial_expression, human_action

Labels are Mikels' eight, matched by name (the ``emoset`` taxonomy is FI's tree). The split
files are the official train / val / test split (94,481 / 5,905 / 17,716 images). Each sample's
attributes are exposed in ``Listing.annotations`` / ``ImageDataset.annotations`` (keyed by the
image's relative path) as an :class:`EmoSetAttributes`, which reads the annotation file the first
time it is looked at: listing 118k images never opens 118k JSON files.

Every file a split file names must exist: the release ships all of them, so a missing one is a
broken download, and silently skipping it would change the official test set. The error names
the split file and the line of the entry.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._hints import docs_url
from ..taxonomy import Taxonomy, get_taxonomy
from ._listing import SHOW, Labels, dataset_root, finish_listing
from .dataset import Listing
from .fashion_mnist import DatasetError

__all__ = [
    "EMOSET_ATTRIBUTES",
    "EMOSET_SPLITS",
    "EmoSetAttributes",
    "list_emoset",
]

logger = logging.getLogger(__name__)

EMOSET_SPLITS = ("train", "val", "test")
"""The official split files, ``<part>.json`` in the dataset root."""

EMOSET_ATTRIBUTES = (
    "brightness",
    "colorfulness",
    "scene",
    "object",
    "facial_expression",
    "human_action",
)
"""The six emotion attributes of the release, under the keys its annotation files use."""

_FIX = (
    "EmoSet-118K (Yang et al., ICCV 2023) unpacks to info.json, train.json, val.json, test.json "
    "beside the folders image/<emotion>/ and annotation/<emotion>/; pass that folder as root "
    f"(see {docs_url('datasets.md')})."
)
_WS = re.compile(r"[ \t\n\r]*")


class EmoSetAttributes(Mapping[str, Any]):
    """The attributes of one EmoSet image: ``image_id``, ``split``, ``annotation`` (its file,
    relative to the root) and the six of :data:`EMOSET_ATTRIBUTES`, read from the annotation
    file on first access. Absent attributes are ``None`` (``object``: an empty tuple), as the
    release leaves them out where there is no ground truth; ``brightness`` and
    ``colorfulness`` are floats in [0, 1], ``object`` a tuple of class names."""

    __slots__ = ("_data", "_fixed", "_path")

    def __init__(
        self, path: str | os.PathLike[str], *, image_id: str, split: str, rel: str
    ) -> None:
        self._path = os.fspath(path)
        self._fixed = {"image_id": image_id, "split": split, "annotation": rel}
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {**self._fixed, **_read_attributes(self._path)}
        return self._data

    def __getitem__(self, key: str) -> Any:
        if key in self._fixed:
            return self._fixed[key]
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter((*self._fixed, *EMOSET_ATTRIBUTES))

    def __len__(self) -> int:
        return len(self._fixed) + len(EMOSET_ATTRIBUTES)

    def __repr__(self) -> str:
        shown = self._data if self._data is not None else {**self._fixed, "...": "not read yet"}
        return f"EmoSetAttributes({shown})"


def _read_attributes(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        raise DatasetError(f"EmoSet: cannot read annotation file {path}: {err}. {_FIX}") from err
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"EmoSet: annotation file {path} line {err.lineno} column {err.colno}: not valid "
            f"JSON ({err.msg}). Restore the file from the release"
        ) from None
    if not isinstance(data, dict):
        raise DatasetError(
            f"EmoSet: annotation file {path} line 1: expected a JSON object of attributes "
            f"{list(EMOSET_ATTRIBUTES)}, got {type(data).__name__}"
        )
    out: dict[str, Any] = {}
    for key in ("brightness", "colorfulness"):
        value = data.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1
        ):
            raise DatasetError(
                f"EmoSet: annotation file {path}: {key!r} is {value!r}, expected a number in [0, 1]"
            )
        out[key] = None if value is None else float(value)
    for key in ("scene", "facial_expression", "human_action"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise DatasetError(
                f"EmoSet: annotation file {path}: {key!r} is {value!r}, expected a class name"
            )
        out[key] = value
    objects = data.get("object") or []
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise DatasetError(
            f"EmoSet: annotation file {path}: 'object' is {objects!r}, expected a list of names"
        )
    out["object"] = tuple(objects)
    return out


class JsonList:
    """The items of a JSON list file, and the line each item starts on, found only when an
    error needs it (a second pass over 94k entries costs more than the parse)."""

    def __init__(self, path: Path, what: str, fix: str) -> None:
        try:
            self.text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"{what}: cannot read {path}: {err}. {fix}") from err
        try:
            data = json.loads(self.text)
        except json.JSONDecodeError as err:
            raise DatasetError(
                f"{what}: {path} line {err.lineno} column {err.colno}: not valid JSON "
                f"({err.msg}). {fix}"
            ) from None
        if not isinstance(data, list):
            raise DatasetError(
                f"{what}: {path} line 1: expected a JSON list of entries, got "
                f"{type(data).__name__}. {fix}"
            )
        self.name = path.name
        self.items: list[Any] = data
        self._lines: list[int] | None = None

    def line(self, i: int) -> int:
        """The line item ``i`` starts on."""
        if self._lines is None:
            text, decoder = self.text, json.JSONDecoder()
            pos = _skip(text, 0) + 1  # past "["
            line, counted = 1, 0
            self._lines = []
            for _ in self.items:
                pos = _skip(text, pos)
                line += text.count("\n", counted, pos)
                counted = pos
                pos = decoder.raw_decode(text, pos)[1]
                self._lines.append(line)
                pos = _skip(text, pos) + 1  # past "," or "]"
        return self._lines[i]


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _clean_rel(raw: Any) -> str | None:
    """A release-relative POSIX path, or None if it is not one (absolute, ``..``, empty).
    String operations: pathlib costs seconds over 236k paths."""
    if not isinstance(raw, str):
        return None
    rel = raw.strip().replace("\\", "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or rel.startswith("/") or ".." in parts or ":" in parts[0]:
        return None
    return "/".join(parts)


class Folder:
    """Which files exist, by listing each folder once (a stat per file is slow on 118k)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cache: dict[str, frozenset[str]] = {}

    def has(self, rel: str) -> bool:
        parent, _, name = rel.rpartition("/")
        if parent not in self.cache:
            folder = self.base / parent
            try:
                self.cache[parent] = frozenset(e.name for e in os.scandir(folder) if e.is_file())
            except OSError:
                self.cache[parent] = frozenset()
        return name in self.cache[parent]


def list_emoset(root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None) -> Listing:
    """EmoSet-118K: the official ``train.json`` / ``val.json`` / ``test.json`` entries
    ``[emotion, image_id, image path, annotation path]`` (the release's README; the
    ``[emotion, image path, annotation path]`` form is accepted too), labels matched by name,
    the official split kept on the listing and each sample's attributes in ``annotations``."""
    tax = taxonomy or get_taxonomy("emoset")
    base = dataset_root(root, "EmoSet")
    missing_files = [f"{p}.json" for p in EMOSET_SPLITS if not (base / f"{p}.json").is_file()]
    if missing_files:
        raise DatasetError(_layout_message(base, missing_files))
    labels = Labels(tax, f"EmoSet ({base})")
    known: dict[str, int] = {}  # 8 names over 118k entries: look each up once
    folder = Folder(base)
    pairs: list[tuple[str, int]] = []
    official: dict[str, list[str]] = {}
    annotations: dict[str, EmoSetAttributes] = {}
    first: dict[str, tuple[JsonList, int]] = {}
    bad: list[str] = []
    absent: list[str] = []
    for part in EMOSET_SPLITS:
        path = base / f"{part}.json"
        split = JsonList(path, "EmoSet", _FIX)
        rels: list[str] = []
        for i, item in enumerate(split.items):
            entry = _entry(item)
            if entry is None:
                bad.append(f"{path.name} line {split.line(i)}: {json.dumps(item)[:100]}")
                continue
            label, image_id, image, ann = entry
            fine = known.get(label)
            if fine is None:
                fine = labels.fine(label, f"{path.name} line {split.line(i)}")
                if fine is not None:
                    known[label] = fine
            for rel, kind in ((image, "image"), (ann, "annotation")):
                if not folder.has(rel):
                    absent.append(f"{path.name} line {split.line(i)}: {kind} {rel}")
            if image in first:
                other, j = first[image]
                bad.append(
                    f"{path.name} line {split.line(i)}: {image} is listed again (first at "
                    f"{other.name} line {other.line(j)})"
                )
                continue
            first[image] = (split, i)
            if fine is None:
                continue
            rels.append(image)
            pairs.append((image, fine))
            annotations[image] = EmoSetAttributes(
                os.path.join(base, ann), image_id=image_id, split=part, rel=ann
            )
        official[part] = rels
    if bad:
        raise DatasetError(
            f"EmoSet: {len(bad)} malformed entr{'y' if len(bad) == 1 else 'ies'} in the split "
            f"files: {'; '.join(bad[:SHOW])}. Each entry is [emotion, image_id, "
            f'"image/<emotion>/<id>.jpg", "annotation/<emotion>/<id>.json"], each image listed '
            f"once. {_FIX}"
        )
    labels.raise_if_unknown(
        "the first element of every split-file entry is one of Mikels' eight emotions; "
        "restore the split files from the release, or pass the taxonomy they were made for"
    )
    if absent:
        shown = "; ".join(absent[:SHOW])
        more = f" and {len(absent) - SHOW} more" if len(absent) > SHOW else ""
        raise DatasetError(
            f"EmoSet: {len(absent)} file(s) named by the split files are not in {base}: "
            f"{shown}{more}. The release ships every image and annotation, so the download or "
            f"the unpacking is incomplete: unpack EmoSet-118K.zip again into {base}. Skipping "
            f"them (on_missing='skip') is not offered here: it would change the official test "
            f"set, and results would no longer compare with published ones"
        )
    logger.info(
        "EmoSet: %s",
        ", ".join(f"{p} {len(official[p])}" for p in EMOSET_SPLITS),
    )
    return finish_listing("emoset", base, tax, pairs, official=official, annotations=annotations)


def _entry(item: Any) -> tuple[str, str, str, str] | None:
    """``(label, image_id, image, annotation)`` of a split-file entry, or None if malformed."""
    if not isinstance(item, list) or len(item) not in (3, 4):
        return None
    if not all(isinstance(x, str) for x in item):
        return None
    label = item[0].strip()
    image, ann = _clean_rel(item[-2]), _clean_rel(item[-1])
    if not label or image is None or ann is None:
        return None
    image_id = item[1].strip() if len(item) == 4 else image.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return label, image_id, image, ann


def _layout_message(base: Path, missing: list[str]) -> str:
    names = {p.name for p in base.iterdir()}
    hint = ""
    if {"Run_1", "Run_2"} & names or any(n.endswith(".ann") for n in names):
        hint = (
            " This folder looks like a FindingEmo download (Run_1/, Run_2/ folders): read it "
            "with the 'findingemo' adapter."
        )
    else:
        deeper = [p for p in sorted(base.iterdir()) if p.is_dir() and (p / "train.json").is_file()]
        if deeper:
            hint = f" The split files seem to be in {deeper[0]}: pass that folder as root."
    return f"EmoSet: {base} has no {', '.join(missing)}.{hint} {_FIX}"
