"""What a training run starts from: its datasets and its initial model.

Datasets: ``fashion_mnist`` built in (real images, offline), the paper's datasets and the generic
folder / CSV readers through :mod:`mdan_zoo.data`. Model: ImageNet backbone, another MDAN
checkpoint (``init_from``), or random weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import Dataset

from .._hints import docs_url
from ..config import ConfigError, Preprocessing
from ..hub import WeightsError, read_torch_state_dict
from ..hub.run_folder import is_run_folder, protocol_runs
from ..model import MDAN
from ..taxonomy import Taxonomy
from ._checkpoints import load_checkpoint
from ._config import TrainConfig

__all__ = ["build_datasets", "build_model"]

logger = logging.getLogger(__name__)


def build_datasets(
    config: TrainConfig, *, taxonomy: Taxonomy, preprocessing: Preprocessing | None = None
) -> dict[str, Dataset]:
    """``train`` / ``val`` / ``test`` datasets of ``(image_tensor, fine_index)`` for ``config``.

    ``fashion_mnist`` is built in (real images, offline); the paper datasets and the generic
    folder / CSV readers come from :mod:`mdan_zoo.data`. ``preprocessing``: the transforms
    (default: the config's ``input_size`` / ``resize_size``); to evaluate a trained model pass
    its own, ``model.preprocessing``.
    """
    pre = config.preprocessing() if preprocessing is None else preprocessing
    train_tf, eval_tf = pre.train_transform(), pre.eval_transform()
    if config.dataset == "fashion_mnist":
        from ..data.fashion_mnist import FashionMNIST

        if taxonomy.num_classes[-1] != 10:
            raise ConfigError("dataset fashion_mnist needs a taxonomy with 10 fine classes")
        full = FashionMNIST("train", root=config.data_root)
        split_seed = config.resolved_split_seed()
        rng = np.random.default_rng(split_seed)
        order = rng.permutation(len(full.targets))
        n_val = int(round(config.val_fraction * len(order))) or 1
        val_idx, train_idx = order[:n_val], order[n_val:]
        test = FashionMNIST("test", root=config.data_root, transform=eval_tf)
        test_idx = np.arange(len(test.targets))
        if config.subset_per_class:
            n = config.subset_per_class
            _check_subset(full.targets[train_idx], n, "training", config)
            _check_subset(full.targets[val_idx], max(1, n // 4), "validation", config)
            train_idx = train_idx[
                FashionMNIST.balanced_indices(full.targets[train_idx], n, seed=split_seed)
            ]
            few = max(1, n // 4)
            val_idx = val_idx[
                FashionMNIST.balanced_indices(full.targets[val_idx], few, seed=split_seed)
            ]
            test_idx = FashionMNIST.balanced_indices(test.targets, few, seed=split_seed)
        return {
            "train": FashionMNIST(
                "train", root=config.data_root, transform=train_tf, indices=train_idx
            ),
            "val": FashionMNIST("train", root=config.data_root, transform=eval_tf, indices=val_idx),
            "test": FashionMNIST(
                "test", root=config.data_root, transform=eval_tf, indices=test_idx
            ),
        }
    try:
        from ..data import load_splits  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError(
            f"dataset {config.dataset!r} needs the dataset adapters (mdan_zoo.data.load_splits), "
            "which this installation lacks; use dataset=fashion_mnist or update mdan_zoo"
        ) from None
    if config.data_root is None:
        raise ConfigError(
            f"dataset {config.dataset!r} needs data_root: the folder in its public layout "
            f"({docs_url('datasets.md')}); set it in the config or with --set data_root=/path"
        )
    root = Path(config.data_root).expanduser()
    if not (root.is_file() if config.dataset == "csv" else root.is_dir()):
        what = "CSV file" if config.dataset == "csv" else "folder"
        raise ConfigError(
            f"data_root {config.data_root} does not exist (dataset {config.dataset!r} needs its "
            f"{what} there): pass where the data is with --set data_root=/path/to/it (Python: "
            f"config.with_overrides(['data_root=/path/to/it'])); layouts: {docs_url('datasets.md')}"
        )
    split_file = (
        Path(config.split_dir) / f"{config.dataset}_seed{config.resolved_split_seed()}.json"
        if config.split_dir
        else None
    )
    parts = load_splits(
        config.dataset,
        config.data_root,
        fold=config.fold,
        taxonomy=taxonomy,
        train_transform=train_tf,
        eval_transform=eval_tf,
        on_missing=config.on_missing,  # type: ignore[arg-type]  # validated: error|skip
        seed=config.resolved_split_seed(),
        split_spec=config.split_spec(),
        split_file=split_file,
        progress=config.progress,
    )
    return dict(parts)


def _check_subset(targets: np.ndarray, per_class: int, part: str, config: TrainConfig) -> None:
    """A balanced subset needs ``per_class`` images of every class in the part it is drawn from."""
    counts = np.bincount(targets, minlength=10)
    if counts.min() < per_class:
        raise ConfigError(
            f"subset_per_class={config.subset_per_class} needs {per_class} {part} images of "
            f"every class, but the {part} part (val_fraction={config.val_fraction}) has only "
            f"{counts.min()} of class {int(counts.argmin())}: raise val_fraction or lower "
            "subset_per_class"
        )


def _read_state_dict(source: str, backbone: str) -> dict[str, Tensor]:
    if source == "imagenet":
        import torchvision

        weights = torchvision.models.get_model_weights(backbone)["IMAGENET1K_V1"]
        try:
            return weights.get_state_dict(progress=False)
        except Exception as err:  # noqa: BLE001 - torchvision raises URLError, OSError...
            raise ConfigError(
                f"cannot download torchvision's ImageNet weights for {backbone} ({err}); without "
                "network, download them elsewhere and set pretrained=/path/to/file.pth, or "
                "pretrained=none to start from random weights"
            ) from err
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"pretrained={source!r}: no such file; use imagenet, none or a torchvision "
            "state-dict file (.pth/.safetensors)"
        )
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:  # a local file, tensors only
        sd = read_torch_state_dict(path, what="the pretrained file")
    except WeightsError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(sd, dict):
        raise ConfigError(f"{path} does not hold a state dict")
    return sd


def build_model(
    config: TrainConfig, *, taxonomy: Taxonomy, token: str | bool | None = None
) -> MDAN:
    """The MDAN that training starts from: ImageNet backbone, an init checkpoint, or random.

    ``token`` reads a private Hub repo named by ``init_from`` (default: ``HF_TOKEN`` or ``hf
    auth login``); it is never recorded in the run."""
    if config.init_from:
        model = _init_from(config, taxonomy=taxonomy, token=token)
    else:
        model = MDAN(taxonomy, config.model_config(), preprocessing=config.preprocessing())
        if config.pretrained != "none":
            model.load_backbone_state_dict(_read_state_dict(config.pretrained, config.backbone))
            logger.info("backbone starts from %s", config.pretrained)
    if config.batchnorm == "sync" and torch.distributed.is_initialized():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[assignment]
    return model


def _init_from(config: TrainConfig, *, taxonomy: Taxonomy, token: str | bool | None) -> MDAN:
    """Start from another MDAN (Sec. 5.2: small sets start from the FI model)."""
    src = Path(config.init_from or "")
    runs = [p.name for p in protocol_runs(src)] if src.is_dir() else []
    if runs and not (src / "checkpoints").is_dir():
        raise ConfigError(
            f"init_from {src} holds {len(runs)} runs ({', '.join(runs)}), not one: start from "
            f"one of them, e.g. --set init_from={src / runs[0]}"
        )
    if is_run_folder(src):
        model = load_checkpoint(src).model
    else:
        model = MDAN.from_pretrained(str(config.init_from), token=token)
        model.train()
    if model.config.backbone != config.backbone:
        raise ConfigError(
            f"init_from {config.init_from} is a {model.config.backbone} model but backbone="
            f"{config.backbone}; set backbone={model.config.backbone}"
        )
    if not model.taxonomy.same_tree(taxonomy):  # the zoo's name-aware transfer (hub/_transfer.py)
        model = MDAN.from_state(
            model.state_dict(),
            config=model.config,
            taxonomy=taxonomy,
            source_taxonomy=model.taxonomy,
            preprocessing=model.preprocessing,
            source=str(config.init_from),
        ).train()
        logger.info("init_from %s:\n%s", config.init_from, model.transfer_report)
    else:
        model.taxonomy = taxonomy
    model.preprocessing = config.preprocessing()
    if model.config.calibrated:  # training moves the logits: calibrate the new run again
        logger.info("init_from %s: its temperatures are not carried over", config.init_from)
        model.set_temperatures(None)
    return model
