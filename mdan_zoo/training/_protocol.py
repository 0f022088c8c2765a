"""The paper's protocol: one training run per seed and/or per fold of a recipe.

The paper averages 3 runs on FI and Emotion6 and the 5 folds of a cross-validation on
ArtPhoto, IAPS and Abstract. :func:`train_runs` trains one run per seed
(``<output_dir>/seed-<s>``) and/or per fold (``<output_dir>/fold-<k>``, both:
``seed-<s>/fold-<k>``) one after the other; a finished run is skipped, never retrained or
overwritten. :func:`mdan_zoo.training.report_runs` then averages them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch.distributed as dist

from ..config import ConfigError
from ..data.splits import DEFAULT_SPLITS
from ._config import TrainConfig, config_diff
from ._distributed import setup_distributed
from ._trainer import RunExistsError, TrainResult, saved_state, train

__all__ = ["ProtocolRun", "protocol_configs", "run_status", "train_runs"]

logger = logging.getLogger(__name__)

RunState = Literal["new", "unfinished", "finished"]


def protocol_configs(
    config: TrainConfig, *, seeds: Sequence[int] | None = None, folds: int | None = None
) -> list[TrainConfig]:
    """One config per run: ``seed`` and ``fold`` set, ``output_dir`` ``<base>/seed-<s>``,
    ``<base>/fold-<k>`` or ``<base>/seed-<s>/fold-<k>`` (``base``: the config's output_dir)."""
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0):
        raise ConfigError(f"--seeds takes distinct seeds >= 0, got {list(seeds)}")
    if folds is not None:
        spec = config.split_spec()
        if spec is None or spec.scheme != "kfold":
            kfold = sorted(n for n, s in DEFAULT_SPLITS.items() if s.scheme == "kfold")
            how = "its own fixed split" if spec is None else f"a {spec.scheme} split"
            raise ConfigError(
                f"--folds: dataset {config.dataset!r} is not cross-validated ({how}); folds "
                f"exist for {kfold}, and for any folder/csv dataset with --set "
                f"split.scheme=kfold. For repeated runs of {config.dataset!r} use --seeds 0 1 2"
            )
        if folds != spec.folds:
            raise ConfigError(
                f"--folds {folds}: the {config.dataset} split file holds {spec.folds} folds "
                f"(fixed and hashed); pass --folds {spec.folds}, or --set fold=K for one fold"
            )
        if "{fold}" in config.output_dir:
            raise ConfigError(
                f"output_dir {config.output_dir!r} names the fold itself, but --folds puts fold "
                "k in <output_dir>/fold-<k>: set an output_dir without {fold}, e.g. "
                "--set output_dir=runs/{name}"
            )
    base = config.resolved_output_dir()
    out = []
    for seed in seeds if seeds is not None else [config.seed]:
        for fold in range(folds) if folds is not None else [config.fold]:
            where = base
            if seeds is not None:
                where = where / f"seed-{seed}"
            if folds is not None:
                where = where / f"fold-{fold}"
            data = {**config.to_dict(), "seed": seed, "fold": fold, "output_dir": str(where)}
            out.append(TrainConfig.from_dict(data))
    return out


def run_status(config: TrainConfig) -> tuple[RunState, int]:
    """``new`` (no checkpoint), ``unfinished`` or ``finished`` (its last checkpoint reached
    ``epochs`` and, with ``eval_test``, its test report is written), and that last epoch."""
    state = saved_state(config.resolved_output_dir())
    if state is None:
        return "new", 0
    epoch = int(state["epoch"])
    report = config.resolved_output_dir() / "test" / "report.json"
    done = epoch >= config.epochs and (report.is_file() or not config.eval_test)
    return ("finished" if done else "unfinished"), epoch


@dataclass
class ProtocolRun:
    """One run of :func:`train_runs`: ``status`` is ``trained``, ``resumed`` or ``skipped``
    (finished before); ``result`` is None when skipped."""

    config: TrainConfig
    status: str
    result: TrainResult | None = None

    @property
    def output_dir(self) -> Path:
        return self.config.resolved_output_dir()


def train_runs(
    config: TrainConfig,
    *,
    seeds: Sequence[int] | None = None,
    folds: int | None = None,
    resume: bool = False,
    token: str | bool | None = None,
) -> list[ProtocolRun]:
    """Train every run of the protocol (:func:`protocol_configs`) in turn.

    Finished runs are skipped with a log line. Runs with checkpoints but not finished are
    continued with ``resume=True`` and refused otherwise (:class:`RunExistsError`, before
    anything trains); a run whose recorded config differs is refused either way.
    """
    configs = protocol_configs(config, seeds=seeds, folds=folds)
    states = [run_status(c) for c in configs]
    changed = []
    for cfg, (state, _) in zip(configs, states, strict=True):
        saved = saved_state(cfg.resolved_output_dir()) if state != "new" else None
        diff = config_diff(saved["config"], cfg) if saved else []
        if diff:
            changed.append(f"{cfg.resolved_output_dir()} ({', '.join(diff)})")
    if changed:
        raise ConfigError(
            f"these runs were made with another config: {'; '.join(changed)}. They are left "
            "as they are: use the config they were made with, or another output_dir"
        )
    unfinished = [
        (c.resolved_output_dir(), e) for c, (s, e) in zip(configs, states, strict=True)
        if s == "unfinished"
    ]  # fmt: skip
    if unfinished and not resume:
        raise RunExistsError(
            [d for d, _ in unfinished],
            "unfinished runs: "
            + ", ".join(
                f"{d} (checkpoints up to epoch {e} of {config.epochs})" for d, e in unfinished
            ),
            "continue them with train_runs(..., resume=True), or choose another output_dir",
        )
    _, _, started = setup_distributed(config)  # one process group for all the runs
    out: list[ProtocolRun] = []
    try:
        for cfg, (state, epoch) in zip(configs, states, strict=True):
            where = cfg.resolved_output_dir()
            if state == "finished":
                logger.info("%s is finished (epoch %d of %d): skipped", where, epoch, cfg.epochs)
                out.append(ProtocolRun(cfg, "skipped"))
                continue
            logger.info("run %d of %d: %s", len(out) + 1, len(configs), where)
            result = train(cfg, resume=state == "unfinished", token=token)
            out.append(ProtocolRun(cfg, "resumed" if state == "unfinished" else "trained", result))
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()
    return out
