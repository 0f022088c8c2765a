"""The trainer: the paper's recipe (Sec. 5.2) as defaults, on one CPU or many GPUs with torchrun.

Recipe: SGD (momentum 0.9, weight decay 1e-3), batch 64, 30 epochs, learning rate 1e-3 for the
ImageNet-pretrained backbone and 1e-2 for the new layers, divided by 10 every 10 epochs; the small
sets start from an FI model with 1e-4 / 1e-3. Everything is a field of :class:`TrainConfig`, read
from a JSON or TOML file and overridden with ``key=value`` strings.

Scale-out is plain ``torch.distributed``: launched by ``torchrun`` the trainer reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment, wraps the model in
``DistributedDataParallel`` and shards every epoch with ``DistributedSampler`` (nccl on GPUs,
gloo on CPUs). The global batch stays ``batch_size`` whatever the number of processes; gradient
accumulation splits each process's share into ``micro_batch_size`` pieces when memory is short.

Every epoch ends with a checkpoint (weights and optimizer tensors as safetensors, everything else
as JSON, written into a fresh folder that is renamed into place, then a pointer file replaced
atomically). ``resume=True`` continues from the last one; since every epoch reseeds its random
streams from ``(seed, epoch, rank)`` a resumed run ends with the same weights as an uninterrupted
one. The model is selected on the validation set, never on the test set.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import random
import shutil
import time
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ._io import atomic_write_text
from .config import BACKBONES, ConfigError, MDANConfig, Preprocessing
from .model import MDAN
from .taxonomy import Taxonomy, get_taxonomy, list_taxonomies

__all__ = [
    "Checkpoint",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_datasets",
    "build_model",
    "load_checkpoint",
    "train",
]

logger = logging.getLogger(__name__)

AMP_MODES = ("auto", "bf16", "fp16", "off")
BN_MODES = ("train", "frozen", "sync")
_RESUME_FREE = {"epochs", "progress", "workers", "output_dir", "eval_test", "paper", "description"}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


# ====================================================================== configuration
@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the paper's recipe (Sec. 5.2).

    Attributes:
        name: run name (used in ``output_dir`` and the model card).
        description: free text for the model card.
        taxonomy: a built-in taxonomy name (``fi``, ``webemo``...) or a path to a taxonomy JSON.
        dataset: the adapter that reads the images (``fashion_mnist``, ``fi``, ``webemo``,
            ``emotion6``, ``artphoto``, ``abstract``, ``iaps``, ``folder``, ``csv``).
        data_root: where the dataset lives (its public layout, see docs/datasets.md).
        split_dir: where the split file is written and reused (default: the dataset adapter's
            ``<data_root>/mdan_splits/``).
        on_missing: ``error`` stops on missing/unreadable images with a list; ``skip`` leaves
            them out and counts them.
        fold: for 5-fold cross-validation sets, the fold to train (0-4); ``None`` otherwise.
        val_fraction: for ``fashion_mnist``, the part of the training images held out for model
            selection (the paper datasets take their validation part from the dataset's split
            file, see docs/datasets.md).
        subset_per_class: ``fashion_mnist`` only: a seeded, balanced subset of N training
            images per class, and N // 4 per class for validation and test (quick runs).
        backbone: torchvision ResNet (paper: ``resnet101``).
        model: MDANConfig fields to change (``alpha``, ``heads``, ``lcam``...).
        input_size / resize_size: crop and resize sizes (paper: 448 crops).
        pretrained: backbone start: ``imagenet`` (torchvision's download), ``none``, or a local
            torchvision state-dict file (``.pth`` / ``.safetensors``).
        init_from: an MDAN checkpoint to start from instead (Hub repo id, Hub folder or a run's
            output folder), e.g. the FI model for the small sets; heads are kept when the tree
            is the same and re-initialised otherwise.
        epochs, batch_size, micro_batch_size, lr_backbone, lr_new, momentum, weight_decay,
        lr_step_epochs, lr_gamma: the optimisation recipe; ``batch_size`` is global (all
            processes together), ``micro_batch_size`` enables gradient accumulation.
        batchnorm: ``train`` (per-process batch statistics), ``frozen`` (running statistics of
            the start weights, affine parameters still learn) or ``sync`` (SyncBatchNorm, GPUs).
        amp: mixed precision on GPU: ``auto`` (bf16 where supported, else fp16 + GradScaler),
            ``bf16``, ``fp16`` or ``off``; CPUs always run in float32.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        workers: DataLoader worker processes per process.
        seed: seeds the initialisation, the data order and the augmentations.
        deterministic: ask torch for deterministic kernels (slower on GPU).
        select_metric: the validation metric that picks the exported epoch (a key of
            :meth:`mdan_zoo.evaluate.EvalReport.flat`, e.g. ``overall/mean``).
        output_dir: where checkpoints, logs and reports go (``{name}`` and ``{fold}`` are
            replaced).
        keep_checkpoints: how many epoch checkpoints to keep (the best one is kept apart).
        progress: tqdm progress bars (rank 0 only).
        max_steps_per_epoch: cap on optimizer steps per epoch (smoke tests).
        eval_batch_size: batch size for validation and test.
        eval_test: evaluate the selected model on the test split at the end.
        paper: informational: the paper's target numbers and the expected GPU time.
    """

    name: str = "mdan"
    description: str = ""
    taxonomy: str = "fi"
    dataset: str = "fi"
    data_root: str | None = None
    split_dir: str | None = None
    on_missing: str = "error"
    fold: int | None = None
    val_fraction: float = 0.05
    subset_per_class: int | None = None
    backbone: str = "resnet101"
    model: dict[str, Any] = field(default_factory=dict)
    input_size: int = 448
    resize_size: int = 512
    pretrained: str = "imagenet"
    init_from: str | None = None
    epochs: int = 30
    batch_size: int = 64
    micro_batch_size: int | None = None
    lr_backbone: float = 1e-3
    lr_new: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    batchnorm: str = "train"
    amp: str = "auto"
    device: str = "auto"
    workers: int = 4
    seed: int = 0
    deterministic: bool = False
    select_metric: str = "overall/mean"
    output_dir: str = "runs/{name}"
    keep_checkpoints: int = 1
    progress: bool = True
    max_steps_per_epoch: int | None = None
    eval_batch_size: int = 64
    eval_test: bool = True
    paper: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field and what it accepts."""
        _check_types(self)
        positive = ("epochs", "batch_size", "lr_step_epochs", "input_size", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_backbone", "lr_new", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("momentum must be in [0, 1) and weight_decay >= 0")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone {self.backbone!r} unknown; choose one of {BACKBONES}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.batchnorm not in BN_MODES:
            raise ConfigError(f"batchnorm must be one of {BN_MODES}, got {self.batchnorm!r}")
        if self.on_missing not in ("error", "skip"):
            raise ConfigError(f"on_missing must be error or skip, got {self.on_missing!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.fold is not None and not 0 <= self.fold < 5:
            raise ConfigError(f"fold must be 0-4 (5-fold cross-validation), got {self.fold}")
        if self.resize_size < self.input_size:
            raise ConfigError(
                f"resize_size ({self.resize_size}) must be >= input_size ({self.input_size})"
            )
        if self.keep_checkpoints < 1:
            raise ConfigError("keep_checkpoints must be >= 1 (resume needs the last one)")
        if not (
            self.device in ("auto", "cpu", "cuda")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if "backbone" in self.model:
            raise ConfigError(
                "set the backbone with the top-level `backbone` key, not model.backbone"
            )
        self.model_config()  # unknown or invalid MDANConfig fields fail here
        self.preprocessing()
        if self.select_metric.split("/")[0] not in ("overall", "local", "global"):
            raise ConfigError(
                f"select_metric {self.select_metric!r} must start with overall/, local/ or "
                "global/ (e.g. overall/mean or overall/acc/<level name>)"
            )

    # ------------------------------------------------------------------ derived objects
    def model_config(self) -> MDANConfig:
        """The :class:`MDANConfig` this run builds."""
        return MDANConfig.from_dict({**self.model, "backbone": self.backbone})

    def preprocessing(self) -> Preprocessing:
        """The input the trained weights will expect (carried with them)."""
        return Preprocessing(input_size=self.input_size, resize_size=self.resize_size)

    def load_taxonomy(self) -> Taxonomy:
        """The built-in taxonomy of that name, or the taxonomy JSON at that path."""
        if self.taxonomy.lower() in list_taxonomies():
            return get_taxonomy(self.taxonomy)
        path = Path(self.taxonomy)
        if path.is_file():
            return Taxonomy.from_json(path)
        raise ConfigError(
            f"taxonomy {self.taxonomy!r} is neither a built-in ({list_taxonomies()}) nor a "
            "taxonomy JSON file; write one with Taxonomy.to_json (docs/finetune.md)"
        )

    def resolved_output_dir(self) -> Path:
        fold = "" if self.fold is None else str(self.fold)
        return Path(self.output_dir.replace("{name}", self.name).replace("{fold}", fold))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a ``.json`` or ``.toml`` config file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (see configs/ for examples)")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(text)
            elif path.suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(f"config file {path} must end in .json or .toml")
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot parse {path}: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON/TOML table of config keys")
        return cls.from_dict(data)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def with_overrides(self, overrides: Sequence[str]) -> TrainConfig:
        """A copy with ``key=value`` strings applied (``model.alpha=0.5`` reaches nested keys).

        Values are read as JSON when they parse (numbers, true/false, null, lists), else taken
        as strings; the result is type-checked like a config file.
        """
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r} must look like key=value (e.g. epochs=5)")
            try:
                value: Any = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            head, _, rest = key.partition(".")
            if head not in data:
                raise ConfigError(
                    f"unknown config key {head!r} in --set {item!r}; known keys: {sorted(data)}"
                )
            if rest:
                if not isinstance(data[head], dict):
                    raise ConfigError(f"{head} is not a table; use --set {head}=VALUE")
                data[head] = {**data[head], rest: value}
            else:
                data[head] = value
        return TrainConfig.from_dict(data)


def _check_types(cfg: TrainConfig) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed = tuple(
            typing.get_origin(a) or a for a in (typing.get_args(hint) if union else (hint,))
        )
        ok = any(
            (a is type(None) and value is None)
            or (a is float and isinstance(value, int | float) and not isinstance(value, bool))
            or (a is int and isinstance(value, int) and not isinstance(value, bool))
            or (a not in (int, float, type(None)) and isinstance(value, a))
            for a in allowed
        )
        if not ok:
            names = " or ".join("null" if a is type(None) else a.__name__ for a in allowed)
            raise ConfigError(f"config key {f.name!r} must be {names}, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and float in allowed:
            setattr(cfg, f.name, float(value))


# ====================================================================== datasets and model
def build_datasets(config: TrainConfig, *, taxonomy: Taxonomy) -> dict[str, Dataset]:
    """``train`` / ``val`` / ``test`` datasets of ``(image_tensor, fine_index)`` for ``config``.

    ``fashion_mnist`` is built in (real images, offline); the paper datasets and the generic
    folder / CSV readers come from :mod:`mdan_zoo.data`.
    """
    pre = config.preprocessing()
    train_tf, eval_tf = pre.train_transform(), pre.eval_transform()
    if config.dataset == "fashion_mnist":
        from .data.fashion_mnist import FashionMNIST

        if taxonomy.num_classes[-1] != 10:
            raise ConfigError("dataset fashion_mnist needs a taxonomy with 10 fine classes")
        full = FashionMNIST("train", root=config.data_root)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(full.targets))
        n_val = int(round(config.val_fraction * len(order))) or 1
        val_idx, train_idx = order[:n_val], order[n_val:]
        test = FashionMNIST("test", root=config.data_root, transform=eval_tf)
        test_idx = np.arange(len(test.targets))
        if config.subset_per_class:
            n = config.subset_per_class
            train_idx = train_idx[
                FashionMNIST.balanced_indices(full.targets[train_idx], n, seed=config.seed)
            ]
            few = max(1, n // 4)
            val_idx = val_idx[
                FashionMNIST.balanced_indices(full.targets[val_idx], few, seed=config.seed)
            ]
            test_idx = FashionMNIST.balanced_indices(test.targets, few, seed=config.seed)
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
        from .data import load_splits  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError(
            f"dataset {config.dataset!r} needs the dataset adapters (mdan_zoo.data.load_splits), "
            "which this installation lacks; use dataset=fashion_mnist or update mdan_zoo"
        ) from None
    if config.data_root is None:
        raise ConfigError(
            f"dataset {config.dataset!r} needs data_root: the folder in its public layout "
            "(docs/datasets.md); set it in the config or with --set data_root=/path"
        )
    split_file = (
        Path(config.split_dir) / f"{config.dataset}_seed{config.seed}.json"
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
        seed=config.seed,
        split_file=split_file,
        progress=config.progress,
    )
    return dict(parts)


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
    sd = torch.load(path, map_location="cpu", weights_only=True)  # local file, tensors only
    if not isinstance(sd, dict):
        raise ConfigError(f"{path} does not hold a state dict")
    return sd


def build_model(config: TrainConfig, *, taxonomy: Taxonomy) -> MDAN:
    """The MDAN that training starts from: ImageNet backbone, an init checkpoint, or random."""
    if config.init_from:
        model = _init_from(config, taxonomy=taxonomy)
    else:
        model = MDAN(taxonomy, config.model_config(), preprocessing=config.preprocessing())
        if config.pretrained != "none":
            model.load_backbone_state_dict(_read_state_dict(config.pretrained, config.backbone))
            logger.info("backbone starts from %s", config.pretrained)
    if config.batchnorm == "sync" and torch.distributed.is_initialized():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[assignment]
    return model


def _init_from(config: TrainConfig, *, taxonomy: Taxonomy) -> MDAN:
    """Start from another MDAN (Sec. 5.2: small sets start from the FI model)."""
    src = Path(config.init_from or "")
    if (src / "checkpoints").is_dir() or (src / "state.json").is_file():
        model = load_checkpoint(src).model
    else:
        from .hub import load_pretrained  # type: ignore[attr-defined]

        model = load_pretrained(str(config.init_from))
        model.train()
    if model.config.backbone != config.backbone:
        raise ConfigError(
            f"init_from {config.init_from} is a {model.config.backbone} model but backbone="
            f"{config.backbone}; set backbone={model.config.backbone}"
        )
    if not model.taxonomy.same_tree(taxonomy):
        logger.info("init_from has another taxonomy: new classifier heads for %s", taxonomy.name)
        model.reset_classifier(taxonomy)
    else:
        model.taxonomy = taxonomy
    model.preprocessing = config.preprocessing()
    return model


# ====================================================================== checkpoints
@dataclass
class Checkpoint:
    """A saved epoch: the model plus the state that ``resume`` needs."""

    path: Path
    epoch: int
    model: MDAN
    state: dict[str, Any]
    tensors: dict[str, Tensor]


def _model_state(model: MDAN) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    meta: dict[str, Any] = {"param_groups": opt_state["param_groups"], "state": {}}
    for idx, entry in opt_state["state"].items():
        meta["state"][str(idx)] = {}
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                meta["state"][str(idx)][key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer/"):
            _, idx, key = name.split("/", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    np_state: Any = np.random.get_state()
    tensors = {
        "rng/torch": torch.get_rng_state(),
        "rng/numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state(
        (name, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, values, gauss = meta["python"]
    random.setstate((version, tuple(values), gauss))
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _write_checkpoint_dir(final: Path, files: Mapping[str, Any]) -> None:
    """Write files into ``final.tmp-*`` and rename the folder into place (atomic on POSIX)."""
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, content in files.items():
        if name.endswith(".safetensors"):
            save_file(content, str(tmp / name))
        else:
            (tmp / name).write_text(content, encoding="utf-8")
    for entry in tmp.iterdir():
        with open(entry, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _pointer(run_dir: Path, which: str) -> Path | None:
    ptr = run_dir / "checkpoints" / f"{which}.json"
    if not ptr.is_file():
        return None
    target = run_dir / "checkpoints" / json.loads(ptr.read_text())["dir"]
    return target if target.is_dir() else None


def load_checkpoint(path: str | os.PathLike[str], *, which: str = "best") -> Checkpoint:
    """Load a checkpoint folder, or a run's ``best`` / ``last`` checkpoint from its output folder.

    The model is rebuilt from the taxonomy, config and preprocessing stored beside the weights.
    """
    path = Path(path)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not (path / "state.json").is_file():
        found = _pointer(path, which)
        if found is None:
            raise FileNotFoundError(
                f"{path} holds no checkpoint: expected {path}/checkpoints/{which}.json (a training "
                "run's output_dir) or a checkpoint folder with state.json"
            )
        path = found
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    taxonomy = Taxonomy.from_dict(state["taxonomy"])
    model = MDAN(
        taxonomy,
        MDANConfig.from_dict(state["model_config"]),
        preprocessing=Preprocessing.from_dict(state["preprocessing"]),
    )
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    tensors = (
        load_file(str(path / "training.safetensors"))
        if (path / "training.safetensors").is_file()
        else {}
    )
    return Checkpoint(
        path=path, epoch=int(state["epoch"]), model=model, state=state, tensors=tensors
    )


# ====================================================================== distributed helpers
@dataclass(frozen=True)
class _Dist:
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(config: TrainConfig) -> tuple[_Dist, torch.device, bool]:
    """Read torchrun's environment; start the process group if it is not running yet."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if config.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    elif config.device == "cuda":
        device = torch.device(f"cuda:{local_rank}")
    else:
        device = torch.device(config.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={config.device} but CUDA is not available; use device=auto")
        torch.cuda.set_device(device)
    started = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        started = True
    if world > 1 and config.batchnorm == "sync" and device.type != "cuda":
        raise ConfigError(
            "batchnorm=sync needs GPUs (torch's SyncBatchNorm); on CPU use batchnorm=frozen"
        )
    return _Dist(rank=rank, world=world, local_rank=local_rank), device, started


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**31)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _set_bn_frozen(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# ====================================================================== the trainer
@dataclass
class TrainResult:
    """What a run produced."""

    output_dir: Path
    best_epoch: int
    best_metric: float
    select_metric: str
    history: list[dict[str, Any]]
    best_checkpoint: Path
    test_report: Any = None  # mdan_zoo.evaluate.EvalReport when the test split was evaluated


class Trainer:
    """One training run. Build it with a config (and optionally ready-made datasets), call
    :meth:`fit`. Launch many processes with ``torchrun``; each runs the same code."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        datasets: Mapping[str, Dataset] | None = None,
        model: MDAN | None = None,
    ) -> None:
        self.config = config
        self.dist, self.device, self._started_pg = _setup_distributed(config)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.taxonomy = model.taxonomy if model is not None else config.load_taxonomy()
        # the data first: a wrong folder should fail before a weights download
        self.datasets = (
            dict(datasets)
            if datasets is not None
            else build_datasets(config, taxonomy=self.taxonomy)
        )
        _seed_all(config.seed)
        self.model = model if model is not None else build_model(config, taxonomy=self.taxonomy)
        self.model.to(self.device)
        for need in ("train", "val"):
            if need not in self.datasets or len(self.datasets[need]) == 0:  # type: ignore[arg-type]
                raise ConfigError(
                    f"the {need!r} split is missing or empty: training selects the model on a "
                    "validation split (set val_fraction > 0 when the dataset has none)"
                )
        self.output_dir = config.resolved_output_dir()
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        groups = self.model.param_groups()
        self.optimizer = torch.optim.SGD(
            [
                {"params": groups["backbone"], "lr": config.lr_backbone, "name": "backbone"},
                {"params": groups["new"], "lr": config.lr_new, "name": "new"},
            ],
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma
        )
        per_rank, rem = divmod(config.batch_size, self.dist.world)
        if rem or per_rank < 1:
            raise ConfigError(
                f"batch_size {config.batch_size} must be a multiple of the number of processes "
                f"({self.dist.world})"
            )
        self.micro = config.micro_batch_size or per_rank
        if per_rank % self.micro:
            raise ConfigError(
                f"micro_batch_size {self.micro} must divide the per-process batch {per_rank} "
                f"(batch_size {config.batch_size} / {self.dist.world} processes)"
            )
        self.accum = per_rank // self.micro
        self.net: nn.Module = self.model
        if self.dist.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.start_epoch = 1
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ pieces
    def _amp_dtype(self) -> torch.dtype | None:
        mode = self.config.amp
        if self.device.type != "cuda" or mode == "off":
            return None
        if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _loader(self, epoch: int) -> DataLoader:
        ds = self.datasets["train"]
        sampler: DistributedSampler = DistributedSampler(
            ds,
            num_replicas=self.dist.world,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.config.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(_epoch_seed(self.config.seed, epoch, self.dist.rank))
        return DataLoader(
            ds,
            batch_size=self.micro,
            sampler=sampler,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=gen,
            persistent_workers=False,
        )

    def _progress(self, iterable: Any, **kw: Any) -> Any:
        if not (self.config.progress and self.dist.main):
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, **kw)

    def _on_step(self, epoch: int, step: int) -> None:
        """Hook after every optimizer step (tests use it to simulate a kill)."""

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        _seed_all(_epoch_seed(cfg.seed, epoch, self.dist.rank))
        loader = self._loader(epoch)
        steps = len(loader) // self.accum
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        if steps == 0:
            raise ConfigError(
                f"the training split ({len(self.datasets['train'])} images) is smaller than one "  # type: ignore[arg-type]
                f"batch ({cfg.batch_size}); lower batch_size"
            )
        self.net.train()
        if cfg.batchnorm == "frozen":
            _set_bn_frozen(self.net)
        it = iter(loader)
        total_loss, seen, t0 = 0.0, 0, time.perf_counter()
        bar = self._progress(range(1, steps + 1), desc=f"epoch {epoch}/{cfg.epochs}", leave=False)
        for step in bar:
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=self.device, dtype=torch.float64)
            for micro in range(self.accum):
                images, targets = next(it)
                images = images.to(self.device, non_blocking=True)
                targets = torch.as_tensor(targets).to(self.device, non_blocking=True)
                sync = micro == self.accum - 1 or not isinstance(
                    self.net, nn.parallel.DistributedDataParallel
                )
                ctx = nullcontext() if sync else self.net.no_sync()  # type: ignore[operator]
                with ctx:
                    with self._autocast():
                        out = self.net(images)
                        loss = self.model.loss(out, targets) / self.accum
                    self.scaler.scale(loss).backward()
                step_loss += loss.detach().double()
            if self.dist.world > 1:
                dist.all_reduce(step_loss)
                step_loss /= self.dist.world
            value = float(step_loss)
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"training loss is {value} at epoch {epoch}, step {step} of {steps}: stopped "
                    "before the weights were updated. Lower lr_new / lr_backbone, check the "
                    "images for NaN/inf values, or use amp=bf16/off instead of fp16; the last "
                    f"good checkpoint is in {self.output_dir / 'checkpoints'}"
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total_loss += value
            seen += self.micro * self.accum * self.dist.world
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{value:.4f}")
            self._on_step(epoch, step)
        elapsed = time.perf_counter() - t0
        return {
            "train_loss": total_loss / steps,
            "train_steps": steps,
            "train_images": seen,
            "train_seconds": elapsed,
            "train_images_per_s": seen / elapsed if elapsed > 0 else float("nan"),
        }

    def validate(self, split: str = "val") -> Any:
        """Evaluate on ``split`` (sharded over processes, gathered everywhere)."""
        from .evaluate import evaluate

        return evaluate(
            self.model,
            self.datasets[split],
            batch_size=self.config.eval_batch_size,
            device=self.device,
            workers=self.config.workers,
            amp_dtype=self.amp_dtype,
            progress=self.config.progress and self.dist.main,
            distributed=self.dist.world > 1,
        )

    # ------------------------------------------------------------------ checkpoints
    def _state_json(self, epoch: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "format": "mdan_zoo.train/1",
            "epoch": epoch,
            "config": self.config.to_dict(),
            "taxonomy": self.model.taxonomy.to_dict(),
            "model_config": self.model.config.to_dict(),
            "preprocessing": self.model.preprocessing.to_dict(),
            "metrics": dict(metrics),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "select_metric": self.config.select_metric,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "world_size": self.dist.world,
            "history": self.history,
        }

    def save_checkpoint(self, epoch: int, metrics: Mapping[str, Any], *, is_best: bool) -> Path:
        """Rank 0 writes ``checkpoints/epoch-NNNN`` then points ``last.json`` (and ``best.json``)
        at it; older epoch folders beyond ``keep_checkpoints`` are removed."""
        ckpt_dir = self.output_dir / "checkpoints"
        final = ckpt_dir / f"epoch-{epoch:04d}"
        if not self.dist.main:
            return final
        opt_t, opt_meta = _flatten_optimizer(self.optimizer.state_dict())
        rng_t, rng_meta = _rng_state()
        state = self._state_json(epoch, metrics)
        state["optimizer"] = opt_meta
        state["rng"] = rng_meta
        _write_checkpoint_dir(
            final,
            {
                "model.safetensors": _model_state(self.model),
                "training.safetensors": {**opt_t, **rng_t},
                "state.json": json.dumps(state, indent=1) + "\n",
            },
        )
        atomic_write_text(
            ckpt_dir / "last.json", json.dumps({"dir": final.name, "epoch": epoch}) + "\n"
        )
        if is_best:
            best = ckpt_dir / "best"
            _write_checkpoint_dir(
                best,
                {
                    "model.safetensors": _model_state(self.model),
                    "state.json": json.dumps(self._state_json(epoch, metrics), indent=1) + "\n",
                },
            )
            atomic_write_text(
                ckpt_dir / "best.json", json.dumps({"dir": "best", "epoch": epoch}) + "\n"
            )
        keep = sorted(ckpt_dir.glob("epoch-*"))[: -self.config.keep_checkpoints]
        for old in keep:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self) -> bool:
        """Load the last checkpoint of ``output_dir``; False when there is none."""
        last = _pointer(self.output_dir, "last")
        if last is None:
            return False
        ckpt = load_checkpoint(last)
        saved = dict(ckpt.state["config"])
        now = self.config.to_dict()
        diff = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k])
        if diff:
            raise ConfigError(
                f"cannot resume {last}: the config differs in {diff}; resume with the saved "
                f"config ({last / 'state.json'}) or start a new output_dir"
            )
        if ckpt.state.get("world_size", 1) != self.dist.world:
            logger.warning(
                "resuming a %d-process run with %d processes: the data order changes",
                ckpt.state.get("world_size", 1),
                self.dist.world,
            )
        self.model.load_state_dict(ckpt.model.state_dict())
        opt = _unflatten_optimizer(
            {k: v.to(self.device) for k, v in ckpt.tensors.items()}, ckpt.state["optimizer"]
        )
        self.optimizer.load_state_dict(opt)
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.scaler.load_state_dict(ckpt.state["scaler"])
        _set_rng_state(ckpt.tensors, ckpt.state["rng"])
        self.start_epoch = ckpt.epoch + 1
        self.best_metric = float(ckpt.state["best_metric"])
        self.best_epoch = int(ckpt.state["best_epoch"])
        self.history = [h for h in ckpt.state["history"] if h["epoch"] <= ckpt.epoch]
        logger.info("resumed from %s (epoch %d)", last, ckpt.epoch)
        return True

    def _write_log(self) -> None:
        if self.dist.main:
            lines = "".join(json.dumps(h) + "\n" for h in self.history)
            atomic_write_text(self.output_dir / "metrics.jsonl", lines)

    # ------------------------------------------------------------------ the loop
    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing the last checkpoint with ``resume``)."""
        cfg = self.config
        if self.dist.main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_json(self.output_dir / "config.json")
        if resume and not self.resume():
            logger.info("no checkpoint in %s: starting from epoch 1", self.output_dir)
        elif not resume and _pointer(self.output_dir, "last") is not None and self.dist.main:
            raise ConfigError(
                f"{self.output_dir} already holds checkpoints: pass --resume to continue, or "
                "choose another output_dir"
            )
        try:
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
                stats = self.train_epoch(epoch)
                self.scheduler.step()
                report = self.validate("val")
                flat = report.flat()
                if cfg.select_metric not in flat:
                    raise ConfigError(
                        f"select_metric {cfg.select_metric!r} is not a validation metric; "
                        f"choose one of {sorted(flat)}"
                    )
                score = flat[cfg.select_metric]
                is_best = score > self.best_metric
                if is_best:
                    self.best_metric, self.best_epoch = score, epoch
                row = {
                    "epoch": epoch,
                    "lr": lrs,
                    **stats,
                    **{f"val/{k}": v for k, v in flat.items()},
                }
                row["selected"] = is_best
                self.history.append(row)
                self.save_checkpoint(
                    epoch, {f"val/{k}": v for k, v in flat.items()}, is_best=is_best
                )
                self._write_log()
                if self.dist.main:
                    logger.info(
                        "epoch %d/%d: loss %.4f, val %s %.4f%s",
                        epoch,
                        cfg.epochs,
                        stats["train_loss"],
                        cfg.select_metric,
                        score,
                        " (best)" if is_best else "",
                    )
            if self.dist.world > 1:
                dist.barrier()
            best = _pointer(self.output_dir, "best") or self.output_dir / "checkpoints" / "best"
            test_report = None
            if cfg.eval_test and "test" in self.datasets:
                test_report = self._evaluate_best_on_test(best)
            return TrainResult(
                output_dir=self.output_dir,
                best_epoch=self.best_epoch,
                best_metric=self.best_metric,
                select_metric=cfg.select_metric,
                history=self.history,
                best_checkpoint=best,
                test_report=test_report,
            )
        finally:
            if self._started_pg and dist.is_initialized():
                dist.destroy_process_group()

    def _evaluate_best_on_test(self, best: Path) -> Any:
        if self.best_epoch != (self.history[-1]["epoch"] if self.history else 0):
            self.model.load_state_dict(load_checkpoint(best).model.state_dict())
        report = self.validate("test")
        if self.dist.main:
            report.write(self.output_dir / "test", title=f"{self.config.name}: test split")
        return report


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    datasets: Mapping[str, Dataset] | None = None,
    model: MDAN | None = None,
) -> TrainResult:
    """Run the recipe of ``config`` (see :class:`Trainer`)."""
    return Trainer(config, datasets=datasets, model=model).fit(resume=resume)
