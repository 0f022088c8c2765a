"""Robust image input (issue 5): every awkward kind of file, built from real photos in tmp_path,
is either read correctly or refused with a clear per-file error."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from _photos import feat_photo, foolbox_photo
from PIL import Image, ImageFile

from mdan_zoo.imageio import ImageReadError, read_image, to_pil_image


def _px(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def test_plain_jpeg_photo_is_read_as_rgb() -> None:
    img = read_image(feat_photo("single_face.jpg"))
    assert img.mode == "RGB" and img.size == (572, 562)
    with Image.open(feat_photo("single_face.jpg")) as ref:
        assert np.array_equal(_px(img), _px(ref.convert("RGB")))


@pytest.mark.parametrize(
    "orientation,undo",
    [
        (6, Image.Transpose.ROTATE_90),
        (3, Image.Transpose.ROTATE_180),
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_gives_the_upright_pixels(
    tmp_path: Path, astronaut: Image.Image, orientation: int, undo: Image.Transpose
) -> None:
    # Store the photo the way a camera does: pixels sideways, EXIF tag says how to turn them.
    stored = astronaut.crop((0, 0, 512, 300)).transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "sideways.png"
    stored.save(path, exif=exif)
    img = read_image(path)
    assert img.size == (512, 300)
    assert np.array_equal(_px(img), _px(astronaut.crop((0, 0, 512, 300))))


def test_exif_rotated_camera_jpeg_is_upright(tmp_path: Path) -> None:
    upright = read_image(feat_photo("multi_face.jpg"))  # 1000 x 667, landscape
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    with Image.open(path) as raw:
        assert raw.size == (667, 1000)  # stored portrait, as a phone held sideways writes it
    img = read_image(path)
    assert img.size == (1000, 667)
    assert np.abs(_px(img) - _px(upright)).mean() < 3  # only JPEG re-compression differs


def test_greyscale_jpeg_becomes_three_equal_channels() -> None:
    path = feat_photo("BWPictureHuman.jpg")
    with Image.open(path) as ref:
        assert ref.mode == "L"
        grey = _px(ref)
    img = read_image(path)
    assert img.mode == "RGB"
    rgb = _px(img)
    for c in range(3):
        assert np.array_equal(rgb[..., c], grey)


def test_palette_with_transparency_composites_on_white(tmp_path: Path) -> None:
    photo = Image.open(foolbox_photo("imagenet_00_243.jpg")).convert("RGB")
    pal = photo.quantize(colors=32)
    idx = np.asarray(pal)
    clear = int(np.bincount(idx.ravel()).argmax())  # the most common colour turns transparent
    path = tmp_path / "palette.png"
    pal.save(path, transparency=clear)
    img = _px(read_image(path))
    mask = idx == clear
    assert mask.any() and (~mask).any()
    assert (img[mask] == 255).all()
    opaque = _px(pal.convert("RGB"))[~mask]
    assert np.array_equal(img[~mask], opaque)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path, astronaut: Image.Image) -> None:
    path = tmp_path / "cmyk.jpg"
    astronaut.convert("CMYK").save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    img = read_image(path)
    assert img.mode == "RGB"
    assert np.abs(_px(img) - _px(astronaut)).mean() < 6.0


def test_rgba_photo_composites_on_white(tmp_path: Path) -> None:
    cat = skimage.data.chelsea()
    h, w = cat.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2) / np.hypot(h / 2, w / 2)
    alpha = np.clip(255 * (1.4 - 2 * radius), 0, 255).astype(np.uint8)  # vignette to clear
    path = tmp_path / "vignette.png"
    Image.fromarray(np.dstack([cat, alpha])).save(path)
    a = alpha[..., None] / 255.0
    assert (a == 0).mean() > 0.05 and (a == 1).mean() > 0.05
    expected = cat * a + 255.0 * (1 - a)
    img = _px(read_image(path))
    assert np.abs(img - expected).max() <= 1.0
    assert (img[alpha == 0] == 255).all()
    assert np.array_equal(img[alpha == 255], cat[alpha == 255])


def test_opaque_rgba_photo_keeps_its_colours() -> None:
    path = feat_photo("Image_with_alpha.png")
    with Image.open(path) as raw:
        assert raw.mode == "RGBA"
        rgb = _px(raw.convert("RGB"))
    assert np.array_equal(_px(read_image(path)), rgb)


def test_grey_with_alpha_composites_on_white(tmp_path: Path, astronaut: Image.Image) -> None:
    grey = astronaut.convert("L")
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1)))
    la = Image.merge("LA", (grey, alpha))
    path = tmp_path / "la.png"
    la.save(path)
    img = _px(read_image(path))
    a = np.asarray(alpha, dtype=np.float64) / 255
    expected = np.asarray(grey, dtype=np.float64) * a + 255 * (1 - a)
    assert np.abs(img[..., 1] - expected).max() <= 1.0


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path, astronaut: Image.Image) -> None:
    grey8 = np.asarray(astronaut.convert("L"), dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(grey8 * 257).save(path)  # full 16-bit range, as a scanner writes it
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    img = _px(read_image(path))
    assert np.array_equal(img[..., 0], grey8)
    assert img.mean() < 200  # Pillow's own conversion clips nearly everything to white


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [
        Image.fromarray(skimage.data.chelsea()).crop((0, 0, 300, 300)),
        Image.fromarray(skimage.data.coffee()).crop((0, 0, 300, 300)),
    ]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    img = _px(read_image(path))
    first, second = (_px(f) for f in frames)
    assert np.abs(img - first).mean() < 12  # GIF keeps 256 colours
    assert np.abs(img - second).mean() > 40


def test_webp_lossless_round_trips(tmp_path: Path, astronaut: Image.Image) -> None:
    path = tmp_path / "photo.webp"
    astronaut.save(path, lossless=True)
    assert np.array_equal(_px(read_image(path)), _px(astronaut))


def _truncated_jpeg(tmp_path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buf, format="JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
    return path


def test_truncated_jpeg_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = _truncated_jpeg(tmp_path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.path == str(path)
    assert "truncated" in info.value.reason and "allow_truncated=True" in info.value.reason


def test_truncated_jpeg_decodes_when_allowed_and_pillow_state_is_restored(tmp_path: Path) -> None:
    path = _truncated_jpeg(tmp_path)
    img = read_image(path, allow_truncated=True)
    assert img.size == (600, 400)
    top = np.abs(_px(img)[:100] - skimage.data.coffee()[:100].astype(np.int16)).mean()
    assert top < 4  # the part that was there is decoded
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_zero_byte_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageReadError, match=r"empty \(0 bytes\)"):
        read_image(path)


def test_non_image_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "table.jpg"
    shutil.copy(feat_photo("001.csv"), path)
    with pytest.raises(ImageReadError, match="not an image file"):
        read_image(path)


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def _png_with_size(src: Image.Image, width: int, height: int) -> bytes:
    """A real photo's PNG whose header claims another size (how a bomb looks to a reader)."""
    buf = io.BytesIO()
    src.save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_is_refused_per_file(tmp_path: Path, astronaut: Image.Image) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_size(astronaut, 40000, 40000))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "decompression bomb" in info.value.reason
    assert "1,600,000,000 pixels" in info.value.reason and "max_pixels" in info.value.reason
    assert before == Image.MAX_IMAGE_PIXELS
    # the next, ordinary file is unaffected
    good = tmp_path / "good.png"
    astronaut.save(good)
    assert read_image(good).size == (512, 512)


def test_max_pixels_is_a_per_call_limit(tmp_path: Path, astronaut: Image.Image) -> None:
    path = tmp_path / "photo.png"
    astronaut.save(path)
    with pytest.raises(ImageReadError, match="262,144 pixels"):
        read_image(path, max_pixels=100_000)
    assert read_image(path).size == (512, 512)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 262_144


def test_arrays_tensors_and_pil_images(astronaut: Image.Image) -> None:
    arr = skimage.data.astronaut()
    assert np.array_equal(_px(to_pil_image(arr)), arr)
    chw = torch.from_numpy(arr).permute(2, 0, 1)
    assert np.array_equal(_px(to_pil_image(chw)), arr)
    assert np.array_equal(_px(to_pil_image(chw.float() / 255)), arr)
    assert np.array_equal(_px(to_pil_image(astronaut.convert("RGBA"))), arr)
    grey16 = (arr[..., 0].astype(np.uint16) * 257)[..., None]
    assert np.array_equal(_px(to_pil_image(grey16))[..., 2], arr[..., 0])


def test_normalised_or_misshapen_arrays_are_refused() -> None:
    arr = skimage.data.astronaut().astype(np.float32) / 255
    normalised = (arr - 0.45) / 0.22
    with pytest.raises(ImageReadError, match=r"un-normalised photo"):
        to_pil_image(normalised)
    with pytest.raises(ImageReadError, match="1, 3 or 4 channels"):
        to_pil_image(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ImageReadError, match="unsupported input type"):
        to_pil_image([1, 2, 3])
