"""EmoSet-118K adapter on a tree built to the official release layout from real photos:
labels by name, the official train/val/test split, per-sample attributes, and the errors for
bad split files, missing files and a folder that is not EmoSet."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from data_trees import real_images, write

from mdan_zoo import get_taxonomy
from mdan_zoo.data import (
    DEFAULT_SPLITS,
    DatasetError,
    EmoSetAttributes,
    SplitError,
    SplitSpec,
    load_dataset,
    load_listing,
    load_splits,
)

# info.json's emotion order in the release (not the taxonomy's: names decide, not indices)
RELEASE_ORDER = ["amusement", "awe", "contentment", "excitement",
                 "anger", "disgust", "fear", "sadness"]  # fmt: skip
SIZES = {"train": 3, "val": 1, "test": 2}  # images per emotion and part


def _attributes(k: int) -> dict:
    """Annotation JSON as the release writes it; some images lack some attributes."""
    ann: dict = {"emotion": "x", "brightness": round((k % 11) / 10, 1),
                 "colorfulness": round(((3 * k) % 11) / 10, 1)}  # fmt: skip
    if k % 2 == 0:
        ann["scene"] = "beach" if k % 4 == 0 else "bakery/shop"
        ann["object"] = ["Person", "Dog"][: 1 + k % 2 + (k % 4 == 0)]
    if k % 3 == 0:
        ann["facial_expression"] = "happy"
        ann["human_action"] = "boxing "  # the release's spelling, trailing space included
    return ann


def make_emoset(root: Path, sizes: dict[str, int] = SIZES, *, entry_len: int = 4) -> dict:
    """The official layout: info.json, <part>.json (indented like the release's README) and
    image/<emotion>/<emotion>_<n>.jpg, annotation/<emotion>/<emotion>_<n>.json."""
    root.mkdir(parents=True, exist_ok=True)
    info = {"emotion": {"label2idx": {e: i for i, e in enumerate(RELEASE_ORDER)},
                        "idx2label": {str(i): e for i, e in enumerate(RELEASE_ORDER)}}}  # fmt: skip
    (root / "info.json").write_text(json.dumps(info, indent=2))
    photos = real_images(8 * sum(sizes.values()))
    expected: dict = {"parts": {}, "attributes": {}}
    k = 0
    for part, n in sizes.items():
        entries = []
        for emotion in RELEASE_ORDER:
            for _ in range(n):
                image_id = f"{emotion}_{k:05d}"
                image, ann = (
                    f"image/{emotion}/{image_id}.jpg",
                    f"annotation/{emotion}/{image_id}.json",
                )
                write(root / image, photos[k])
                attrs = _attributes(k)
                write(root / ann, json.dumps(attrs).encode())
                expected["attributes"][image] = attrs
                entry = [emotion, image_id, image, ann] if entry_len == 4 else [emotion, image, ann]
                entries.append(entry)
                k += 1
        (root / f"{part}.json").write_text(json.dumps(entries, indent=4))
        expected["parts"][part] = entries
    return expected


def line_of(path: Path, needle: str) -> int:
    """Line of the '[' (or '{') opening the split-file entry that names ``needle``."""
    text = path.read_text()
    at = text.index(needle)
    return text.count("\n", 0, max(text.rindex("[", 0, at), text.rfind("{", 0, at))) + 1


def test_emoset_taxonomy_is_fis_tree() -> None:
    emoset, fi = get_taxonomy("emoset"), get_taxonomy("fi")
    assert emoset.same_tree(fi) and emoset.num_classes == (2, 8)
    assert emoset.level_names == ("polarity", "emotion")


def test_labels_official_split_and_class_counts(tmp_path: Path) -> None:
    expected = make_emoset(tmp_path)
    listing = load_listing("emoset", tmp_path)
    tax = listing.taxonomy
    assert listing.name == "emoset" and tax.name == "emoset"
    assert len(listing) == 8 * sum(SIZES.values())
    by_rel = dict(listing.entries)
    for entries in expected["parts"].values():
        for emotion, _, image, _ in entries:
            assert tax.labels[-1][by_rel[image]] == emotion
    assert listing.official is not None
    assert {p: len(v) for p, v in listing.official.items()} == {p: 8 * n for p, n in SIZES.items()}
    assert DEFAULT_SPLITS["emoset"].scheme == "official"
    parts = load_splits("emoset", tmp_path, progress=False)
    for part, entries in expected["parts"].items():
        got = sorted(Path(p).relative_to(tmp_path).as_posix() for p, _ in parts[part].samples)
        assert got == sorted(e[2] for e in entries), part  # val is the release's val.json
        assert parts[part].class_counts() == dict.fromkeys(tax.labels[-1], SIZES[part])
        assert parts[part].class_counts("polarity") == {
            "positive": 4 * SIZES[part],
            "negative": 4 * SIZES[part],
        }
    # carving a val part out of train would lose those images to the release's own val.json
    with pytest.raises(SplitError, match="its own 'val' part"):
        load_splits(
            "emoset",
            tmp_path,
            split_spec=SplitSpec("official", val_fraction=0.1),
            split_file=tmp_path / "carved.json",
            progress=False,
        )
    split_file = tmp_path / "mdan_splits" / "emoset_official_seed0.json"
    doc = json.loads(split_file.read_text())
    assert doc["dataset"] == "emoset" and len(doc["content_hash"]) == 64
    # relabelling one entry changes the content hash: the reused split file refuses
    train = tmp_path / "train.json"
    entries = json.loads(train.read_text())
    entries[0][0] = "awe" if entries[0][0] != "awe" else "fear"
    train.write_text(json.dumps(entries, indent=4))
    with pytest.raises(DatasetError, match="changed since split file"):
        load_dataset("emoset", tmp_path, split="train", progress=False)


def test_attributes_per_sample_read_lazily(tmp_path: Path) -> None:
    expected = make_emoset(tmp_path, {"train": 2, "val": 1, "test": 1})
    ds = load_dataset("emoset", tmp_path, split="test", progress=False)
    assert len(ds) == 8
    for path, _ in ds.samples:
        rel = Path(path).relative_to(tmp_path).as_posix()
        attrs = ds.annotations[rel]
        want = expected["attributes"][rel]
        assert isinstance(attrs, EmoSetAttributes)
        assert attrs["split"] == "test" and attrs["image_id"] == Path(rel).stem
        assert attrs["brightness"] == pytest.approx(want["brightness"])
        assert attrs["colorfulness"] == pytest.approx(want["colorfulness"])
        assert attrs["scene"] == want.get("scene")
        assert attrs["object"] == tuple(want.get("object", ()))
        assert attrs["facial_expression"] == want.get("facial_expression")
        assert attrs["human_action"] == want.get("human_action")
        assert set(attrs) == {"image_id", "split", "annotation", "brightness", "colorfulness",
                              "scene", "object", "facial_expression", "human_action"}  # fmt: skip
    # annotation files are read on access only: a broken one does not stop the listing
    rel = next(iter(expected["attributes"]))
    ann = tmp_path / rel.replace("image/", "annotation/").replace(".jpg", ".json")
    ann.write_text('{"brightness": 0.3,\n "scene": }')
    listing = load_listing("emoset", tmp_path)
    with pytest.raises(DatasetError, match=rf"{ann.name} line 2 column 11: not valid JSON"):
        listing.annotations[rel]["scene"]
    ann.write_text('{"brightness": 7}')
    with pytest.raises(DatasetError, match=r"'brightness' is 7, expected a number in \[0, 1\]"):
        load_listing("emoset", tmp_path).annotations[rel]["brightness"]


def test_three_element_entries_are_read_too(tmp_path: Path) -> None:
    make_emoset(tmp_path, {"train": 1, "val": 1, "test": 1}, entry_len=3)
    listing = load_listing("emoset", tmp_path)
    assert len(listing) == 24
    rel = listing.entries[0][0]
    assert listing.annotations[rel]["image_id"] == Path(rel).stem


def test_missing_image_names_split_file_and_line(tmp_path: Path) -> None:
    make_emoset(tmp_path)
    gone = "image/fear/fear_00019.jpg"
    (tmp_path / gone).unlink()
    part = next(p for p in ("train", "val", "test") if gone in (tmp_path / f"{p}.json").read_text())
    line = line_of(tmp_path / f"{part}.json", gone)
    with pytest.raises(DatasetError) as err:
        load_listing("emoset", tmp_path)
    msg = str(err.value)
    assert f"{part}.json line {line}: image {gone}" in msg
    assert "1 file(s) named by the split files" in msg and "unpack EmoSet-118K.zip" in msg
    # a missing annotation file is named the same way
    write(tmp_path / gone, real_images(1)[0])
    ann = "annotation/awe/awe_00003.json"
    (tmp_path / ann).unlink()
    line = line_of(tmp_path / "train.json", ann)
    with pytest.raises(DatasetError, match=rf"train\.json line {line}: annotation {ann}"):
        load_listing("emoset", tmp_path)


def test_unknown_emotion_and_malformed_entries_name_file_and_line(tmp_path: Path) -> None:
    make_emoset(tmp_path, {"train": 1, "val": 1, "test": 1})
    val = tmp_path / "val.json"
    entries = json.loads(val.read_text())
    entries[5][0] = "happiness"
    val.write_text(json.dumps(entries, indent=4))
    line = line_of(val, entries[5][2])
    with pytest.raises(DatasetError, match=rf"'happiness' \(1 x, e\.g\. val\.json line {line}\)"):
        load_listing("emoset", tmp_path)
    entries[5][0] = "awe"
    entries[2] = {"image": entries[2][2]}
    val.write_text(json.dumps(entries, indent=4))
    line = line_of(val, entries[2]["image"])
    with pytest.raises(DatasetError, match=rf"1 malformed entry .*val\.json line {line}: "):
        load_listing("emoset", tmp_path)
    entries[2] = ["amusement", "x", "../../etc/passwd", "annotation/x.json"]
    val.write_text(json.dumps(entries, indent=4))
    line = line_of(val, "../../etc/passwd")
    with pytest.raises(DatasetError, match=rf"val\.json line {line}: \[\"amusement\""):
        load_listing("emoset", tmp_path)
    val.write_text('[\n  ["awe", "a", "image/awe/a.jpg", "annotation/awe/a.json"],\n  oops\n]')
    with pytest.raises(DatasetError, match=r"val\.json line 3 column 3: not valid JSON"):
        load_listing("emoset", tmp_path)
    val.write_text('{"awe": []}')
    with pytest.raises(DatasetError, match=r"val\.json line 1: expected a JSON list"):
        load_listing("emoset", tmp_path)


def test_an_image_listed_twice_is_refused(tmp_path: Path) -> None:
    make_emoset(tmp_path, {"train": 1, "val": 1, "test": 1})
    test, train = tmp_path / "test.json", json.loads((tmp_path / "train.json").read_text())
    entries = json.loads(test.read_text())
    test.write_text(json.dumps([*entries, train[0]], indent=4))
    with pytest.raises(DatasetError, match=r"is listed again \(first at train\.json line 2\)"):
        load_listing("emoset", tmp_path)


def test_a_layout_that_is_not_emoset(tmp_path: Path) -> None:
    (tmp_path / "Run_2" / "Happy kids park").mkdir(parents=True)
    write(tmp_path / "Run_2" / "Happy kids park" / "a.jpg", real_images(1)[0])
    with pytest.raises(DatasetError, match=r"has no train\.json, val\.json, test\.json\. This "
                       r"folder looks like a FindingEmo download"):  # fmt: skip
        load_listing("emoset", tmp_path)
    make_emoset(tmp_path / "nested" / "EmoSet-118K", {"train": 1, "val": 1, "test": 1})
    with pytest.raises(DatasetError, match=r"has no train\.json"):
        load_listing("emoset", tmp_path / "nested")
    with pytest.raises(DatasetError, match=r"split files seem to be in .*EmoSet-118K"):
        load_listing("emoset", tmp_path / "nested")
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match=r"has no train\.json, val\.json, test\.json\. EmoSet"):
        load_listing("emoset", tmp_path / "other")
    listing = load_listing("emoset", tmp_path / "nested" / "EmoSet-118K")
    assert Counter(listing.label_names()) == dict.fromkeys(RELEASE_ORDER, 3)
