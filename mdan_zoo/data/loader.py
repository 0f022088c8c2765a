"""One entry point for every dataset: list it, split it (split file), check its files.

``load_dataset("fi", "/data/FI", split="train")`` -> :class:`ImageDataset`. The split is made on
the *listing* (what the release or the folder names), before any file is opened, so a file
that later turns out broken and is skipped does not move other samples between parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..taxonomy import Taxonomy, get_taxonomy
from .adapters import SPLIT_DIR_NAME
from .catalog import DATASETS
from .dataset import CheckMode, ImageDataset, Listing, OnMissing, check_files
from .fashion_mnist import DatasetError
from .splits import DEFAULT_SPLITS, SplitSpec, load_or_make_split, split_positions

__all__ = [
    "default_split_file",
    "list_datasets",
    "load_dataset",
    "load_listing",
    "load_splits",
]

logger = logging.getLogger(__name__)

Transform = Callable[[Image.Image], Any]


def list_datasets() -> list[str]:
    """Adapter names accepted by :func:`load_dataset`."""
    return list(DATASETS)


def load_listing(
    name: str, root: str | os.PathLike[str], *, taxonomy: Taxonomy | None = None
) -> Listing:
    """Run adapter ``name`` on ``root`` (a folder; for ``csv`` the CSV file)."""
    key = name.lower()
    if key not in DATASETS:
        raise DatasetError(f"no dataset adapter {name!r}; choose one of {list_datasets()}")
    info = DATASETS[key]
    if taxonomy is None:
        if info.taxonomy is None:
            raise DatasetError(
                f"the {key!r} adapter works for any taxonomy: pass taxonomy= (a Taxonomy, e.g. "
                f"Taxonomy.from_json('taxonomy.json') or get_taxonomy('fashion_mnist'))"
            )
        taxonomy = get_taxonomy(info.taxonomy)
    return info.lister(root, taxonomy=taxonomy)


def default_split_file(listing: Listing, spec: SplitSpec, seed: int) -> Path:
    """``<root>/mdan_splits/<dataset>_<scheme>_seed<seed>.json``; a split other than the
    dataset's default (:data:`DEFAULT_SPLITS`) adds a short hash of its spec
    (``folder_ratio-1a2b3c4d_seed0.json``), so it never collides with the default's file."""
    scheme: str = spec.scheme
    if spec != DEFAULT_SPLITS.get(listing.name, DEFAULT_SPLITS["folder"]):
        text = json.dumps(spec.to_dict(), sort_keys=True)
        scheme += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return listing.root / SPLIT_DIR_NAME / f"{listing.name}_{scheme}_seed{seed}.json"


def load_splits(
    name: str,
    root: str | os.PathLike[str],
    *,
    fold: int | None = None,
    taxonomy: Taxonomy | None = None,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
    on_missing: OnMissing = "error",
    check: CheckMode = "header",
    split_spec: SplitSpec | None = None,
    seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, ImageDataset]:
    """Every part of the dataset's split (``train``, ``val``, ``test``) as datasets; the train
    part gets ``train_transform``, the others ``eval_transform``. Arguments as
    :func:`load_dataset`."""
    listing = load_listing(name, root, taxonomy=taxonomy)
    spec = split_spec or DEFAULT_SPLITS.get(listing.name, DEFAULT_SPLITS["folder"])
    path = Path(split_file) if split_file is not None else default_split_file(listing, spec, seed)
    doc = load_or_make_split(listing, spec, path, seed=seed)
    parts = doc["folds"][0].keys() if "folds" in doc else doc["parts"].keys()
    out: dict[str, ImageDataset] = {}
    for part in parts:
        pos = split_positions(doc, listing, part, fold=fold)
        tf = train_transform if part == "train" else eval_transform
        out[part] = _dataset(
            listing, pos, tf, on_missing=on_missing, check=check, progress=progress, part=part
        )
    return out


def load_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    split: str = "all",
    fold: int | None = None,
    taxonomy: Taxonomy | None = None,
    transform: Transform | None = None,
    on_missing: OnMissing = "error",
    check: CheckMode = "header",
    split_spec: SplitSpec | None = None,
    seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> ImageDataset:
    """A dataset by adapter name (:func:`list_datasets`) and folder.

    Args:
        name: ``fi``, ``webemo``, ``emotion6``, ``artphoto``, ``abstract``, ``iaps``,
            ``emoset``, ``findingemo``, ``folder`` or ``csv``.
        root: the dataset folder (for ``csv``: the CSV file).
        split: ``"all"`` (every listed sample, no split file) or a part of the dataset's split
            (``train``, ``val``, ``test``); the split file is made on first use and reused.
        fold: the fold (0..4) for the cross-validated sets (ArtPhoto, IAPS, Abstract).
        taxonomy: default the dataset's built-in one; required for ``folder`` and ``csv``.
        transform: applied to each RGB PIL image.
        on_missing: ``"error"`` stops with one error listing missing/unreadable files;
            ``"skip"`` leaves them out, logs and records them in ``dataset.skipped``.
        check: how files are checked up front: ``exists``, ``header`` (default) or ``full``.
        split_spec: override the paper's split (:data:`DEFAULT_SPLITS`).
        seed: seed of the random split.
        split_file: where the split is kept (default :func:`default_split_file`).
        progress: show a progress bar while checking files.
    """
    if split == "all":
        if fold is not None:
            raise DatasetError("fold only applies to a split part: pass split='train'/'val'/'test'")
        listing = load_listing(name, root, taxonomy=taxonomy)
        pos = list(range(len(listing)))
    else:
        listing = load_listing(name, root, taxonomy=taxonomy)
        spec = split_spec or DEFAULT_SPLITS.get(listing.name, DEFAULT_SPLITS["folder"])
        path = (
            Path(split_file) if split_file is not None else default_split_file(listing, spec, seed)
        )
        doc = load_or_make_split(listing, spec, path, seed=seed)
        pos = split_positions(doc, listing, split, fold=fold)
    return _dataset(
        listing, pos, transform, on_missing=on_missing, check=check, progress=progress, part=split
    )


def _dataset(
    listing: Listing,
    positions: list[int],
    transform: Transform | None,
    *,
    on_missing: OnMissing,
    check: CheckMode,
    progress: bool,
    part: str,
) -> ImageDataset:
    paths = [listing.path(listing.entries[i][0]) for i in positions]
    source = f"{listing.name} ({part}, {listing.root})"
    bad = check_files(paths, mode=check, on_missing=on_missing, source=source, progress=progress)
    bad_set = {p for p, _ in bad}
    if bad:
        logger.warning(
            "%s: skipped %d of %d missing or unreadable files (see dataset.skipped)",
            source,
            len(bad),
            len(paths),
        )
    samples = [
        (p, listing.entries[i][1])
        for p, i in zip(paths, positions, strict=True)
        if p not in bad_set
    ]
    if not samples:
        raise DatasetError(
            f"{source}: no usable images left ({len(bad)} skipped); check the folder"
        )
    return ImageDataset(
        samples,
        listing.taxonomy,
        transform,
        name=listing.name,
        skipped=bad,
        dropped=listing.dropped,
        annotations=listing.annotations,
        on_missing=on_missing,
    )
