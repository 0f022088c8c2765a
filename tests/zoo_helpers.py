"""Shared bits of the zoo tests: a tiny MDAN and a batch of real photographs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy

TINY_CONFIG = MDANConfig(backbone="resnet18", fpn_channels=32)
TINY_PRE = Preprocessing(
    input_size=64, resize_size=72, mean=(0.5, 0.45, 0.4), std=(0.25, 0.25, 0.25)
)


def tiny_mdan(taxonomy: str = "fashion_mnist", seed: int = 0) -> MDAN:
    """A small MDAN (ResNet-18, FPN width 32, 64 x 64 input) with seeded random weights."""
    torch.manual_seed(seed)
    return MDAN(get_taxonomy(taxonomy), TINY_CONFIG, preprocessing=TINY_PRE).eval()


def photos() -> list[Image.Image]:
    """Real photographs shipped with scikit-image (astronaut, coffee, cat)."""
    from skimage import data

    return [Image.fromarray(np.asarray(f())) for f in (data.astronaut, data.coffee, data.chelsea)]


def batch(model: MDAN) -> torch.Tensor:
    """The photographs through the model's own eval transform."""
    transform = model.eval_transform()
    return torch.stack([transform(im) for im in photos()])


def same_state(a: MDAN, b: MDAN) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
