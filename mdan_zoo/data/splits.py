"""Train / validation / test splits as in the paper (Sec. 5.2), kept in split files.

WEBEmo uses its official split (train25 / test25); FI is split 80/5/15 and Emotion6 80/20 at
random; the small sets (ArtPhoto, IAPS subset, Abstract) are evaluated by 5-fold
cross-validation. Every split here is stratified (per class) and seeded, and written to a JSON
split file together with a content hash of the sample list (relative paths and labels), so a
rerun reuses the same split and a changed dataset is caught instead of silently re-split.

The paper selects nothing on its test sets, and neither do we: where the paper names no
validation part (WEBEmo, Emotion6, the cross-validated sets) a stratified part of the training
data is held out for model selection (``val_fraction``), documented in ``docs/datasets.md``.

Stratification is written here by hand (a few lines of numpy) rather than pulling in
scikit-learn for ``StratifiedKFold`` / ``train_test_split``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._io import atomic_write_text
from ..errors import SplitError
from .dataset import Listing

__all__ = [
    "DEFAULT_SPLITS",
    "SPLIT_FORMAT",
    "SplitError",
    "SplitSpec",
    "content_hash",
    "load_or_make_split",
    "make_split",
    "split_positions",
    "stratified_folds",
    "stratified_partition",
]

logger = logging.getLogger(__name__)

SPLIT_FORMAT = "mdan_zoo.split/1"
Scheme = Literal["ratio", "official", "kfold"]


@dataclass(frozen=True)
class SplitSpec:
    """How a dataset is split.

    Attributes:
        scheme: ``"ratio"`` (random stratified parts, ``fractions``), ``"official"`` (the
            release's own train/test, validation carved from train), ``"kfold"`` (stratified
            ``folds``-fold cross-validation, validation carved from the training folds).
        fractions: part name -> fraction of the samples (``ratio`` only; sums to 1).
        folds: number of folds (``kfold`` only).
        val_fraction: share of the training part held out for validation (``official`` /
            ``kfold``); 0 gives an empty validation part.
    """

    scheme: Scheme = "ratio"
    fractions: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.05), ("test", 0.15))
    folds: int = 5
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.scheme not in ("ratio", "official", "kfold"):
            raise ValueError(f"scheme must be ratio, official or kfold, got {self.scheme!r}")
        fr = tuple((str(n), float(f)) for n, f in dict(self.fractions).items())
        object.__setattr__(self, "fractions", fr)
        if self.scheme == "ratio":
            if any(f < 0 for _, f in fr) or abs(sum(f for _, f in fr) - 1.0) > 1e-6:
                raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fr)}")
            if "train" not in dict(fr):
                raise ValueError(f"split fractions need a 'train' part, got {dict(fr)}")
        if self.scheme == "kfold" and self.folds < 2:
            raise ValueError(f"kfold needs at least 2 folds, got {self.folds}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        if self.scheme == "ratio":
            return {"scheme": "ratio", "fractions": dict(self.fractions)}
        if self.scheme == "official":
            return {"scheme": "official", "val_fraction": self.val_fraction}
        return {"scheme": "kfold", "folds": self.folds, "val_fraction": self.val_fraction}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown split field(s) {unknown}; known: {sorted(known)}")
        args = dict(data)
        if "fractions" in args:
            args["fractions"] = tuple(dict(args["fractions"]).items())
        return cls(**args)

    @property
    def parts(self) -> tuple[str, ...]:
        if self.scheme == "ratio":
            return tuple(n for n, _ in self.fractions)
        return ("train", "val", "test")


DEFAULT_SPLITS: dict[str, SplitSpec] = {
    "webemo": SplitSpec("official", val_fraction=0.05),
    "fi": SplitSpec("ratio", (("train", 0.8), ("val", 0.05), ("test", 0.15))),
    "emotion6": SplitSpec("ratio", (("train", 0.75), ("val", 0.05), ("test", 0.2))),
    "artphoto": SplitSpec("kfold", folds=5, val_fraction=0.1),
    "iaps": SplitSpec("kfold", folds=5, val_fraction=0.1),
    "abstract": SplitSpec("kfold", folds=5, val_fraction=0.1),
    "emoset": SplitSpec("official", val_fraction=0.0),  # the release's own val.json
    "findingemo": SplitSpec("ratio", (("train", 0.8), ("val", 0.05), ("test", 0.15))),
    "folder": SplitSpec("ratio", (("train", 0.8), ("val", 0.1), ("test", 0.1))),
    "csv": SplitSpec("ratio", (("train", 0.8), ("val", 0.1), ("test", 0.1))),
}
"""The paper's split per dataset (Sec. 5.2); EmoSet its official train/val/test, FindingEmo (no
documented split) 80/5/15 like FI; custom data (folder / csv) 80/10/10."""


def content_hash(listing: Listing) -> str:
    """sha256 of the sample list: one ``<relative path>\\t<fine label>`` line per sample, sorted.
    Pixels are not hashed (cheap on 270k files); relabelled, added or removed files change it."""
    h = hashlib.sha256()
    for (rel, _), label in sorted(zip(listing.entries, listing.label_names(), strict=True)):
        h.update(f"{rel}\t{label}\n".encode())
    return h.hexdigest()


def _largest_remainder(raw: np.ndarray) -> np.ndarray:
    counts = np.floor(raw + 1e-9).astype(int)
    rest = int(round(raw.sum())) - int(counts.sum())
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def stratified_partition(
    labels: Sequence[Any], fractions: Sequence[float], rng: np.random.Generator
) -> list[list[int]]:
    """Positions of ``labels`` cut into parts of the given fractions, stratified: every class
    gives each part ``floor`` or ``ceil`` of its share, and the part totals are the overall
    shares rounded (largest remainder), so a small part (5 % validation) is not rounded away
    in every class. Samples are shuffled by ``rng``; each part is returned sorted."""
    frac = np.asarray(fractions, dtype=float)
    by_class: dict[Any, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    classes = sorted(by_class, key=str)
    sizes = np.asarray([len(by_class[y]) for y in classes])
    raw = sizes[:, None] * frac[None, :]
    counts = np.floor(raw + 1e-9).astype(int)
    demand = _largest_remainder(sizes.sum() * frac) - counts.sum(0)
    left = sizes - counts.sum(1)
    remainder = raw - counts
    # hand out the leftover sample of each class to the parts still short (at most +1 a cell)
    tie = rng.permutation(len(classes))
    for c in sorted(range(len(classes)), key=lambda c: (-left[c], tie[c])):
        for _ in range(int(left[c])):
            open_cells = [p for p in range(len(frac)) if remainder[c, p] > 1e-9]
            pool = open_cells or list(range(len(frac)))
            p = max(pool, key=lambda p: (demand[p], remainder[c, p], -p))
            counts[c, p] += 1
            remainder[c, p] = 0.0
            demand[p] -= 1
    parts: list[list[int]] = [[] for _ in fractions]
    for c, y in enumerate(classes):
        idx = np.asarray(by_class[y])
        rng.shuffle(idx)
        start = 0
        for p, n in enumerate(counts[c]):
            parts[p] += idx[start : start + n].tolist()
            start += n
    return [sorted(p) for p in parts]


def stratified_folds(labels: Sequence[Any], folds: int, rng: np.random.Generator) -> list[int]:
    """Fold number of every position: within each class shuffled and dealt round-robin,
    continuing across classes so fold sizes differ by at most one."""
    fold_of = [0] * len(labels)
    by_class: dict[Any, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    offset = 0
    for y in sorted(by_class, key=str):
        idx = np.asarray(by_class[y])
        rng.shuffle(idx)
        for j, i in enumerate(idx.tolist()):
            fold_of[i] = (offset + j) % folds
        offset += len(idx)
    return fold_of


def make_split(listing: Listing, spec: SplitSpec, *, seed: int = 0) -> dict[str, Any]:
    """The split file content for ``listing`` (not written): parts as relative paths."""
    labels = listing.label_names()
    rels = [rel for rel, _ in listing.entries]
    rng = np.random.default_rng(seed)

    def carve(train_pos: list[int], sub_rng: np.random.Generator) -> dict[str, list[int]]:
        if spec.val_fraction <= 0:
            return {"train": train_pos, "val": []}
        keep, val = stratified_partition(
            [labels[i] for i in train_pos], [1 - spec.val_fraction, spec.val_fraction], sub_rng
        )
        return {"train": [train_pos[i] for i in keep], "val": [train_pos[i] for i in val]}

    doc: dict[str, Any] = {
        "format": SPLIT_FORMAT,
        "dataset": listing.name,
        "taxonomy": listing.taxonomy.name,
        "taxonomy_fingerprint": listing.taxonomy.fingerprint(),
        "spec": spec.to_dict(),
        "seed": seed,
        "num_samples": len(listing),
        "content_hash": content_hash(listing),
    }
    if spec.scheme == "ratio":
        parts = stratified_partition(labels, [f for _, f in spec.fractions], rng)
        doc["parts"] = {
            name: [rels[i] for i in pos]
            for (name, _), pos in zip(spec.fractions, parts, strict=True)
        }
    elif spec.scheme == "official":
        if not listing.official:
            raise SplitError(
                f"{listing.name} has no official split; use a 'ratio' or 'kfold' split"
            )
        if "train" not in listing.official:
            raise SplitError(f"{listing.name}: the official split has no 'train' part")
        if "val" in listing.official and spec.val_fraction > 0:
            raise SplitError(
                f"{listing.name}'s official split has its own 'val' part, so val_fraction="
                f"{spec.val_fraction} would carve training images into a part that the release's "
                "val then replaces (they would be in no part at all); use "
                "SplitSpec('official', val_fraction=0.0)"
            )
        parts_pos = carve(list(listing.official["train"]), rng)
        for name, pos in listing.official.items():
            if name != "train":
                parts_pos[name] = list(pos)
        doc["parts"] = {name: [rels[i] for i in sorted(pos)] for name, pos in parts_pos.items()}
    else:
        fold_of = stratified_folds(labels, spec.folds, rng)
        folds = []
        for k in range(spec.folds):
            test = [i for i, f in enumerate(fold_of) if f == k]
            train = [i for i, f in enumerate(fold_of) if f != k]
            parts_pos = carve(train, np.random.default_rng([seed, k]))
            parts_pos["test"] = test
            folds.append({name: [rels[i] for i in pos] for name, pos in parts_pos.items()})
        doc["folds"] = folds
    return doc


def _regen_hint(path: Path) -> str:
    return (
        f"To split the current data afresh, delete {path} (or pass another split_file); the "
        f"new split will differ, so results are no longer comparable with runs on the old one. "
        f"To keep the old split, restore the dataset it was made from."
    )


def load_or_make_split(
    listing: Listing, spec: SplitSpec, path: str | os.PathLike[str], *, seed: int = 0
) -> dict[str, Any]:
    """Read the split file at ``path`` and check it against ``listing`` and ``spec``; if
    there is none, make the split and write it (atomically)."""
    path = Path(path)
    if not path.exists():
        doc = make_split(listing, spec, seed=seed)
        try:
            atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
        except OSError as err:
            raise SplitError(
                f"cannot write split file {path}: {err}. Pass split_file= a writable path"
            ) from err
        logger.info("wrote split file %s (%s, seed %d)", path, spec.to_dict(), seed)
        return doc
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SplitError(f"cannot read split file {path}: {err}. {_regen_hint(path)}") from err
    if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT:
        raise SplitError(
            f"{path} is not an mdan_zoo split file (format {SPLIT_FORMAT!r}). {_regen_hint(path)}"
        )
    if doc.get("dataset") != listing.name:
        raise SplitError(
            f"split file {path} is for dataset {doc.get('dataset')!r}, not {listing.name!r}; "
            f"pass the split file of this dataset"
        )
    if doc.get("spec") != spec.to_dict() or doc.get("seed") != seed:
        raise SplitError(
            f"split file {path} was made with {doc.get('spec')} and seed {doc.get('seed')}, but "
            f"{spec.to_dict()} and seed {seed} were asked for. Ask for the recorded split, or "
            f"pass another split_file for the new one"
        )
    now = content_hash(listing)
    if doc.get("content_hash") != now:
        listed = {p for part in _all_parts(doc) for p in part}
        have = {rel for rel, _ in listing.entries}
        gone, new = len(listed - have), len(have - listed)
        raise SplitError(
            f"the dataset at {listing.root} changed since split file {path} was made: it had "
            f"{doc.get('num_samples')} samples (hash {str(doc.get('content_hash'))[:12]}), now "
            f"{len(listing)} (hash {now[:12]}); {gone} listed files are gone, {new} are new"
            f"{', and labels differ' if not gone and not new else ''}. {_regen_hint(path)}"
        )
    have = {rel for rel, _ in listing.entries}
    stray = [p for part in _all_parts(doc) for p in part if p not in have]
    if stray:
        raise SplitError(
            f"split file {path} names {len(stray)} files that are not in the dataset, e.g. "
            f"{stray[:3]} (was it edited?). {_regen_hint(path)}"
        )
    logger.info("reusing split file %s", path)
    return doc


def _all_parts(doc: Mapping[str, Any]) -> list[list[str]]:
    if "folds" in doc:
        return [list(p) for fold in doc["folds"] for p in fold.values()]
    return [list(p) for p in doc.get("parts", {}).values()]


def split_positions(
    doc: Mapping[str, Any], listing: Listing, part: str, *, fold: int | None = None
) -> list[int]:
    """Positions in ``listing.entries`` of ``part`` (``fold`` for cross-validation)."""
    if "folds" in doc:
        n = len(doc["folds"])
        if fold is None or not 0 <= fold < n:
            raise SplitError(
                f"{listing.name} is evaluated by {n}-fold cross-validation: pass fold=0..{n - 1} "
                f"(got {fold}); report the mean and std over the folds"
            )
        parts = doc["folds"][fold]
    else:
        if fold is not None:
            raise SplitError(
                f"{listing.name} uses a {doc['spec']['scheme']} split, not cross-validation: "
                f"leave fold unset"
            )
        parts = doc["parts"]
    if part not in parts:
        raise SplitError(f"{listing.name} has no split part {part!r}; parts: {sorted(parts)}")
    pos = {rel: i for i, (rel, _) in enumerate(listing.entries)}
    return [pos[rel] for rel in parts[part]]
