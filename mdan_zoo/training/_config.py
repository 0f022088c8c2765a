"""The training configuration: the paper's recipe (Sec. 5.2) as the defaults of one dataclass.

Read from a JSON or TOML file, or by name from the configs that ship inside the package
(``mdan_zoo/configs/*.json``: the paper's six datasets, EmoSet, FindingEmo and the demo), and
overridden with ``key=value`` strings; every field is type-checked, so a typo in a config file
fails before any data or weights are touched.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from .._checks import typed_fields, unique_keys
from .._hints import docs_url
from .._io import atomic_write_text
from .._threads import available_cores, thread_budget
from ..config import BACKBONES, ConfigError, MDANConfig, Preprocessing
from ..data.splits import DEFAULT_SPLITS, SplitSpec
from ..taxonomy import Taxonomy, get_taxonomy, list_taxonomies

__all__ = [
    "AMP_MODES",
    "BN_MODES",
    "DECODE_MODES",
    "RESUME_FREE",
    "TrainConfig",
    "changed_split",
    "config_diff",
    "config_text",
    "list_configs",
]

logger = logging.getLogger(__name__)

AMP_MODES = ("auto", "bf16", "fp16", "off")
BN_MODES = ("train", "frozen", "sync")
DECODE_MODES = ("cpu", "gpu")
RESUME_FREE = {
    "epochs",
    "progress",
    "workers",
    "threads",
    "output_dir",
    "eval_test",
    "calibrate",
    "paper",
    "description",
    "pin_memory",
    "prefetch_factor",
    "decode",
}
CONFIG_SUFFIXES = (".json", ".toml")
_WORKER_NOTES: set[tuple[int, int]] = set()


def _shipped() -> dict[str, Traversable]:
    """The configs inside the package (``mdan_zoo/configs``), by name (file name sans suffix)."""
    folder = resources.files("mdan_zoo").joinpath("configs")
    if not folder.is_dir():
        return {}
    return {
        f.name.rsplit(".", 1)[0]: f
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.is_file() and f.name.endswith(CONFIG_SUFFIXES)
    }


def list_configs() -> list[str]:
    """Names of the configs that ship with the package, for ``mdan-zoo train NAME`` and
    ``TrainConfig.from_file(NAME)`` (``mdan-zoo configs`` prints them with their dataset)."""
    return list(_shipped())


def config_text(name: str) -> str:
    """The text of the shipped config ``name`` (to copy and edit)."""
    shipped = _shipped()
    if name not in shipped:
        TrainConfig.from_file(name)  # a file of that name, or the error that lists the names
        raise ConfigError(f"{name!r} is a file, not a shipped config: {list(shipped)}")
    return shipped[name].read_text(encoding="utf-8")


def config_diff(saved: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """Keys (outside :data:`RESUME_FREE`) whose value in ``config`` differs from ``saved`` (a
    run's recorded config): a run may only be continued with the config it started with."""
    now = config.to_dict()
    absent = _defaults()  # a key newer than the run: the run had its default
    return sorted(k for k in now if k not in RESUME_FREE and saved.get(k, absent.get(k)) != now[k])


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


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
        split: the split of the other datasets, as :class:`~mdan_zoo.data.splits.SplitSpec`
            fields that replace the adapter's default (``{"val_fraction": 0.2}``,
            ``{"scheme": "kfold", "folds": 5}``); empty: the paper's split
            (:data:`~mdan_zoo.data.splits.DEFAULT_SPLITS`). For a ``ratio`` split
            ``val_fraction`` is the validation share of all images (the training part shrinks).
        backbone: torchvision ResNet (paper: ``resnet101``).
        model: MDANConfig fields to change (``alpha``, ``heads``, ``lcam``...).
        input_size / resize_size: crop and resize sizes (paper: 448 crops). ``resize_size``
            null (``--set resize_size=null``) is the paper's literal reading: random crops
            from the original image, no resize first (:class:`~mdan_zoo.Preprocessing`).
        pretrained: backbone start: ``imagenet`` (torchvision's download), ``none``, or a local
            torchvision state-dict file (``.pth`` / ``.safetensors``).
        init_from: an MDAN checkpoint to start from instead (Hub repo id, Hub folder or a run's
            output folder), e.g. the FI model for the small sets; heads are kept when the tree
            is the same and re-initialised otherwise.
        freeze: parts of the network that keep their start weights and do not learn (the
            small-data recipe, docs/finetune.md): ``["trunk"]`` (the ResNet backbone), its
            stages ``trunk.stem``, ``trunk.layer1`` .. ``trunk.layer4``, ``top_down`` (F5
            and the MHCCA laterals) or ``top_down.f5`` / ``top_down.level1`` ..; any module
            path of the model (``backbone.layer3``) works too (:data:`mdan_zoo.training.FREEZE_PARTS`).
            Frozen parameters get no optimizer group; frozen BatchNorm layers keep their
            statistics. The classifiers always learn (at ``lr_new``).
        epochs, batch_size, micro_batch_size, lr_backbone, lr_new, momentum, weight_decay,
        lr_step_epochs, lr_gamma: the optimisation recipe; ``batch_size`` is global (all
            processes together), ``micro_batch_size`` enables gradient accumulation.
        batchnorm: ``train`` (per-process batch statistics), ``frozen`` (running statistics of
            the start weights, affine parameters still learn) or ``sync`` (SyncBatchNorm, GPUs).
        amp: mixed precision on GPU: ``auto`` (bf16 where supported, else fp16 + GradScaler),
            ``bf16``, ``fp16`` or ``off``; CPUs always run in float32.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        workers: DataLoader worker processes per process (at most the cores left to the
            model's threads, see ``threads``).
        threads: torch intra-op threads per process; None: the cores this process may use
            minus the DataLoader workers, so the two never exceed the cores (``--threads``).
        pin_memory: page-locked batches for asynchronous copies to the GPU; ``None``
            (default): on when training on CUDA, off on CPUs.
        prefetch_factor: batches each worker keeps ready; ``None`` (default): torch's 2,
            or 1 where ``workers x 2`` batches would take over a quarter of the free memory.
        decode: ``cpu`` (default: the workers decode with Pillow and augment) or ``gpu``
            (the workers only read the files; JPEG decoding and the train augmentations run
            on the training device, :mod:`mdan_zoo.data.device_decode`; for image-file
            datasets). The trainer logs, every epoch, how long the steps waited for data.
        seed: seeds the initialisation, the data order and the augmentations, and the split
            unless ``split_seed`` is given.
        split_seed: seeds the train/val/test split (and ``subset_per_class``); ``None`` (the
            default) uses ``seed``, so every run of ``--seeds`` draws its own split. The paper
            does not say whether its 3 runs re-split (Sec. 5.2); ``split_seed=0`` gives every
            run the same split.
        deterministic: ask torch for deterministic kernels (slower on GPU).
        select_metric: the validation metric that picks the exported epoch (a key of
            :meth:`mdan_zoo.evaluation.EvalReport.flat`, e.g. ``overall/mean``).
        output_dir: where checkpoints, logs and reports go (``{name}`` and ``{fold}`` are
            replaced).
        keep_checkpoints: how many epoch checkpoints to keep (the best one is kept apart).
        progress: tqdm progress bars (rank 0 only).
        max_steps_per_epoch: cap on optimizer steps per epoch (smoke tests).
        eval_batch_size: batch size for validation and test.
        eval_test: evaluate the selected model on the test split at the end.
        calibrate: after the last epoch, fit temperature scaling on the validation split and
            store the temperatures with the selected checkpoint (``mdan-zoo calibrate`` does
            the same for a finished run); the test report then measures the calibrated model.
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
    split: dict[str, Any] = field(default_factory=dict)
    backbone: str = "resnet101"
    model: dict[str, Any] = field(default_factory=dict)
    input_size: int = 448
    resize_size: int | None = 512
    pretrained: str = "imagenet"
    init_from: str | None = None
    freeze: list[str] = field(default_factory=list)
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
    pin_memory: bool | None = None
    prefetch_factor: int | None = None
    decode: str = "cpu"
    threads: int | None = None
    seed: int = 0
    split_seed: int | None = None
    deterministic: bool = False
    select_metric: str = "overall/mean"
    output_dir: str = "runs/{name}"
    keep_checkpoints: int = 1
    progress: bool = True
    max_steps_per_epoch: int | None = None
    eval_batch_size: int = 64
    eval_test: bool = True
    calibrate: bool = False
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
        if self.workers < 0:
            raise ConfigError(
                f"workers must be 0 (read images in the training process) or more, got "
                f"{self.workers}: set workers to 0 or a small count such as 2"
            )
        for name in ("lr_backbone", "lr_new", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("momentum must be in [0, 1) and weight_decay >= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (or null: from the cores), got {self.threads}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone {self.backbone!r} unknown; choose one of {BACKBONES}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"decode must be one of {DECODE_MODES}, got {self.decode!r}")
        if self.prefetch_factor is not None and self.prefetch_factor < 1:
            raise ConfigError(
                f"prefetch_factor must be >= 1 or null (chosen from the machine), got "
                f"{self.prefetch_factor}"
            )
        if self.batchnorm not in BN_MODES:
            raise ConfigError(f"batchnorm must be one of {BN_MODES}, got {self.batchnorm!r}")
        if self.on_missing not in ("error", "skip"):
            raise ConfigError(f"on_missing must be error or skip, got {self.on_missing!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.fold is not None and not 0 <= self.fold < 5:
            raise ConfigError(f"fold must be 0-4 (5-fold cross-validation), got {self.fold}")
        if self.resize_size is not None and self.resize_size < self.input_size:
            raise ConfigError(
                f"resize_size ({self.resize_size}) must be >= input_size ({self.input_size})"
            )
        if not isinstance(self.freeze, list) or not all(isinstance(p, str) for p in self.freeze):
            raise ConfigError(
                f'freeze must be a list of part names (e.g. ["trunk"]), got {self.freeze!r}'
            )
        from ._freeze import FREEZE_PARTS

        bad = [p for p in self.freeze if p not in FREEZE_PARTS and not _module_path(p)]
        if bad:
            raise ConfigError(
                f"freeze: unknown part {bad[0]!r}; parts: {', '.join(FREEZE_PARTS)}, or a "
                "module path of the model such as backbone.layer3"
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
        if self.model_config().calibrated:  # unknown or invalid MDANConfig fields fail here
            raise ConfigError(
                "model.local_temperatures / global_temperature are fitted after training, not "
                "set before it: drop them and use calibrate=true (or `mdan-zoo calibrate RUN`)"
            )
        self.split_spec()  # unknown or invalid split fields fail here
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

    def resolved_split_seed(self) -> int:
        """The seed of the split: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def split_spec(self) -> SplitSpec | None:
        """The split this run's dataset is cut with: the adapter's default
        (:data:`~mdan_zoo.data.splits.DEFAULT_SPLITS`) changed by ``split``; None for
        ``fashion_mnist``, which keeps its own (``val_fraction``)."""
        if self.dataset == "fashion_mnist":
            if self.split:
                raise ConfigError(
                    "split applies to the other datasets; fashion_mnist holds out "
                    "validation images with val_fraction (e.g. --set val_fraction=0.1)"
                )
            return None
        default = DEFAULT_SPLITS.get(self.dataset, DEFAULT_SPLITS["folder"])
        return changed_split(default, self.split)

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
            f"taxonomy JSON file; write one with Taxonomy.to_json ({docs_url('finetune.md')})"
        )

    def loader_workers(self) -> int:
        """``workers``, capped so that they and the model's intra-op threads fit the CPUs this
        process may use (:func:`~mdan_zoo._threads.thread_budget`); the cap is logged once."""
        threads, workers = thread_budget(self.threads, self.workers)
        if workers < self.workers and (self.workers, workers) not in _WORKER_NOTES:
            _WORKER_NOTES.add((self.workers, workers))
            logger.info(
                "workers=%d but this process may use %d CPUs and runs %d intra-op thread(s): "
                "using %d DataLoader workers",
                self.workers,
                available_cores(),
                threads,
                workers,
            )
        return workers

    def intra_op_threads(self) -> int:
        """torch threads for this run: ``threads``, or the cores the workers leave."""
        return thread_budget(self.threads, self.workers)[0]

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
        """Read a ``.json`` or ``.toml`` config file, or a shipped config by name (``"fi"``:
        a bare name that is not an existing file; see :func:`list_configs`)."""
        path = Path(path)
        if path.is_file():
            return cls._parse(path.read_text(encoding="utf-8"), path.suffix, str(path))
        shipped = _shipped()
        bare = len(path.parts) == 1
        name = path.stem if path.suffix in CONFIG_SUFFIXES else path.name
        if bare and name in shipped:
            entry = shipped[name]
            return cls._parse(
                entry.read_text(encoding="utf-8"),
                "." + entry.name.rsplit(".")[-1],
                f"shipped config {name!r}",
            )
        close = difflib.get_close_matches(name, list(shipped), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        what = "no config file and no shipped config" if bare else "config file"
        raise ConfigError(
            f"{what} {str(path)!r}{'' if bare else ' does not exist'}; {hint}the configs that "
            f"ship with mdan_zoo are {', '.join(shipped) or '(none found)'} (`mdan-zoo configs` "
            "describes them; use one by name, e.g. `mdan-zoo train fi --set data_root=/data/FI`), "
            "or pass the path of your own .json/.toml file"
        )

    @classmethod
    def _parse(cls, text: str, suffix: str, source: str) -> TrainConfig:
        try:
            if suffix == ".toml":
                data = tomllib.loads(text)
            elif suffix == ".json":
                data = json.loads(text, object_pairs_hook=unique_keys(ConfigError, source))
            else:
                raise ConfigError(f"config file {source} must end in .json or .toml")
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot parse {source}: {err}") from err
        except RecursionError:
            raise ConfigError(
                f"cannot parse {source}: it is nested too deeply (tables or arrays inside each "
                "other thousands of times); a training config is a few levels deep"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a JSON/TOML table of config keys")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from err

    def to_json(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def with_overrides(self, overrides: Sequence[str]) -> TrainConfig:
        """A copy with ``key=value`` strings applied (``model.alpha=0.5`` reaches nested keys).

        A key that names an :class:`MDANConfig` field and no field here is that field of
        ``model`` (``mapping=c`` is ``model.mapping=c``). Values are read as JSON when they
        parse (numbers, true/false, null, lists), else taken as strings; the result is
        type-checked like a config file.
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
            if head not in data and head in _MODEL_FIELDS and not rest:
                head, rest = "model", head  # --set mapping=c: a field of the MDANConfig
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


_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(MDANConfig))


def changed_split(default: SplitSpec, changes: Mapping[str, Any]) -> SplitSpec:
    """``default`` with the :class:`SplitSpec` fields of ``changes`` replaced. For a ``ratio``
    split, ``val_fraction`` (without ``fractions``) sets the validation share of all images
    and the training part gives it up; :class:`ConfigError` names a bad field."""
    if not changes:
        return default
    known = {f.name for f in dataclasses.fields(SplitSpec)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"unknown split key(s) {unknown}; known: {sorted(known)}")
    data: dict[str, Any] = {
        "scheme": default.scheme,
        "fractions": dict(default.fractions),
        "folds": default.folds,
        "val_fraction": default.val_fraction,
        **changes,
    }
    if data["scheme"] == "ratio" and "fractions" not in changes and "val_fraction" in changes:
        fractions = dict(default.fractions) if default.scheme == "ratio" else {}
        fractions = fractions or dict(DEFAULT_SPLITS["folder"].fractions)
        val = changes["val_fraction"]
        if not isinstance(val, (int, float)) or isinstance(val, bool) or not 0 < val < 1:
            raise ConfigError(f"split.val_fraction must be a number in (0, 1), got {val!r}")
        fractions["val"] = float(val)
        rest = sum(f for n, f in fractions.items() if n != "train")
        if rest >= 1:
            raise ConfigError(
                f"split.val_fraction={val} leaves no training images beside the other parts "
                f"({ {n: f for n, f in fractions.items() if n != 'train'} })"
            )
        fractions["train"] = round(1.0 - rest, 10)
        data["fractions"] = fractions
    if isinstance(data["fractions"], Mapping):
        data["fractions"] = tuple(data["fractions"].items())
    try:
        return SplitSpec(**data)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"split {dict(changes)}: {err}") from None


def _module_path(text: str) -> bool:
    """Looks like a dotted module path (``backbone.layer3``, ``laterals.1``)."""
    return bool(text) and all(p.isidentifier() or p.isdigit() for p in text.split("."))


def _check_types(cfg: TrainConfig) -> None:
    """Every field of the type its annotation names (the same checker as MDANConfig's: ints
    are not bools, NaN is not a number); ints given for float fields become floats."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for name, value in typed_fields(TrainConfig, fields, error=ConfigError).items():
        setattr(cfg, name, value)
