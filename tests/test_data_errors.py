"""Every bad-dataset case gives one clear error that names the problem and the fix; with
on_missing='skip' the bad files are left out and counted."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from data_trees import make_artphoto, make_fi, make_webemo, real_images, write

from mdan_zoo import get_taxonomy
from mdan_zoo.data import DatasetError, load_dataset


def _fi(tmp_path: Path) -> Path:
    make_fi(tmp_path, {"amusement": 3, "anger": 3, "fear": 3, "sadness": 3})
    return tmp_path


def test_zero_byte_and_non_image_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _fi(tmp_path)
    (root / "anger" / "anger_9000.jpg").write_bytes(b"")
    (root / "fear" / "fear_9001.jpg").write_text("<html>404 Not Found</html>")
    with pytest.raises(DatasetError) as err:
        load_dataset("fi", root, progress=False)
    msg = str(err.value)
    assert "2 of 14 image files" in msg
    assert "anger_9000.jpg: the file is empty (0 bytes)" in msg
    assert "fear_9001.jpg: not an image file Pillow can identify" in msg
    assert "on_missing='skip'" in msg
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("fi", root, on_missing="skip", progress=False)
    assert len(ds) == 12
    assert sorted(Path(p).name for p, _ in ds.skipped) == ["anger_9000.jpg", "fear_9001.jpg"]
    assert ds.class_counts()["anger"] == 3
    assert "skipped 2 of 14" in caplog.text


def test_truncated_jpeg_found_by_full_check_only(tmp_path: Path) -> None:
    root = _fi(tmp_path)
    good = real_images(1, start=60)[0]  # an ImageNet photo, big enough to truncate
    write(root / "sadness" / "sadness_7777.jpg", good[: len(good) // 3])
    assert len(load_dataset("fi", root, progress=False)) == 13  # header still parses
    with pytest.raises(DatasetError, match=r"sadness_7777.jpg: corrupt or truncated"):
        load_dataset("fi", root, check="full", progress=False)


def test_many_missing_files_listed_first_ten_and_counted(tmp_path: Path) -> None:
    train = [(f"img_{i}.jpg", i % 25) for i in range(30)]
    make_webemo(tmp_path, train, [("t.jpg", 2)])
    # dead links: 15 listed images were never downloaded
    for name, idx in train[:15]:
        from data_trees import WEBEMO_CATEGORIES

        (tmp_path / "train" / WEBEMO_CATEGORIES[idx] / name).unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("webemo", tmp_path, progress=False)
    msg = str(err.value)
    assert "15 of 31 image files" in msg and "15 no such file" in msg
    assert "... and 5 more" in msg
    assert msg.count("no such file") == 11  # the summary + the ten listed
    ds = load_dataset("webemo", tmp_path, on_missing="skip", progress=False)
    assert len(ds) == 16 and len(ds.skipped) == 15


def test_unknown_folder_label_names_it_and_the_known_labels(tmp_path: Path) -> None:
    root = _fi(tmp_path)
    write(root / "happyness" / "happyness_1.jpg", real_images(1)[0])
    with pytest.raises(DatasetError) as err:
        load_dataset("fi", root, progress=False)
    msg = str(err.value)
    assert "'happyness'" in msg
    assert "Known fine labels: ['amusement', 'anger', 'awe'" in msg
    assert "'sad': 'sadness'" in msg  # the aliases are shown
    assert "Fix:" in msg


def test_unknown_artphoto_prefix_and_coarse_label(tmp_path: Path) -> None:
    make_artphoto(tmp_path, {"amusement": 1, "joy": 2, "positive": 1})
    with pytest.raises(DatasetError) as err:
        load_dataset("artphoto", tmp_path, progress=False)
    msg = str(err.value)
    assert "'joy' (2 x" in msg and "'positive' (1 x" in msg
    assert "'positive' name a coarser level" in msg


def test_folder_image_with_no_label_folder(tmp_path: Path) -> None:
    write(tmp_path / "misc" / "a.jpg", real_images(1)[0])
    write(tmp_path / "awe" / "b.jpg", real_images(1)[0])
    with pytest.raises(DatasetError, match=r"'misc' \(1 x, e.g. misc/ with 1 images\)"):
        load_dataset("folder", tmp_path, taxonomy=get_taxonomy("mikels"), progress=False)


def test_unknown_label_in_csv(tmp_path: Path) -> None:
    write(tmp_path / "a.jpg", real_images(1)[0])
    (tmp_path / "l.csv").write_text("path,label\na.jpg,boredom\n")
    with pytest.raises(DatasetError, match=r"'boredom' \(1 x, e.g. row 2\)"):
        load_dataset("csv", tmp_path / "l.csv", taxonomy=get_taxonomy("mikels"), progress=False)


def test_missing_list_and_ground_truth_files(tmp_path: Path) -> None:
    make_webemo(tmp_path / "w", [("a.jpg", 1)], [("b.jpg", 2)])
    (tmp_path / "w" / "test25.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing test25.txt in .*category.txt, train25.txt"):
        load_dataset("webemo", tmp_path / "w", progress=False)
    (tmp_path / "a").mkdir()
    write(tmp_path / "a" / "abstract_1.jpg", real_images(1)[0])
    with pytest.raises(DatasetError, match="missing ABSTRACT_groundTruth.csv"):
        load_dataset("abstract", tmp_path / "a", progress=False)
    with pytest.raises(DatasetError, match=r"missing iaps_list.txt or iaps_list.csv.*1050 fear"):
        load_dataset("iaps", tmp_path / "a", progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("fi", tmp_path / "nope", progress=False)
    with pytest.raises(DatasetError, match="missing label file"):
        load_dataset("csv", tmp_path / "nope.csv", taxonomy=get_taxonomy("mikels"))


def test_malformed_webemo_lines_and_out_of_range_index(tmp_path: Path) -> None:
    make_webemo(tmp_path, [("a.jpg", 1)], [("b.jpg", 2)])
    with open(tmp_path / "train25.txt", "a") as fh:
        fh.write("https://x.org/c.jpg 25\nhttps://x.org/d.jpg\n")
    with pytest.raises(DatasetError) as err:
        load_dataset("webemo", tmp_path, progress=False)
    msg = str(err.value)
    assert "2 malformed line(s)" in msg
    assert "line 2: index 25 outside 0..24" in msg
    assert "line 3:" in msg and "expected '<url> <index>'" in msg


def test_abstract_csv_with_unknown_column(tmp_path: Path) -> None:
    write(tmp_path / "abstract_1.jpg", real_images(1)[0])
    (tmp_path / "ABSTRACT_groundTruth.csv").write_text(
        '"","Amusement","Boredom"\n"abstract_1.jpg",1,2\n'
    )
    with pytest.raises(DatasetError, match="'Boredom'"):
        load_dataset("abstract", tmp_path, progress=False)


def test_skip_mode_leaving_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "awe").mkdir()
    (tmp_path / "awe" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no usable images left"):
        load_dataset("fi", tmp_path, on_missing="skip", progress=False)
    with pytest.raises(ValueError, match="on_missing must be"):
        load_dataset("fi", tmp_path, on_missing="ignore", progress=False)  # type: ignore[arg-type]


def test_root_one_level_too_high_is_pointed_out(tmp_path: Path) -> None:
    make_fi(tmp_path / "emotion_dataset", {"amusement": 1, "Anger": 1, "fear": 1})
    with pytest.raises(DatasetError) as err:
        load_dataset("fi", tmp_path, progress=False)
    msg = str(err.value)
    assert "'emotion_dataset'" in msg
    assert f"seem to be in {tmp_path / 'emotion_dataset'}: pass that folder as root" in msg
