"""The trainer: the paper's recipe (Sec. 5.2) as defaults, on one CPU or many GPUs with torchrun.

Recipe: SGD (momentum 0.9, weight decay 1e-3), batch 64, 30 epochs, learning rate 1e-3 for the
ImageNet-pretrained backbone and 1e-2 for the new layers, divided by 10 every 10 epochs; the small
sets start from an FI model with 1e-4 / 1e-3. Everything is a field of :class:`TrainConfig`, read
from a JSON or TOML file and overridden with ``key=value`` strings.
Scale-out is plain ``torch.distributed``: launched by ``torchrun`` the trainer reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment, wraps the model in
``DistributedDataParallel`` and shards every epoch as ``DistributedSampler`` would, but without
dropping the last partial batch (:mod:`mdan_zoo.training._batching`; nccl on GPUs, gloo on CPUs). The
global batch stays ``batch_size`` whatever the number of processes; gradient accumulation splits
each process's share into ``micro_batch_size`` pieces when memory is short.
Every epoch ends with a checkpoint (weights and optimizer tensors as safetensors, everything else
as JSON, written into a fresh folder that is renamed into place, then a pointer file replaced
atomically). ``resume=True`` continues from the last one; since every epoch reseeds its random
streams from ``(seed, epoch, rank)`` a resumed run ends with the same weights as an uninterrupted
one. The model is selected on the validation set, never on the test set.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._io import atomic_write_text
from .._threads import available_cores, using_threads
from ..config import ConfigError
from ..data.dataset import ImageDataset
from ..data.device_decode import EncodedBatch, EncodedImages, collate_encoded, decode_batch
from ..errors import NonFiniteLossError, RunExistsError, StorageError
from ..model import MDAN
from ._batching import EpochBatches, SeededSamples, Step, plan_epoch
from ._checkpoints import checkpoint_name, find_checkpoints, load_checkpoint, resume_checkpoint
from ._config import RESUME_FREE, TrainConfig, config_diff
from ._distributed import epoch_seed, seed_all, set_bn_frozen, setup_distributed
from ._freeze import apply_freeze, frozen_eval
from ._input import EpochInput, TimedDataset, loader_options, starvation_warning, usable_cpus
from ._judge import judge_selected, selection_facts, split_warnings
from ._run_writer import (
    fault_point,
    prepare_run_dir,
    run_lock,
    save_training_checkpoint,
    settle_run,
)
from ._setup import build_datasets, build_model
from ._state import set_rng_state, unflatten_optimizer

__all__ = ["NonFiniteLossError", "RunExistsError", "TrainResult", "Trainer", "saved_state", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced. ``warnings``: what the run found wrong with its own verdict (a
    split too small to select or judge a model, a selected model no better than always
    answering the most common class; :mod:`mdan_zoo.judge`), also logged and written under
    the test report; empty when the run could judge and the model learned."""

    output_dir: Path
    best_epoch: int
    best_metric: float
    select_metric: str
    history: list[dict[str, Any]]
    best_checkpoint: Path
    test_report: Any = None  # mdan_zoo.evaluation.EvalReport when the test split was evaluated
    warnings: list[str] = field(default_factory=list)


class Trainer:
    """One training run. Build it with a config (and optionally ready-made datasets), call
    :meth:`fit`. Launch many processes with ``torchrun``; each runs the same code."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        datasets: Mapping[str, Dataset] | None = None,
        model: MDAN | None = None,
        token: str | bool | None = None,
    ) -> None:
        self.config = config
        self.dist, self.device, self._started_pg = setup_distributed(config)
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
        self._encoded_from: ImageDataset | None = None
        self._train_base = self._train_input(config)
        self._timed = TimedDataset(self._train_base)
        seed_all(config.seed)
        self.model = (
            build_model(config, taxonomy=self.taxonomy, token=token) if model is None else model
        )
        self.model.to(self.device)
        for need in ("train", "val"):
            if need not in self.datasets or len(self.datasets[need]) == 0:  # type: ignore[arg-type]
                raise ConfigError(
                    f"the {need!r} split is missing or empty: training selects the model on a "
                    "validation split (set val_fraction > 0 when the dataset has none)"
                )
        self.split_warnings = split_warnings(
            self.datasets if self.dist.main else {}, self.taxonomy, fix=_split_fix(config)
        )
        for text in self.split_warnings:
            logger.warning("%s", text)
        self.output_dir = config.resolved_output_dir()
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        frozen = apply_freeze(self.model, config.freeze)
        if frozen:
            logger.info(
                "freeze %s: %d parameter tensors keep their start weights",
                config.freeze,
                len(frozen),
            )
        rates = {"backbone": config.lr_backbone, "new": config.lr_new}
        learning = {
            name: [p for p in params if p.requires_grad]
            for name, params in self.model.param_groups().items()
        }
        self.optimizer = torch.optim.SGD(
            [  # a part frozen whole has no group: the head-only recipe steps lr_new alone
                {"params": params, "lr": rates[name], "name": name}
                for name, params in learning.items()
                if params
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
        if self.dist.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.start_epoch = 1
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        self._unreadable: set[str] = set()

    # ------------------------------------------------------------------ pieces
    def _train_input(self, config: TrainConfig) -> Dataset:
        """What the train loader reads: the dataset, or with ``decode=gpu`` its files' bytes."""
        train_set = self.datasets.get("train")
        if config.decode != "gpu" or train_set is None:
            return train_set  # type: ignore[return-value]  # missing: refused below
        if not isinstance(train_set, ImageDataset):
            raise ConfigError(
                f"decode=gpu reads the training images' files, but the train dataset is a "
                f"{type(train_set).__name__}, not an ImageDataset (what the dataset adapters "
                "and mdan_zoo.data.load_dataset give): use decode=cpu"
            )
        if self.device.type != "cuda":
            logger.info("decode=gpu on %s: the main process decodes the batches", self.device)
        self._encoded_from = train_set
        return EncodedImages(train_set, config.preprocessing())

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
        """This process's micro-batches of ``epoch``: every training image once, the last
        partial batch included (:mod:`mdan_zoo.training._batching`);
        ``loader.batch_sampler.steps`` groups them into optimizer steps. The dataset is read
        through a :class:`~mdan_zoo.training._input.TimedDataset` (the workers' busy time);
        the DataLoader settings come from :func:`~mdan_zoo.training._input.loader_options`."""
        cfg = self.config
        steps = plan_epoch(
            len(self.datasets["train"]),  # type: ignore[arg-type]
            batch_size=cfg.batch_size,
            world=self.dist.world,
            rank=self.dist.rank,
            micro_batch_size=self.micro,
            seed=cfg.seed,
            epoch=epoch,
        )
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, self.dist.rank))
        # augmentation seeded per image (issue 18): the worker count changes nothing
        self._timed.dataset = SeededSamples(self._train_base, cfg.seed, epoch)
        self._timed.reset()
        options = loader_options(
            workers=cfg.loader_workers(),
            device=self.device,
            batch_bytes=self.micro * 3 * cfg.input_size**2 * 4,
            pin_memory=cfg.pin_memory,
            prefetch_factor=cfg.prefetch_factor,
        )
        return DataLoader(
            self._timed,
            batch_sampler=EpochBatches(steps),
            generator=gen,
            collate_fn=collate_encoded if cfg.decode == "gpu" else None,
            **options,
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
        seed_all(epoch_seed(cfg.seed, epoch, self.dist.rank))
        loader = self._loader(epoch)
        plan: list[Step] = loader.batch_sampler.steps  # type: ignore[union-attr]
        steps = len(plan)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        self.net.train()
        if cfg.batchnorm == "frozen":
            set_bn_frozen(self.net)
        frozen_eval(self.model, cfg.freeze)
        it = iter(loader)
        feed = EpochInput(workers=loader.num_workers)
        total_loss, seen, t0 = 0.0, 0, time.perf_counter()
        bar = self._progress(range(1, steps + 1), desc=f"epoch {epoch}/{cfg.epochs}", leave=False)
        for step in bar:
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=self.device, dtype=torch.float64)
            plan_step = plan[step - 1]
            for micro in range(len(plan_step.micro)):
                asked = time.perf_counter()
                images, targets = next(it)
                waited = time.perf_counter() - asked
                if step == 1 and micro == 0:
                    feed.first_batch_s = waited
                else:
                    feed.wait_s += waited
                images = self._to_device(images)
                targets = torch.as_tensor(targets).to(self.device, non_blocking=True)
                sync = micro == len(plan_step.micro) - 1 or not isinstance(
                    self.net, nn.parallel.DistributedDataParallel
                )
                weight = plan_step.weight(len(targets), self.dist.world)
                ctx = nullcontext() if sync else self.net.no_sync()  # type: ignore[operator]
                with ctx:
                    with self._autocast():
                        out = self.net(images)
                        loss = self.model.loss(out, targets) * weight
                    self.scaler.scale(loss).backward()
                step_loss += loss.detach().double()
            if self.dist.distributed:
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
            seen += plan_step.size
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{value:.4f}")
            self._on_step(epoch, step)
            fault_point("train-step", epoch)
        elapsed = time.perf_counter() - t0
        self._log_unreadable(epoch)
        feed.images, feed.epoch_s = seen, elapsed
        feed.busy_s, feed.prepared = self._timed.busy_seconds(), self._timed.prepared()
        return {
            "train_loss": total_loss / steps,
            "train_steps": steps,
            "train_images": seen,
            "train_seconds": elapsed,
            "train_images_per_s": seen / elapsed if elapsed > 0 else float("nan"),
            **self._input_report(epoch, feed),
        }

    def _to_device(self, images: Any) -> torch.Tensor:
        """The micro-batch on the training device (``decode=gpu``: decoded and augmented there)."""
        if isinstance(images, EncodedBatch):
            return decode_batch(
                images, self.device, self.config.preprocessing(), dataset=self._encoded_from
            )
        return images.to(self.device, non_blocking=True)

    def _input_report(self, epoch: int, feed: EpochInput) -> dict[str, float]:
        """The epoch's input figures (the slowest process's wait when there are several), and
        the starvation warning when the steps waited for data too long."""
        if self.dist.distributed:
            waits = torch.tensor(
                [feed.wait_s, feed.first_batch_s], device=self.device, dtype=torch.float64
            )
            dist.all_reduce(waits, op=dist.ReduceOp.MAX)
            feed.wait_s, feed.first_batch_s = (float(v) for v in waits)
        stats = feed.stats()
        if self.dist.main:
            logger.info(
                "epoch %d: waited for data %.0f%% of the steps' time (%.1f s; first batch "
                "%.1f s); loader %.0f images/s (%d workers), model %.0f images/s",
                epoch,
                100 * stats["data_wait_share"],
                stats["data_wait_s"],
                stats["first_batch_s"],
                stats["loader_images_per_s"],
                feed.workers,
                stats["model_images_per_s"],
            )
            text = starvation_warning(
                epoch, stats, workers=feed.workers, cpus=usable_cpus(), decode=self.config.decode
            )
            if text:
                logger.warning("%s", text)
        return stats

    def _log_unreadable(self, epoch: int) -> None:
        """Name the training images that failed to decode and were left out (``skip``)."""
        failures = getattr(self.datasets["train"], "decode_failures", None)
        new = [(p, r) for p, r in failures() if p not in self._unreadable] if failures else []
        if new and self.dist.main:
            self._unreadable.update(p for p, _ in new)
            logger.warning(
                "epoch %d: %d training image(s) failed to decode and were left out (%d so far): %s",
                epoch,
                len(new),
                len(self._unreadable),
                "; ".join(f"{p}: {r}" for p, r in new[:10]) + ("; ..." if len(new) > 10 else ""),
            )

    def validate(self, split: str = "val") -> Any:
        """Evaluate on ``split`` (sharded over processes, gathered everywhere)."""
        from ..evaluation import evaluate

        return evaluate(
            self.model,
            self.datasets[split],
            batch_size=self.config.eval_batch_size,
            device=self.device,
            workers=self.config.loader_workers(),
            amp_dtype=self.amp_dtype,
            progress=self.config.progress and self.dist.main,
            distributed=self.dist.distributed,
            threads=self.config.intra_op_threads(),
        )

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, epoch: int, metrics: Mapping[str, Any], *, is_best: bool) -> Path:
        """Rank 0 writes ``checkpoints/epoch-NNNN``, then commits it in ``last.json`` together
        with the selected epoch, then removes epoch folders beyond ``keep_checkpoints``
        (:func:`._run_writer.save_training_checkpoint`: safe against ``kill -9``)."""
        if is_best and self.best_epoch != epoch:
            self.best_epoch = epoch
            self.best_metric = float(metrics.get(f"val/{self.config.select_metric}", math.nan))
        if not self.dist.main:
            return self.output_dir / "checkpoints" / checkpoint_name(epoch)
        try:
            return self._save(epoch, metrics)
        except OSError as err:
            if isinstance(err, StorageError):
                raise
            raise StorageError.of(
                err,
                self.output_dir,
                f"cannot write the checkpoint of epoch {epoch} (the last complete one is intact: "
                "--resume continues from it) into",
            ) from None

    def _save(self, epoch: int, metrics: Mapping[str, Any]) -> Path:
        return save_training_checkpoint(
            self.output_dir,
            epoch,
            model=self.model,
            optimizer=self.optimizer,
            extra={
                "config": self.config.to_dict(),
                "metrics": dict(metrics),
                "best_metric": self.best_metric,
                "best_epoch": self.best_epoch,
                "select_metric": self.config.select_metric,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "world_size": self.dist.world,
                "history": self.history,
                "split_warnings": self.split_warnings,
            },
            keep=self.config.keep_checkpoints,
        )

    def resume(self) -> bool:
        """Load the newest trusted checkpoint of ``output_dir``; False when the folder holds no
        trace of a run. A damaged newest checkpoint is skipped with a warning; a folder with
        traces of a run but no trusted checkpoint raises :class:`RunFolderError`."""
        ckpt = resume_checkpoint(self.output_dir, self.config.to_dict(), free=RESUME_FREE)
        if ckpt is None:
            return False
        if ckpt.state.get("world_size", 1) != self.dist.world:
            logger.warning(
                "resuming a %d-process run with %d processes: the data order changes",
                ckpt.state.get("world_size", 1),
                self.dist.world,
            )
        self.model.load_state_dict(ckpt.model.state_dict())
        opt = unflatten_optimizer(
            {k: v.to(self.device) for k, v in ckpt.tensors.items()}, ckpt.state["optimizer"]
        )
        self.optimizer.load_state_dict(opt)
        self.scheduler.load_state_dict(ckpt.state["scheduler"])
        self.scaler.load_state_dict(ckpt.state["scaler"])
        set_rng_state(ckpt.tensors, ckpt.state["rng"])
        self.start_epoch = ckpt.epoch + 1
        self.best_metric = float(ckpt.state["best_metric"])
        self.best_epoch = int(ckpt.state["best_epoch"])
        self.history = [h for h in ckpt.state["history"] if h["epoch"] <= ckpt.epoch]
        if self.dist.main:
            keep = self.config.keep_checkpoints
            settle_run(self.output_dir, ckpt.epoch, best_epoch=self.best_epoch, keep=keep)
        logger.info("resumed from %s (epoch %d)", ckpt.path, ckpt.epoch)
        return True

    def _write_log(self) -> None:
        if self.dist.main:
            lines = "".join(json.dumps(h) + "\n" for h in self.history)
            atomic_write_text(self.output_dir / "metrics.jsonl", lines)

    # ------------------------------------------------------------------ the loop
    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing the last checkpoint with ``resume``)."""
        cfg = self.config
        stack = ExitStack()
        try:
            if self.device.type == "cpu":  # threads + workers within the cores (_threads.py)
                stack.enter_context(using_threads(cfg.intra_op_threads()))
                logger.info(
                    "CPU budget: %d intra-op thread(s) + %d DataLoader worker(s) on %d core(s) "
                    "(--threads N / --set workers=N change it)",
                    cfg.intra_op_threads(),
                    cfg.loader_workers(),
                    available_cores(),
                )
            if self.dist.main:
                stack.enter_context(run_lock(self.output_dir))
                for done in prepare_run_dir(self.output_dir, resume=resume):
                    logger.info("%s: after an interrupted write, %s", self.output_dir, done)
            if self.dist.distributed:
                dist.barrier()
            if resume and not self.resume():
                logger.info("no checkpoint in %s: starting from epoch 1", self.output_dir)
            if self.dist.main:
                cfg.to_json(self.output_dir / "config.json")
                if self.history:  # the log of the epochs resumed (a kill may have cut it short)
                    self._write_log()
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
                stats = self.train_epoch(epoch)
                self.scheduler.step()
                report = self.validate("val")
                fault_point("validate", epoch)
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
                val = {f"val/{k}": v for k, v in flat.items()} | selection_facts(report)
                row = {"epoch": epoch, "lr": lrs, **stats, **val}
                row["selected"] = is_best
                self.history.append(row)
                self.save_checkpoint(epoch, val, is_best=is_best)
                self._write_log()
                fault_point("metrics", epoch)
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
            self.model.weights_origin = "trained"  # predictions no longer warn (untrained.py)
            if self.dist.distributed:
                dist.barrier()
            best = self.output_dir / "checkpoints" / checkpoint_name(self.best_epoch)
            warnings = self.verdict()
            test_report = None
            if cfg.calibrate:
                self._calibrate_best(best)
            if cfg.eval_test and "test" in self.datasets:
                test_report = self._evaluate_best_on_test(best, warnings)
            return TrainResult(
                output_dir=self.output_dir,
                best_epoch=self.best_epoch,
                best_metric=self.best_metric,
                select_metric=cfg.select_metric,
                history=self.history,
                best_checkpoint=best,
                test_report=test_report,
                warnings=warnings,
            )
        finally:
            stack.close()
            if self._started_pg and dist.is_initialized():
                dist.destroy_process_group()

    def verdict(self) -> list[str]:
        """The split warnings, then what :func:`~mdan_zoo.judge.judge_selected` says of the
        selected epoch; logged (rank 0) as warnings."""
        row = next((h for h in self.history if h["epoch"] == self.best_epoch), {})
        found = judge_selected(row, self.taxonomy.level_names, epoch=self.best_epoch)
        if self.dist.main:
            for text in found:
                logger.warning("%s", text)
        return [*self.split_warnings, *found]

    def _load_best(self, best: Path) -> None:
        """The selected epoch's weights into ``self.model`` (once; the last epoch's are there)."""
        last = self.history[-1]["epoch"] if self.history else 0
        if self.best_epoch != last and getattr(self, "_best_loaded", None) != best:
            self.model.load_state_dict(load_checkpoint(best).model.state_dict())
            self._best_loaded = best

    def _calibrate_best(self, best: Path) -> None:
        """``calibrate: true``: temperature scaling of the selected epoch (:func:`calibrate_selected`)."""
        from ._calibrate import calibrate_selected

        self._load_best(best)
        calibrate_selected(
            self.model,
            self.datasets,
            self.config,
            best=best,
            output_dir=self.output_dir,
            device=self.device,
            main=self.dist.main,
        )

    def _evaluate_best_on_test(self, best: Path, warnings: list[str]) -> Any:
        self._load_best(best)
        report = self.validate("test")
        report.title = (
            f"{self.config.name}: test split ({report.num_samples} images), model of epoch "
            f"{self.best_epoch} (selected on validation)"
        )
        report.warnings = list(warnings)
        if self.dist.main:
            report.write(self.output_dir / "test")
        return report


def _split_fix(config: TrainConfig) -> str:
    """The config change that holds out more images for validation and test."""
    if config.dataset == "fashion_mnist":
        return "--set val_fraction=0.1, or a larger --set subset_per_class=..."
    return (
        "--set split.val_fraction=0.2 (Python: config.with_overrides(['split.val_fraction=0.2']))"
    )


def saved_state(output_dir: str | Path) -> dict[str, Any] | None:
    """The ``state.json`` of a run's newest trusted checkpoint (epoch, config, ...), None when
    the folder holds no run; a run without a trusted checkpoint raises
    :class:`~mdan_zoo.errors.RunFolderError`. Reads no weights."""
    found = find_checkpoints(output_dir)
    return None if found is None else found.state


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    datasets: Mapping[str, Dataset] | None = None,
    model: MDAN | None = None,
    token: str | bool | None = None,
) -> TrainResult:
    """Run the recipe of ``config`` (see :class:`Trainer`).

    An ``output_dir`` with checkpoints is continued with ``resume=True`` and refused otherwise
    (:class:`RunExistsError`); continuing with a changed config is refused too. Both are
    checked before any data is read or weights are downloaded. ``token``: for ``init_from``."""
    out = config.resolved_output_dir()
    state = saved_state(out)
    if state is not None and not resume:
        done = int(state["epoch"]) >= config.epochs
        raise RunExistsError(
            [out],
            f"{out} already holds a {'finished run' if done else 'run'} (checkpoints up to "
            f"epoch {state['epoch']} of {config.epochs})",
            "continue it with train(config, resume=True), or choose another output_dir",
        )
    if state is not None:
        diff = config_diff(state["config"], config)
        if diff:
            raise ConfigError(
                f"cannot resume {out}: the config differs in {diff} from the one the run was "
                f"made with (recorded in {out / 'config.json'} and the checkpoints); resume "
                "with that config, or start a new output_dir"
            )
    return Trainer(config, datasets=datasets, model=model, token=token).fit(resume=resume)
