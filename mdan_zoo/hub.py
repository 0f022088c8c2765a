"""Checkpoints on disk and on the Hugging Face Hub, as functions: save, download, load, push.

The work lives in rooms: :mod:`mdan_zoo.checkpoint` (the format), :mod:`mdan_zoo.integrity`
(sha256 checks), :mod:`mdan_zoo.hub_refs` (Hub names checked before any request),
:mod:`mdan_zoo.transport` (files from a path or the Hub), :mod:`mdan_zoo.model_card` and
:mod:`mdan_zoo.transfer` (fine-tuning to another taxonomy); :class:`~mdan_zoo.model.MDAN` gets
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` from
:class:`~mdan_zoo.pretrained.PretrainedMixin`. This module gives the same as plain functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Checkpoint,
    ChecksumError,
    WeightsError,
    read_state_dict,
)
from .model import MDAN
from .transfer import TransferReport
from .transport import download, parse_hub_ref, read_checkpoint_config, resolve

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "ChecksumError",
    "Checkpoint",
    "TransferReport",
    "WeightsError",
    "download",
    "from_pretrained",
    "load_pretrained",
    "parse_hub_ref",
    "push_to_hub",
    "read_checkpoint_config",
    "read_state_dict",
    "resolve",
    "save_pretrained",
]


def save_pretrained(
    model: MDAN,
    save_directory: str | os.PathLike[str],
    *,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a Hub-layout folder; see :meth:`MDAN.save_pretrained`."""
    return model.save_pretrained(save_directory, metrics=metrics, training=training)


load_pretrained = MDAN.from_pretrained
"""Rebuild the exact saved model from a checkpoint folder, file, training run or Hub repo, in
eval mode: :meth:`MDAN.from_pretrained` itself, as a function (same arguments, same checks)."""
from_pretrained = load_pretrained


def push_to_hub(
    model: MDAN,
    repo_id: str,
    *,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    commit_message: str = "Upload MDAN checkpoint (mdan_zoo)",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    delete_patterns: list[str] | str | None = None,
    revision: str | None = None,
    api: Any = None,
) -> str:
    """Save ``model`` and upload it to ``repo_id``; see :meth:`MDAN.push_to_hub`."""
    return model.push_to_hub(
        repo_id,
        metrics=metrics,
        training=training,
        commit_message=commit_message,
        private=private,
        token=token,
        branch=branch,
        create_pr=create_pr,
        allow_patterns=allow_patterns,
        ignore_patterns=ignore_patterns,
        delete_patterns=delete_patterns,
        revision=revision,
        api=api,
    )
