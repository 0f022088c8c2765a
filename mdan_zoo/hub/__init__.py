"""Checkpoints on disk and on the Hugging Face Hub: the format, download, verification, push.

The machinery is private: ``_checkpoint`` (the file format), ``_integrity`` (sha256 checks),
``_refs`` (Hub names checked before any request), ``_network`` (Hub errors and offline mode),
``_download`` (files from a path or the Hub, as :class:`FetchOptions` say), ``_model_card``, ``_transfer`` (fine-tuning to
another taxonomy) and ``_mixin``: :class:`PretrainedMixin` gives :class:`~mdan_zoo.model.MDAN`
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` and receives the class it builds, so
nothing here imports the network. :mod:`.run_folder` reads training run folders (the trainer
writes them). The same operations as plain functions (``load_pretrained`` ...) live in
:mod:`mdan_zoo.zoo`, which knows the network.
"""

from __future__ import annotations

from ._checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Checkpoint,
    ChecksumError,
    PendingState,
    WeightsError,
    read_hashed_state_dict,
    read_state_dict,
    read_torch_state_dict,
)
from ._download import download, parse_hub_ref, read_checkpoint_config, resolve
from ._mixin import PretrainedMixin
from ._options import CONNECT_TIMEOUT_ENV, TIMEOUT_ENV, FetchOptions, HubDeadlines
from ._transfer import TransferReport

__all__ = [
    "CONFIG_NAME",
    "CONNECT_TIMEOUT_ENV",
    "TIMEOUT_ENV",
    "WEIGHTS_NAME",
    "ChecksumError",
    "Checkpoint",
    "FetchOptions",
    "PendingState",
    "HubDeadlines",
    "PretrainedMixin",
    "TransferReport",
    "WeightsError",
    "download",
    "parse_hub_ref",
    "read_checkpoint_config",
    "read_hashed_state_dict",
    "read_state_dict",
    "read_torch_state_dict",
    "resolve",
]
