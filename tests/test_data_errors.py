"""Every bad-dataset case gives one clear error that names the problem and the fix; with
on_missing='skip' the bad files are left out and counted."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from data_trees import make_artphoto, make_fi, make_webemo, real_images, write
from PIL import Image
from torch.utils.data import DataLoader

from mdan_zoo import get_taxonomy
from mdan_zoo.data import DatasetError, ImageDataset, load_dataset
from mdan_zoo.data.dataset import ImageDecodeError


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


def test_truncated_images_found_by_the_header_check(tmp_path: Path) -> None:
    """A download cut short lacks its format's end marker: the default check decodes such a
    file and refuses it; a JPEG with bytes after its end marker is decoded and kept."""
    root = _fi(tmp_path)
    good = real_images(1, start=60)[0]  # an ImageNet photo, big enough to truncate
    write(root / "sadness" / "sadness_7777.jpg", good[: len(good) // 3])
    png = io.BytesIO()
    Image.open(io.BytesIO(good)).save(png, format="PNG")
    write(root / "fear" / "fear_7778.png", png.getvalue()[:-200])
    write(root / "awe" / "awe_7779.jpg", good + b"\x00trailer written by some cameras")
    with pytest.raises(DatasetError) as err:
        load_dataset("fi", root, progress=False)
    msg = str(err.value)
    assert "2 of 15 image files" in msg
    assert "sadness_7777.jpg: corrupt or truncated image: the file ends early" in msg
    assert "fear_7778.png: corrupt or truncated image" in msg
    assert "awe_7779.jpg" not in msg
    assert len(load_dataset("fi", root, on_missing="skip", progress=False)) == 13


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.resize((16, 16)), dtype=np.float32).copy())


def _broken_after_the_check(tmp_path: Path, on_missing: str) -> tuple[ImageDataset, Path]:
    """A dataset whose files all passed the check, then one of them is cut short (as a file
    being replaced, or damaged on disk, would be)."""
    root = _fi(tmp_path)
    ds = load_dataset("fi", root, transform=_tensor, on_missing=on_missing, progress=False)
    victim = Path(ds.samples[5][0])
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    return ds, victim


def test_image_broken_after_the_check_is_skipped_and_counted_in_workers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """on_missing='skip': DataLoader worker processes leave the file out without stopping;
    the next readable image takes its place, so batches keep their size and every pass reads
    the same images; the main process sees the failure through decode_failures()."""
    ds, victim = _broken_after_the_check(tmp_path, "skip")

    def one_pass(workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
        return list(loader)

    in_workers = one_pass(2)
    (failure,) = ds.decode_failures()  # marked by a worker process, seen here
    assert failure[0] == str(victim) and "truncated" in failure[1]
    with caplog.at_level(logging.WARNING):
        inline = one_pass(0)
    assert f"cannot decode {victim}" in caplog.text and "left out" in caplog.text
    assert [len(y) for _, y in inline] == [4, 4, 4]
    for (xa, ya), (xb, yb) in zip(inline, in_workers, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(inline[1][0][1], inline[1][0][2])  # sample 5 read as sample 6


def test_image_broken_after_the_check_stops_with_its_name_and_the_fix(tmp_path: Path) -> None:
    """on_missing='error': the error names the file and the fixes, also when a DataLoader
    worker process raised it (no worker traceback in the message)."""
    ds, victim = _broken_after_the_check(tmp_path, "error")
    for workers in (0, 1):
        with pytest.raises(ImageDecodeError) as err:
            list(DataLoader(ds, batch_size=4, num_workers=workers))
        msg = str(err.value)
        assert msg.startswith(f"cannot decode image {victim} of fi: corrupt or truncated")
        assert "check='full'" in msg and "on_missing='skip'" in msg
        assert "Traceback" not in msg and "worker" not in msg


def test_empty_class_folder_and_missing_classes_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _fi(tmp_path)
    (root / "awe").mkdir()
    (root / "excitement" / "nested").mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("fi", root, progress=False)
    assert len(ds) == 12
    assert "2 folder(s) under" in caplog.text and "hold no images: awe/, excitement/" in caplog.text
    assert "4 of 8 classes of taxonomy 'fi' have no samples" in caplog.text
    assert "awe, contentment, disgust, excitement" in caplog.text
    caplog.clear()
    write(tmp_path / "f" / "awe" / "a.jpg", real_images(1)[0])
    (tmp_path / "f" / "fear").mkdir()
    with caplog.at_level(logging.WARNING):
        load_dataset("folder", tmp_path / "f", taxonomy=get_taxonomy("mikels"), progress=False)
    assert "hold no images: fear/" in caplog.text


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
