"""Fashion-MNIST read from Debian's ``dataset-fashion-mnist`` package: a real, offline,
three-level hierarchy (2 -> 4 -> 10, the built-in ``fashion_mnist`` taxonomy) for the demo and
the learning tests."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DatasetError

__all__ = ["FASHION_MNIST_DIR", "DatasetError", "FashionMNIST", "read_idx"]

FASHION_MNIST_DIR = Path(os.environ.get("MDAN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) IDX file of unsigned bytes into an array."""
    if not path.is_file():
        raise DatasetError(
            f"missing dataset file {path}: install it with `apt-get install -y "
            f"dataset-fashion-mnist` (Debian) or set MDAN_FASHION_MNIST to the folder holding it"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an IDX file of unsigned bytes")
        shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
        body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if body.size != int(np.prod(shape)):
            raise ValueError(f"expected {int(np.prod(shape))} values, found {body.size}")
        return body.reshape(shape)
    except (OSError, EOFError, ValueError, struct.error) as err:
        raise DatasetError(f"cannot read IDX file {path}: {err} (re-install the package)") from err


class FashionMNIST(Dataset):
    """Fashion-MNIST images as RGB PIL images (or transformed tensors) with fine labels 0-9.

    Args:
        split: ``"train"`` (60,000) or ``"test"`` (10,000).
        root: folder with the four ``*-ubyte.gz`` files (default: Debian's location).
        transform: applied to the RGB PIL image.
        indices: optional subset of sample indices (e.g. a balanced sample for quick runs).
    """

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | os.PathLike[str] | None = None,
        transform: Any = None,
        indices: np.ndarray | list[int] | None = None,
    ) -> None:
        if split not in _FILES:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        root = Path(root) if root is not None else FASHION_MNIST_DIR
        images_file, labels_file = _FILES[split]
        self.images = read_idx(root / images_file)
        self.targets = read_idx(root / labels_file).astype(np.int64)
        if len(self.images) != len(self.targets):
            raise DatasetError(f"{root}: {len(self.images)} images but {len(self.targets)} labels")
        self.indices = np.arange(len(self.targets)) if indices is None else np.asarray(indices)
        self.transform = transform

    @staticmethod
    def balanced_indices(targets: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
        """``per_class`` random indices of every class (seeded), shuffled."""
        rng = np.random.default_rng(seed)
        picks = [
            rng.choice(np.flatnonzero(targets == c), size=per_class, replace=False)
            for c in np.unique(targets)
        ]
        out = np.concatenate(picks)
        rng.shuffle(out)
        return out

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> Image.Image:
        """Sample ``i`` as an RGB PIL image (28 x 28)."""
        return Image.fromarray(self.images[self.indices[i]], mode="L").convert("RGB")

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img: Any = self.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[self.indices[i]])

    def tensors(self, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """All selected samples as a normalised float batch ``[N, 3, size, size]`` and labels,
        resized in one vectorised step (fast path for CPU training)."""
        x = torch.from_numpy(self.images[self.indices]).float().div_(255.0)[:, None]
        if size != x.shape[-1]:
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False
            )
        x = (x - 0.2860) / 0.3530  # Fashion-MNIST mean / std
        return x.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(self.targets[self.indices])
