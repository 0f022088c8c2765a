"""Small real-data pieces shared by the trainer tests: balanced Fashion-MNIST tensor sets and a
tiny ResNet-18 config that starts from a torchvision state-dict file the test writes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import TensorDataset

from mdan_zoo._io import atomic_path
from mdan_zoo.data.fashion_mnist import FashionMNIST
from mdan_zoo.training._config import TrainConfig


def fashion_sets(
    *,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int = 0,
    size: int = 32,
    seed: int = 0,
) -> dict[str, TensorDataset]:
    """Disjoint balanced subsets: train/val from the training file, test from the test file."""
    rng = np.random.default_rng(seed)
    targets = FashionMNIST("train").targets
    tr, va = [], []
    for c in range(10):
        pick = rng.permutation(np.flatnonzero(targets == c))
        tr.append(pick[:train_per_class])
        va.append(pick[train_per_class : train_per_class + val_per_class])
    out = {
        "train": TensorDataset(
            *FashionMNIST("train", indices=rng.permutation(np.concatenate(tr))).tensors(size)
        ),
        "val": TensorDataset(*FashionMNIST("train", indices=np.concatenate(va)).tensors(size)),
    }
    if test_per_class:
        test_targets = FashionMNIST("test").targets
        te = [
            rng.permutation(np.flatnonzero(test_targets == c))[:test_per_class] for c in range(10)
        ]
        out["test"] = TensorDataset(*FashionMNIST("test", indices=np.concatenate(te)).tensors(size))
    return out


def write_backbone_file(path: Path, *, seed: int = 0) -> Path:
    """A torchvision ResNet-18 state dict on disk, standing in for the ImageNet download.

    Written once, atomically: processes of a distributed test must not read it half-rewritten.
    """
    if path.is_file():
        return path
    torch.manual_seed(seed)
    with atomic_path(path) as tmp:
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp)
    return path


def tiny_config(tmp: Path, **changes: Any) -> TrainConfig:
    tmp.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "name": "tiny",
        "taxonomy": "fashion_mnist",
        "dataset": "fashion_mnist",
        "backbone": "resnet18",
        "model": {"fpn_channels": 256},  # MDANConfig.lite(): the tests' speed
        "input_size": 32,
        "resize_size": 32,
        "pretrained": str(write_backbone_file(tmp / "resnet18.pth")),
        "epochs": 2,
        "batch_size": 12,
        "lr_backbone": 0.01,
        "lr_new": 0.02,
        "workers": 0,
        "progress": False,
        "output_dir": str(tmp / "run"),
        "eval_batch_size": 50,
    }
    values.update(changes)
    return TrainConfig(**values)


def load_weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    from mdan_zoo.training._checkpoints import load_checkpoint

    return load_checkpoint(run_dir, which=which).model.state_dict()


def write_fashion_subset(folder: Path, source: Path, *, train: int = 300, test: int = 20) -> Path:
    """The first ``train`` / ``test`` real Fashion-MNIST images of ``source`` as IDX files in
    ``folder`` (what the ``fashion_mnist`` dataset reads), for tests that train in subprocesses."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, stem in (("train", train, "train"), ("test", test, "t10k")):
        ds = FashionMNIST(split, root=source)
        _write_idx(folder / f"{stem}-images-idx3-ubyte.gz", ds.images[:n])
        _write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", ds.targets[:n])
    return folder


def _write_idx(path: Path, array: np.ndarray) -> None:
    head = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(head + array.astype(np.uint8).tobytes())
