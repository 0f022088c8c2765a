"""The image transforms, built from a :class:`~mdan_zoo.config.Preprocessing` or a config dict
(Sec. 5.2: a random 448 x 448 crop, horizontal flip and per-channel normalisation for training;
by default the crop is taken after resizing the shorter side to 512, our choice, see the
deviations table; the resize + centre crop that the weights carry for evaluation).

The transforms themselves are torchvision's v2 (``Preprocessing.train_transform`` /
``eval_transform``): they take a PIL image or a uint8 tensor ``[3, H, W]`` (e.g. from
``torchvision.io.decode_image``) and resize/crop the uint8 tensor, never round-tripping it
through PIL. This module turns config files into them and undoes the normalisation for pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from PIL import Image

from ..config import Preprocessing

__all__ = ["build_transform", "denormalize", "preprocessing_from", "train_eval_transforms"]

Transform = Callable[[Image.Image | torch.Tensor], torch.Tensor]


def preprocessing_from(preprocessing: Preprocessing | Mapping[str, Any] | None) -> Preprocessing:
    """A :class:`Preprocessing` from itself, a config dict (its fields, e.g.
    ``{"input_size": 448, "resize_size": 512}``; unknown keys raise ConfigError) or None (the
    default: 448 crops of the image resized to 512, ImageNet mean/std, horizontal flip; the
    paper's literal crop of the original image is ``resize_size=None``)."""
    if preprocessing is None:
        return Preprocessing()
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    return Preprocessing.from_dict(preprocessing)


def build_transform(
    preprocessing: Preprocessing | Mapping[str, Any] | None = None, *, train: bool
) -> Transform:
    """Image (PIL or uint8 tensor) -> normalised tensor ``[3, S, S]``: the train transform (random crop, flip) or
    the eval transform (centre crop)."""
    pre = preprocessing_from(preprocessing)
    return pre.train_transform() if train else pre.eval_transform()


def train_eval_transforms(
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
) -> tuple[Transform, Transform]:
    """``(train_transform, eval_transform)`` of one preprocessing."""
    pre = preprocessing_from(preprocessing)
    return pre.train_transform(), pre.eval_transform()


def denormalize(
    x: torch.Tensor, preprocessing: Preprocessing | Mapping[str, Any] | None = None
) -> torch.Tensor:
    """Undo the per-channel normalisation of ``x`` (``[3, H, W]`` or ``[N, 3, H, W]``) and
    clamp to [0, 1], e.g. to draw attention maps over the input."""
    pre = preprocessing_from(preprocessing)
    mean = x.new_tensor(pre.mean).view(3, 1, 1)
    std = x.new_tensor(pre.std).view(3, 1, 1)
    return (x * std + mean).clamp_(0.0, 1.0)
