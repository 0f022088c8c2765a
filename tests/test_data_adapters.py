"""Every dataset adapter on real photos laid out as the public release is: counts, labels by
name, aliases, the ties of Abstract, WEBEmo's indices through category.txt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from data_trees import (
    MIKELS,
    WEBEMO_CATEGORIES,
    fashion_images,
    make_artphoto,
    make_fi,
    make_webemo,
    real_images,
    write,
)
from PIL import Image

from mdan_zoo import get_taxonomy
from mdan_zoo.data import (
    DatasetError,
    ImageDataset,
    build_transform,
    list_datasets,
    load_dataset,
    load_listing,
    url_basename,
)


def test_registry_names_every_adapter() -> None:
    assert set(list_datasets()) == {
        "fi", "webemo", "emotion6", "artphoto", "abstract", "iaps", "emoset", "findingemo",
        "folder", "csv",
    }  # fmt: skip
    with pytest.raises(DatasetError, match="choose one of"):
        load_listing("fii", ".")


def test_fi_folders_capitalised_and_aliases(tmp_path: Path) -> None:
    folders = {"Amusement": 3, "anger": 2, "AWE": 2, "Content": 2, "disgust": 1,
               "Excitement": 2, "fear": 3, "Sad": 4}  # fmt: skip
    make_fi(tmp_path, folders)
    (tmp_path / "fear" / "Thumbs.db").write_bytes(b"junk")  # non-image files are ignored
    ds = load_dataset("fi", tmp_path, transform=build_transform({"input_size": 64,
                      "resize_size": 72}, train=False), progress=False)  # fmt: skip
    assert len(ds) == sum(folders.values())
    assert ds.class_counts() == {"amusement": 3, "anger": 2, "awe": 2, "contentment": 2,
                                 "disgust": 1, "excitement": 2, "fear": 3, "sadness": 4}  # fmt: skip
    assert ds.class_counts("polarity") == {"positive": 9, "negative": 10}
    tax = get_taxonomy("fi")
    for path, target in ds.samples:
        folder = Path(path).parent.name
        assert tax.labels[-1][target] == tax.canonical(folder)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert y == ds.targets[0]
    assert ds.skipped == []


def test_webemo_indices_go_through_category_txt_with_typos(tmp_path: Path) -> None:
    # category.txt in another order than the built-in taxonomy: names decide, not indices
    cats = list(reversed(WEBEMO_CATEGORIES))
    train = [(f"img_{i}.jpg", i % 25) for i in range(30)]
    test = [(f"t_{i}.jpg", (3 * i) % 25) for i in range(10)]
    make_webemo(tmp_path, train, test, categories=cats)
    listing = load_listing("webemo", tmp_path)
    tax = get_taxonomy("webemo")
    by_rel = dict(listing.entries)
    for split, items in (("train", train), ("test", test)):
        for name, idx in items:
            rel = f"{split}/{cats[idx]}/{name}"
            assert tax.labels[-1][by_rel[rel]] == cats[idx]
    # the typos of the release are the canonical ids
    assert "cheerfullness" in {tax.labels[-1][i] for _, i in listing.entries}
    assert listing.official is not None
    assert len(listing.official["train"]) == 30 and len(listing.official["test"]) == 10
    ds = load_dataset("webemo", tmp_path, split="test", progress=False)
    assert sorted(Path(p).name for p, _ in ds.samples) == sorted(n for n, _ in test)


def test_webemo_category_txt_with_corrected_spellings(tmp_path: Path) -> None:
    cats = [
        {"cheerfullness": "Cheerfulness", "irritabilty": "irritability"}.get(c, c)
        for c in WEBEMO_CATEGORIES
    ]
    make_webemo(tmp_path, [("a.jpg", 1), ("b.jpg", 11)], [("c.jpg", 0)], categories=cats)
    ds = load_dataset("webemo", tmp_path, progress=False)
    assert ds.class_counts()["cheerfullness"] == 1
    assert ds.class_counts()["irritabilty"] == 1


def test_url_basename() -> None:
    assert url_basename("https://x.org/a/b/photo%201.jpg?w=2#f") == "photo 1.jpg"


def test_emotion6_folders_and_ground_truth(tmp_path: Path) -> None:
    emotions = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    header = "[image_filename]\t[valence]\tarousal\tanger\tdisgust\tfear\t[prob. joy]\tsadness\tsurprise\tneutral"
    lines = [header]
    k = 0
    for e, emo in enumerate(emotions):
        for n in range(1, 4):
            write(tmp_path / "images" / emo / f"{n}.jpg", real_images(1, start=k)[0])
            probs = ["0.1"] * 7
            probs[e] = "0.4"
            lines.append("\t".join([f"{emo}/{n}.jpg", "5.5", "4.0", *probs]))
            k += 1
    (tmp_path / "ground_truth.txt").write_text("\n".join(lines) + "\n")
    ds = load_dataset("emotion6", tmp_path, progress=False)
    assert ds.class_counts() == dict.fromkeys(emotions, 3)
    assert ds.annotations["images/joy/2.jpg"]["joy"] == pytest.approx(0.4)
    assert ds.annotations["images/joy/2.jpg"]["valence"] == pytest.approx(5.5)
    assert ds.class_counts("polarity") == {"positive": 6, "negative": 12}


def test_artphoto_prefix_labels_and_sad(tmp_path: Path) -> None:
    make_artphoto(tmp_path, {"amusement": 2, "sad": 3, "fear": 2, "Awe": 1})
    ds = load_dataset("artphoto", tmp_path, progress=False)
    counts = ds.class_counts()
    assert counts["sadness"] == 3 and counts["amusement"] == 2 and counts["awe"] == 1
    assert sum(counts.values()) == 8


def test_abstract_argmax_and_ties_dropped(tmp_path: Path) -> None:
    cols = ["Amusement", "Anger", "Awe", "Content", "Disgust", "Excitement", "Fear", "Sad"]
    rows = [
        ("abstract_1.jpg", [5, 0, 1, 0, 0, 0, 0, 0]),  # amusement
        ("abstract_2.jpg", [0, 0, 0, 7, 0, 0, 0, 1]),  # Content -> contentment
        ("abstract_3.jpg", [0, 0, 0, 0, 0, 0, 2, 6]),  # Sad -> sadness
        ("abstract_4.jpg", [3, 0, 3, 0, 0, 0, 0, 0]),  # tie -> dropped
        ("abstract_5.jpg", [0, 0, 0, 0, 0, 0, 0, 0]),  # no votes, all tied -> dropped
        ("abstract_6.jpg", [0, 4, 0, 0, 1, 0, 0, 0]),  # anger
    ]
    text = '"",' + ",".join(f'"{c}"' for c in cols) + "\n"
    for (name, votes), data in zip(rows, real_images(len(rows)), strict=True):
        text += f"\"'{name}'\"," + ",".join(map(str, votes)) + "\n"
        write(tmp_path / "testImages_abstract" / name, data)
    (tmp_path / "ABSTRACT_groundTruth.csv").write_text(text)
    ds = load_dataset("abstract", tmp_path, progress=False)
    assert len(ds) == 4
    assert ds.dropped["tied votes"] == 2
    got = {Path(p).name: ds.taxonomy.labels[-1][t] for p, t in ds.samples}
    assert got == {"abstract_1.jpg": "amusement", "abstract_2.jpg": "contentment",
                   "abstract_3.jpg": "sadness", "abstract_6.jpg": "anger"}  # fmt: skip


def test_iaps_list_file(tmp_path: Path) -> None:
    entries = [("1050", "fear"), ("1300", "Fear"), ("2040", "contentment"),
               ("2352.2", "sad"), ("1440", "amusement"), ("9301", "disgust/anger")]  # fmt: skip
    lines = ["picture,category"] + [f"{n},{c}" for n, c in entries]
    (tmp_path / "iaps_list.txt").write_text("\n".join(lines) + "\n")
    for (num, _), data in zip(entries, real_images(len(entries)), strict=True):
        write(tmp_path / "images" / f"{num}.jpg", data)
    ds = load_dataset("iaps", tmp_path, progress=False)
    assert len(ds) == 5
    assert ds.dropped["several categories"] == 1
    got = {Path(p).stem: ds.taxonomy.labels[-1][t] for p, t in ds.samples}
    assert got == {"1050": "fear", "1300": "fear", "2040": "contentment",
                   "2352.2": "sadness", "1440": "amusement"}  # fmt: skip


def _fashion_nested(root: Path) -> Counter:
    tax = get_taxonomy("fashion_mnist")
    folder = {"T-shirt/top": "tshirt", "Ankle boot": "ankle_boot"}
    counts: Counter = Counter()
    for i, (label, data) in enumerate(fashion_images()):
        fine = tax.labels[-1][label]
        coarse, mid, _ = tax.ancestors(fine)
        write(root / coarse / mid / folder.get(fine, fine) / f"{i}.png", data)
        counts[fine] += 1
    return counts


def test_folder_nested_three_levels_real_fashion_images(tmp_path: Path) -> None:
    counts = _fashion_nested(tmp_path)
    tax = get_taxonomy("fashion_mnist")
    ds = load_dataset("folder", tmp_path, taxonomy=tax, progress=False)
    assert len(ds) == 20
    assert {k: v for k, v in ds.class_counts().items() if v} == dict(counts)
    # the images really are what their label says: a real 28 x 28 Fashion-MNIST picture
    img = ds.image(0)
    assert img.size == (28, 28)


def test_folder_fine_label_at_any_depth(tmp_path: Path) -> None:
    tax = get_taxonomy("mikels")
    data = real_images(4)
    write(tmp_path / "batch1" / "Sad" / "x.jpg", data[0])
    write(tmp_path / "joyful" / "awe" / "y.jpg", data[1])
    write(tmp_path / "negative" / "fear" / "extra" / "z.jpg", data[2])
    write(tmp_path / "awe" / "w.jpg", data[3])
    ds = load_dataset("folder", tmp_path, taxonomy=tax, progress=False)
    got = {Path(p).name: tax.labels[-1][t] for p, t in ds.samples}
    assert got == {"x.jpg": "sadness", "y.jpg": "awe", "z.jpg": "fear", "w.jpg": "awe"}


def test_folder_nesting_that_contradicts_the_taxonomy(tmp_path: Path) -> None:
    write(tmp_path / "positive" / "fear" / "a.jpg", real_images(1)[0])
    with pytest.raises(DatasetError, match=r"contradict.*positive/fear/a.jpg.*negative/fear"):
        load_dataset("folder", tmp_path, taxonomy=get_taxonomy("mikels"), progress=False)


def test_folder_and_csv_need_a_taxonomy(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pass taxonomy="):
        load_dataset("folder", tmp_path, progress=False)


def test_csv_paths_and_labels(tmp_path: Path) -> None:
    data = real_images(4)
    rows = [("imgs/a.jpg", "Awe"), ("imgs/b.jpg", "sad"), ("c.jpg", "fear"), ("imgs/d.jpg", "awe")]
    for (rel, _), d in zip(rows, data, strict=True):
        write(tmp_path / rel, d)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    ds = load_dataset("csv", csv_file, taxonomy=get_taxonomy("mikels"), progress=False)
    counts = ds.class_counts()
    assert counts["awe"] == 2 and counts["sadness"] == 1 and counts["fear"] == 1
    # headerless works too
    csv_file.write_text("".join(f"{p},{lab}\n" for p, lab in rows))
    assert len(load_dataset("csv", csv_file, taxonomy=get_taxonomy("mikels"), progress=False)) == 4


def test_image_dataset_direct_use(tmp_path: Path) -> None:
    tax = get_taxonomy("mikels")
    paths = [write(tmp_path / f"{i}.jpg", d) for i, d in enumerate(real_images(3))]
    ds = ImageDataset([(paths[0], 1), (paths[1], 7), (paths[2], 7)], tax)
    assert ds.targets == [1, 7, 7]
    assert ds.level_targets(0) == [1, 1, 1]  # anger, sadness: negative
    assert isinstance(ds[1][0], Image.Image)
    with open(paths[2], "rb") as fh:
        assert ds.image(2).size == Image.open(fh).size
    sub = ds.subset([2])
    assert sub.samples == [(str(paths[2]), 7)]
    with pytest.raises(DatasetError, match="outside 0..7"):
        ImageDataset([(paths[0], 8)], tax)


def test_mikels_labels_all_resolvable() -> None:
    tax = get_taxonomy("fi")
    assert [tax.canonical(m) for m in MIKELS] == MIKELS


def test_dataset_feeds_a_dataloader_and_pickles(tmp_path: Path) -> None:
    import pickle

    from torch.utils.data import DataLoader

    make_fi(tmp_path, {"awe": 3, "Sad": 3})
    tf = build_transform({"input_size": 32, "resize_size": 40}, train=True)
    ds = load_dataset("fi", tmp_path, transform=tf, progress=False)
    clone = pickle.loads(pickle.dumps(ds))  # what DataLoader workers receive
    assert clone.samples == ds.samples and clone.taxonomy == ds.taxonomy
    x, y = next(iter(DataLoader(ds, batch_size=6, shuffle=False)))
    assert x.shape == (6, 3, 32, 32)
    assert y.tolist() == ds.targets == [7] * 3 + [2] * 3  # sorted by path: 'Sad/' < 'awe/'
