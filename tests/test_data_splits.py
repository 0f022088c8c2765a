"""Splits as in the paper: stratified, seeded, kept in split files with a content hash, reused
on rerun, and refused when the dataset changed."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
from data_trees import make_artphoto, make_fi, make_webemo, real_images, write

import mdan_zoo.data.splits as splits_mod
from mdan_zoo.data import (
    DEFAULT_SPLITS,
    SplitError,
    SplitSpec,
    build_transform,
    default_split_file,
    load_dataset,
    load_listing,
    load_splits,
    make_split,
)

FI_SIZES = {"amusement": 20, "anger": 13, "awe": 7, "contentment": 11, "disgust": 5,
            "excitement": 9, "fear": 17, "sadness": 3}  # fmt: skip


@pytest.fixture
def fi_root(tmp_path: Path) -> Path:
    make_fi(tmp_path / "FI", FI_SIZES)
    return tmp_path / "FI"


def _label_of(listing) -> dict[str, str]:
    return dict(zip((r for r, _ in listing.entries), listing.label_names(), strict=True))


def test_ratio_split_is_stratified_and_partitions(fi_root: Path) -> None:
    listing = load_listing("fi", fi_root)
    spec = DEFAULT_SPLITS["fi"]
    assert dict(spec.fractions) == {"train": 0.8, "val": 0.05, "test": 0.15}
    doc = make_split(listing, spec, seed=0)
    parts = doc["parts"]
    everything = [p for part in parts.values() for p in part]
    assert sorted(everything) == sorted(r for r, _ in listing.entries)  # a partition
    label = _label_of(listing)
    for name, frac in spec.fractions:
        counts = Counter(label[p] for p in parts[name])
        for cls, n in FI_SIZES.items():
            assert math.floor(n * frac) <= counts[cls] <= math.ceil(n * frac), (name, cls)
    # part totals are the overall shares of 85, rounded: 68 / 4.25 -> 4 / 12.75 -> 13
    assert [len(parts[k]) for k in ("train", "val", "test")] == [68, 4, 13]


def test_split_is_deterministic_under_the_seed(fi_root: Path) -> None:
    listing = load_listing("fi", fi_root)
    spec = DEFAULT_SPLITS["fi"]
    a, b = make_split(listing, spec, seed=3), make_split(listing, spec, seed=3)
    assert a == b
    c = make_split(listing, spec, seed=4)
    assert c["parts"]["test"] != a["parts"]["test"]
    assert c["content_hash"] == a["content_hash"]


def test_split_file_written_then_reused(fi_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tf = build_transform({"input_size": 32, "resize_size": 36}, train=True)
    first = load_dataset("fi", fi_root, split="train", transform=tf, progress=False)
    path = fi_root / "mdan_splits" / "fi_ratio_seed0.json"
    assert path.is_file()
    doc = json.loads(path.read_text())
    assert doc["format"] == "mdan_zoo.split/1" and doc["num_samples"] == 85
    assert doc["spec"] == {
        "scheme": "ratio",
        "fractions": {"train": 0.8, "val": 0.05, "test": 0.15},
    }
    assert len(doc["content_hash"]) == 64

    def no_new_split(*args, **kwargs):
        raise AssertionError("the split file should have been reused")

    monkeypatch.setattr(splits_mod, "make_split", no_new_split)
    again = load_dataset("fi", fi_root, split="train", progress=False)
    assert again.samples == first.samples
    parts = load_splits("fi", fi_root, train_transform=tf, progress=False)
    assert parts["train"].samples == first.samples
    assert parts["train"].transform is tf and parts["test"].transform is None
    names = [set(p for p, _ in parts[k].samples) for k in ("train", "val", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(map(len, names)) == 85
    # the split folder is not mistaken for a label folder on rerun
    assert len(load_dataset("fi", fi_root, progress=False)) == 85


def test_changed_dataset_is_refused_with_how_to_regenerate(fi_root: Path) -> None:
    load_dataset("fi", fi_root, split="test", progress=False)
    path = fi_root / "mdan_splits" / "fi_ratio_seed0.json"
    write(fi_root / "awe" / "awe_5555.jpg", real_images(1, start=7)[0])
    with pytest.raises(SplitError) as err:
        load_dataset("fi", fi_root, split="test", progress=False)
    msg = str(err.value)
    assert "changed since split file" in msg and "0 listed files are gone, 1 are new" in msg
    assert f"delete {path}" in msg
    (fi_root / "awe" / "awe_5555.jpg").unlink()
    # a relabelled file (moved to another emotion folder) also changes the content
    shutil.move(fi_root / "awe" / "awe_1000.jpg", fi_root / "fear" / "awe_1000.jpg")
    with pytest.raises(SplitError, match="1 listed files are gone, 1 are new"):
        load_dataset("fi", fi_root, split="test", progress=False)
    shutil.move(fi_root / "fear" / "awe_1000.jpg", fi_root / "awe" / "awe_1000.jpg")
    assert len(load_dataset("fi", fi_root, split="test", progress=False)) > 0
    # regenerating as the message says works
    path.unlink()
    write(fi_root / "awe" / "awe_5555.jpg", real_images(1, start=7)[0])
    ds = load_dataset("fi", fi_root, split="train", progress=False)
    assert json.loads(path.read_text())["num_samples"] == 86 and len(ds) > 0


def test_other_spec_or_seed_on_the_same_file_is_refused(fi_root: Path, tmp_path: Path) -> None:
    split_file = tmp_path / "my_split.json"
    load_dataset("fi", fi_root, split="train", split_file=split_file, progress=False)
    with pytest.raises(SplitError, match="seed 0 were asked for|and seed 1 were asked"):
        load_dataset("fi", fi_root, split="train", split_file=split_file, seed=1, progress=False)
    other = SplitSpec("ratio", (("train", 0.5), ("test", 0.5)))
    with pytest.raises(SplitError, match="was made with"):
        load_dataset("fi", fi_root, split="train", split_file=split_file, split_spec=other)
    # different seeds get different default files
    listing = load_listing("fi", fi_root)
    spec = DEFAULT_SPLITS["fi"]
    assert default_split_file(listing, spec, 0) != default_split_file(listing, spec, 1)


def test_edited_split_file_naming_unknown_files(fi_root: Path) -> None:
    load_dataset("fi", fi_root, split="train", progress=False)
    path = fi_root / "mdan_splits" / "fi_ratio_seed0.json"
    doc = json.loads(path.read_text())
    doc["parts"]["test"].append("awe/not_there.jpg")
    path.write_text(json.dumps(doc))
    with pytest.raises(SplitError, match="not in the dataset.*was it edited"):
        load_dataset("fi", fi_root, split="train", progress=False)
    path.write_text("{not json")
    with pytest.raises(SplitError, match="cannot read split file"):
        load_dataset("fi", fi_root, split="train", progress=False)


def test_kfold_for_the_small_sets(tmp_path: Path) -> None:
    sizes = {"amusement": 9, "sad": 7, "fear": 12, "awe": 5, "anger": 6}
    make_artphoto(tmp_path, sizes)
    listing = load_listing("artphoto", tmp_path)
    doc = make_split(listing, DEFAULT_SPLITS["artphoto"], seed=0)
    folds = doc["folds"]
    assert len(folds) == 5
    label = _label_of(listing)
    all_rel = sorted(label)
    tested = Counter(p for f in folds for p in f["test"])
    assert sorted(tested) == all_rel and set(tested.values()) == {1}
    for cls in ("amusement", "sadness", "fear", "awe", "anger"):
        per_fold = [sum(label[p] == cls for p in f["test"]) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (cls, per_fold)
    for f in folds:
        assert sorted(f["train"] + f["val"] + f["test"]) == all_rel
        assert f["val"] and not set(f["val"]) & set(f["train"])
    with pytest.raises(SplitError, match="pass fold=0..4"):
        load_dataset("artphoto", tmp_path, split="test", progress=False)
    with pytest.raises(SplitError, match="pass fold=0..4"):
        load_dataset("artphoto", tmp_path, split="test", fold=5, progress=False)
    got = [
        load_dataset("artphoto", tmp_path, split="test", fold=k, progress=False) for k in range(5)
    ]
    assert sum(len(d) for d in got) == len(listing)
    with pytest.raises(SplitError, match="leave fold unset"):
        load_dataset("fi", _fi_small(tmp_path), split="test", fold=0, progress=False)


def _fi_small(tmp_path: Path) -> Path:
    make_fi(tmp_path / "fi_small", {"awe": 4, "fear": 4})
    return tmp_path / "fi_small"


def test_webemo_official_split_with_validation_from_train(tmp_path: Path) -> None:
    train = [(f"img_{i}.jpg", i % 25) for i in range(100)]
    test = [(f"t_{i}.jpg", (7 * i) % 25) for i in range(25)]
    make_webemo(tmp_path, train, test)
    parts = load_splits("webemo", tmp_path, progress=False)
    test_names = sorted(Path(p).name for p, _ in parts["test"].samples)
    assert test_names == sorted(n for n, _ in test)
    train_names = {Path(p).name for p, _ in parts["train"].samples}
    val_names = {Path(p).name for p, _ in parts["val"].samples}
    assert train_names | val_names == {n for n, _ in train} and not train_names & val_names
    assert 1 <= len(val_names) <= 25  # 5 % of train, per class rounding


def test_emotion6_eighty_twenty(tmp_path: Path) -> None:
    for e, emo in enumerate(["anger", "disgust", "fear", "joy", "sadness", "surprise"]):
        for n, data in enumerate(real_images(10, start=10 * e)):
            write(tmp_path / "images" / emo / f"{n + 1}.jpg", data)
    parts = load_splits("emotion6", tmp_path, progress=False)
    assert parts["test"].class_counts() == dict.fromkeys(
        ["anger", "disgust", "fear", "joy", "sadness", "surprise"], 2
    )
    assert (len(parts["train"]), len(parts["val"])) == (45, 3)  # 75 % / 5 % of 60


def test_skipping_a_broken_file_moves_no_other_sample(fi_root: Path) -> None:
    before = load_splits("fi", fi_root, progress=False)
    victim = before["train"].samples[5][0]
    Path(victim).write_bytes(b"")
    after = load_splits("fi", fi_root, on_missing="skip", progress=False)
    assert after["train"].samples == [s for s in before["train"].samples if s[0] != victim]
    assert after["test"].samples == before["test"].samples
    assert after["train"].skipped == [(victim, "the file is empty (0 bytes)")]
