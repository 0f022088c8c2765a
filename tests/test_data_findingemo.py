"""FindingEmo adapter on the real annotation file of the installed findingemo-light, with tiny
images generated under the paths it names: Plutchik labels by name, the valence behind the
polarity of plutchik3, missing downloads with on_missing, the split, and the bad-input errors."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import pytest
from data_trees import real_images
from PIL import Image

pytest.importorskip("findingemo_light", reason="pip install findingemo-light")

from mdan_zoo import get_taxonomy  # noqa: E402
from mdan_zoo.data import (  # noqa: E402
    DEFAULT_SPLITS,
    DatasetError,
    content_hash,
    findingemo_annotation_file,
    load_dataset,
    load_listing,
    load_splits,
    valence_by_label,
)

PLUTCHIK = {  # the issue's names: primary -> (basic, mild, intense)
    "joy": ("joy", "serenity", "ecstasy"), "trust": ("trust", "acceptance", "admiration"),
    "fear": ("fear", "apprehension", "terror"), "surprise": ("surprise", "distraction", "amazement"),
    "sadness": ("sadness", "pensiveness", "grief"), "disgust": ("disgust", "boredom", "loathing"),
    "anger": ("anger", "annoyance", "rage"),
    "anticipation": ("anticipation", "interest", "vigilance"),
}  # fmt: skip


@lru_cache(maxsize=1)
def _read_real_rows() -> tuple[str, tuple[tuple[str, dict[str, str]], ...]]:
    lines = findingemo_annotation_file().read_text(encoding="utf-8").splitlines()
    parsed = list(csv.DictReader(lines))
    assert len(parsed) == len(lines) - 1  # one line per row: raw lines can be copied
    return lines[0], tuple(zip(lines[1:], parsed, strict=True))


def real_rows() -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """The package's header line and its data rows as (raw line, parsed row)."""
    header, rows = _read_real_rows()
    return header, [(line, dict(row)) for line, row in rows]


def subset(per_emotion: int) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """The first ``per_emotion`` rows of each of the 24 emotions, in file order."""
    header, rows = real_rows()
    taken: Counter[str] = Counter()
    out = []
    for line, row in rows:
        if taken[row["emotion"]] < per_emotion:
            taken[row["emotion"]] += 1
            out.append((line, row))
    return header, out


def tiny_image(path: Path, k: int) -> None:
    """A 16-pixel version of a real photo, in the format the file name says."""
    with Image.open(io.BytesIO(real_images(1, start=k)[0])) as img:
        small = img.convert("RGB").resize((16, 12))
    path.parent.mkdir(parents=True, exist_ok=True)
    small.save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def make_root(root: Path, rows, *, download=lambda i: True, copy_annotations=True) -> list[str]:
    """``root`` as download_data(target_dir=root) leaves it for the rows it could fetch; the
    rows' annotation file copied beside them. Returns the relative paths written."""
    root.mkdir(parents=True, exist_ok=True)
    header, items = rows
    if copy_annotations:
        (root / "annotations_single.ann").write_text(
            "\n".join([header] + [line for line, _ in items]) + "\n", encoding="utf-8"
        )
    written = []
    for i, (_, row) in enumerate(items):
        if download(i):
            rel = row["image_path"].lstrip("/")
            tiny_image(root / rel, i)
            written.append(rel)
    return written


def test_plutchik_taxonomies_have_the_issue_names() -> None:
    plutchik, plutchik3 = get_taxonomy("plutchik"), get_taxonomy("plutchik3")
    assert plutchik.num_classes == (8, 24) and plutchik3.num_classes == (2, 8, 24)
    assert plutchik.labels[0] == tuple(PLUTCHIK) == plutchik3.labels[1]
    assert plutchik.labels[1] == plutchik3.labels[2]
    for primary, emotions in PLUTCHIK.items():
        for emotion in emotions:
            assert plutchik.ancestors(emotion) == (primary, emotion)
            assert plutchik3.ancestors(emotion)[1:] == (primary, emotion)
    assert plutchik3.level_names == ("polarity", "primary", "emotion")


def test_polarity_of_plutchik3_follows_findingemo_valence() -> None:
    """The polarity of every primary, surprise and anticipation included, is the sign of the
    mean valence of the FindingEmo images labelled with it, and the 95 % interval of that mean
    excludes 0."""
    tax = get_taxonomy("plutchik3")
    table = valence_by_label()
    # the figures, recomputed here straight from the CSV
    _, rows = real_rows()
    by_primary: dict[str, list[int]] = defaultdict(list)
    for _, row in rows:
        by_primary[tax.ancestors(row["emotion"].lower())[1]].append(int(row["valence"]))
    for primary, values in by_primary.items():
        stats = table["primary"][primary]
        assert stats["n"] == len(values)
        assert stats["mean"] == pytest.approx(sum(values) / len(values))
        polarity = tax.labels[0][tax.parents[1][tax.index(primary, level=1)]]
        assert (stats["mean"] > 0) == (polarity == "positive"), primary
        assert abs(stats["mean"]) > stats["ci95"], primary
    assert table["primary"]["surprise"]["mean"] > 0 and table["primary"]["anticipation"]["mean"] > 0
    assert sum(s["n"] for s in table["emotion"].values()) == len(rows)


def test_full_annotation_file_labels_and_counts(tmp_path: Path) -> None:
    """Every row of the package's own file (no copy in root) becomes a sample at
    root/<image_path without the leading />, with its emotion and valence."""
    header, rows = real_rows()
    make_root(tmp_path, (header, rows[:3]), copy_annotations=False)
    listing = load_listing("findingemo", tmp_path)
    tax = get_taxonomy("plutchik3")
    assert listing.taxonomy.name == "plutchik3" and len(listing) == len(rows)
    assert Counter(listing.label_names()) == Counter(r["emotion"].lower() for _, r in rows)
    by_rel = dict(listing.entries)
    for _, row in rows[:: max(1, len(rows) // 500)]:
        rel = row["image_path"].lstrip("/")
        assert tax.labels[-1][by_rel[rel]] == row["emotion"].lower()
        assert listing.annotations[rel]["valence"] == int(row["valence"])
        assert listing.annotations[rel]["arousal"] == int(row["arousal"])
        assert listing.annotations[rel]["dec_factors"] == tuple(
            f for f in row["dec_factors"].split(",") if f
        )


def test_subset_class_counts_at_every_level(tmp_path: Path) -> None:
    rows = subset(2)
    make_root(tmp_path, rows)
    ds = load_dataset("findingemo", tmp_path, progress=False)
    assert len(ds) == 48 and ds.skipped == []
    assert ds.class_counts() == {e: 2 for es in PLUTCHIK.values() for e in es}
    assert ds.class_counts("primary") == dict.fromkeys(PLUTCHIK, 6)
    assert ds.class_counts("polarity") == {"positive": 24, "negative": 24}
    for path, target in ds.samples:
        rel = Path(path).relative_to(tmp_path).as_posix()
        row = next(r for _, r in rows[1] if r["image_path"] == "/" + rel)
        assert ds.taxonomy.labels[-1][target] == row["emotion"].lower()
        assert ds.annotations[rel]["ambiguity"] == int(row["ambiguity"])
    x, y = ds[0]
    assert x.size == (16, 12) and y == ds.targets[0]


def test_missing_downloads_are_counted_and_follow_on_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = subset(2)
    written = make_root(tmp_path, rows, download=lambda i: i % 3 != 0)
    missing = 48 - len(written)
    with (
        caplog.at_level(logging.WARNING, logger="mdan_zoo.data.findingemo"),
        pytest.raises(DatasetError) as err,
    ):
        load_dataset("findingemo", tmp_path, progress=False)
    assert f"{missing} of 48 image files of findingemo" in str(err.value)
    assert "on_missing='skip'" in str(err.value)
    assert f"{missing} of 48 annotated images are not in {tmp_path}" in caplog.text
    ds = load_dataset("findingemo", tmp_path, on_missing="skip", progress=False)
    assert len(ds) == len(written) and len(ds.skipped) == missing
    assert {Path(p).relative_to(tmp_path).as_posix() for p, _ in ds.samples} == set(written)
    assert all(reason == "no such file" for _, reason in ds.skipped)


def test_split_is_stratified_and_the_same_whatever_was_downloaded(tmp_path: Path) -> None:
    rows = subset(10)
    spec = DEFAULT_SPLITS["findingemo"]
    assert spec.scheme == "ratio" and dict(spec.fractions) == {"train": 0.8, "val": 0.05,
                                                                 "test": 0.15}  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    make_root(a, rows)
    make_root(b, rows, download=lambda i: i % 2 == 0)
    assert content_hash(load_listing("findingemo", a)) == content_hash(
        load_listing("findingemo", b)
    )
    load_splits("findingemo", a, on_missing="skip", progress=False)
    parts_b = load_splits("findingemo", b, on_missing="skip", progress=False)
    doc_a = json.loads((a / "mdan_splits" / "findingemo_ratio_seed0.json").read_text())
    doc_b = json.loads((b / "mdan_splits" / "findingemo_ratio_seed0.json").read_text())
    assert doc_a["parts"] == doc_b["parts"]
    sizes = {p: len(v) for p, v in doc_a["parts"].items()}
    assert sizes == {"train": 192, "val": 12, "test": 36}
    assert (
        sum(sizes.values()) == 240 and len({r for v in doc_a["parts"].values() for r in v}) == 240
    )
    listing = load_listing("findingemo", a)
    label = dict(zip((rel for rel, _ in listing.entries), listing.label_names(), strict=True))
    assert Counter(label[r] for r in doc_a["parts"]["train"]) == dict.fromkeys(label.values(), 8)
    assert set(Counter(label[r] for r in doc_a["parts"]["test"]).values()) == {1, 2}
    rel_b = {Path(p).relative_to(b).as_posix() for p, _ in parts_b["test"].samples}
    assert rel_b == {r for r in doc_b["parts"]["test"] if (b / r).is_file()}


def test_unknown_emotion_names_file_and_line(tmp_path: Path) -> None:
    header, items = subset(1)
    line, row = items[5]
    items[5] = (line.replace(f",{row['emotion']},", ",Happiness,"), row)
    make_root(tmp_path, (header, items))
    ann = tmp_path / "annotations_single.ann"
    with pytest.raises(DatasetError) as err:
        load_listing("findingemo", tmp_path)
    msg = str(err.value)
    assert f"FindingEmo {ann}: 1 label(s)" in msg and "'Happiness' (1 x, e.g. line 7)" in msg
    assert "Plutchik's 24 emotions (joy, serenity, ecstasy" in msg


def test_malformed_rows_and_a_foreign_header_name_file_and_line(tmp_path: Path) -> None:
    header, items = subset(1)
    ann = tmp_path / "annotations_single.ann"
    bad = items[3][0].replace(f",{items[3][1]['valence']},", ",very,", 1)
    make_root(tmp_path, (header, [*items[:3], (bad, items[3][1]), *items[4:]]))
    with pytest.raises(DatasetError, match=rf"{ann} line 5: valence 'very' is not a number"):
        load_listing("findingemo", tmp_path)
    escape = items[2][0].replace(items[2][1]["image_path"], "/Run_1/../../../etc/passwd")
    make_root(tmp_path, (header, [*items[:2], (escape, items[2][1]), *items[3:]]))
    with pytest.raises(
        DatasetError, match=r"line 4: image_path '/Run_1/\.\./\.\./\.\./etc/passwd'"
    ):
        load_listing("findingemo", tmp_path)
    ann.write_text("path,label\nRun_1/a.jpg,joy\n")
    with pytest.raises(DatasetError, match=r"line 1: header \['path', 'label'\] is not FindingEmo"):
        load_listing("findingemo", tmp_path)


def test_a_layout_that_is_not_findingemo(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text("[]")
    (tmp_path / "image").mkdir()
    (tmp_path / "annotation").mkdir()
    with pytest.raises(DatasetError, match=r"none of the \d+ images named by .* looks like "
                       r"EmoSet-118K: read it with the 'emoset' adapter"):  # fmt: skip
        load_listing("findingemo", tmp_path)
    nested = tmp_path / "downloads"
    make_root(nested / "FindingEmo", subset(1), copy_annotations=False)
    with pytest.raises(DatasetError, match=r"images seem to be under .*FindingEmo: pass that"):
        load_listing("findingemo", nested)
    with pytest.raises(DatasetError, match=r"dataset folder .* does not exist"):
        load_listing("findingemo", tmp_path / "nowhere")
