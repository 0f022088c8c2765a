"""A training run's checkpoints as models: load the selected (or last) epoch, or the one a
resumed run continues from.

Which files can be trusted is :mod:`mdan_zoo.hub.run_folder`'s business (layout, checksums,
fallback to the newest epoch that verifies); this module builds the network from them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import Tensor

from ..config import ConfigError, MDANConfig, Preprocessing
from ..hub.run_folder import (
    RunCheckpoints,
    RunFolderError,
    checkpoint_name,
    describe_skipped,
    find_checkpoints,
    inspect_checkpoint,
    run_traces,
    selected_checkpoint,
)
from ..model import MDAN
from ..taxonomy import Taxonomy

__all__ = [
    "RunCheckpoint",
    "RunCheckpoints",
    "RunFolderError",
    "checkpoint_name",
    "find_checkpoints",
    "inspect_checkpoint",
    "load_checkpoint",
    "resume_checkpoint",
    "run_traces",
]

logger = logging.getLogger(__name__)


@dataclass
class RunCheckpoint:
    """A saved epoch: the model plus the state that ``resume`` needs."""

    path: Path
    epoch: int
    model: MDAN
    state: dict[str, Any]
    tensors: dict[str, Tensor]


def _load(path: Path, state: dict[str, Any]) -> RunCheckpoint:
    """Build the model of a verified checkpoint folder and read its tensors."""
    try:
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
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as err:
        raise RunFolderError(
            f"{path} is not a usable checkpoint: its files do not fit together ({err}). "
            "Use another checkpoint of the run, or retrain"
        ) from None
    return RunCheckpoint(
        path=path, epoch=int(state["epoch"]), model=model, state=state, tensors=tensors
    )


def load_checkpoint(
    path: str | os.PathLike[str], *, which: str = "best", calibration: bool = True
) -> RunCheckpoint:
    """Load a checkpoint folder, or a run's ``best`` / ``last`` checkpoint from its output folder.

    ``calibration=False`` drops the temperatures ``mdan-zoo calibrate`` stored (the raw model).

    The files are verified against the checksums state.json records, and the model is rebuilt
    from the taxonomy, config and preprocessing stored beside the weights. A damaged newest
    checkpoint of a run is skipped with a warning (:func:`find_checkpoints`); a damaged
    checkpoint folder is a :class:`RunFolderError` naming what is wrong.
    """
    folder, state = selected_checkpoint(path, which=which)
    ckpt = _load(folder, state)
    if not calibration:
        ckpt.model.set_temperatures(None)
    return ckpt


def resume_checkpoint(
    run_dir: str | os.PathLike[str], config: Mapping[str, Any], *, free: Collection[str]
) -> RunCheckpoint | None:
    """The checkpoint a resumed run continues from (:func:`find_checkpoints`, warning about
    what was skipped), or None when ``run_dir`` shows no trace of a run. ``config`` (a
    ``TrainConfig.to_dict()``) must equal the saved one except for the keys in ``free``."""
    found = find_checkpoints(run_dir)
    if found is None:
        return None
    if found.skipped:
        logger.warning(
            "resuming %s from %s: skipped %s",
            run_dir,
            found.last.name,
            describe_skipped(found.skipped),
        )
    ckpt = _load(found.last, found.state)
    saved = dict(ckpt.state["config"])
    diff = sorted(k for k in config if k not in free and saved.get(k) != config[k])
    if diff:
        raise ConfigError(
            f"cannot resume {found.last}: the config differs in {diff}; resume with the saved "
            f"config ({found.last / 'state.json'}) or start a new output_dir"
        )
    return ckpt
