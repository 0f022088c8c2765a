"""The paper's transforms on a real photo: 448 crops, flips, per-channel normalisation."""

from __future__ import annotations

import io

import pytest
import torch
from data_trees import real_images
from PIL import Image
from torchvision.transforms import functional as F

from mdan_zoo import ConfigError, Preprocessing
from mdan_zoo.data import build_transform, denormalize, preprocessing_from, train_eval_transforms


@pytest.fixture
def photo() -> Image.Image:
    return Image.open(io.BytesIO(real_images(1, start=100)[0])).convert("RGB")  # skimage photo


def test_paper_defaults_are_448_crops_of_512(photo: Image.Image) -> None:
    pre = preprocessing_from(None)
    assert (pre.input_size, pre.resize_size, pre.hflip) == (448, 512, True)
    train, evaluate = train_eval_transforms()
    x = evaluate(photo)
    assert x.shape == (3, 448, 448)
    # per-channel normalisation with the ImageNet statistics the weights carry
    ref = F.to_tensor(F.center_crop(F.resize(photo, 512, antialias=True), 448))
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    torch.testing.assert_close(x, (ref - mean) / std)
    torch.testing.assert_close(denormalize(x), ref.clamp(0, 1))
    assert train(photo).shape == (3, 448, 448)


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
