"""Predictions from random weights say so: :class:`UntrainedWeightsWarning`.

A model built without weights (``mdan_webemo()``, ``MDAN(taxonomy)``) answers with confident
emotion labels that mean nothing. Every way weights can get into a model records it in
``model.weights_origin``: ``"loaded"`` (``load_state_dict``, ``from_pretrained``, ``weights=``,
``load_checkpoint``), ``"backbone"`` (ImageNet backbone weights), ``"trained"`` (the trainer).
``None`` means random initialisation; predicting then warns once per model. A checkpoint saved
from such a model records ``"untrained": true`` in its config, so loading it warns too.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from ._hints import docs_url
from .errors import UntrainedWeightsWarning

__all__ = ["UntrainedWeightsWarning", "untrained_message", "warn_if_untrained"]

UNTRAINED_KEY = "untrained"
"""The checkpoint config key saved (as ``true``) when the weights were never trained."""

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def is_untrained(model: Any) -> bool:
    """Whether ``model`` holds random weights only (objects that do not track it: False)."""
    return hasattr(model, "weights_origin") and model.weights_origin is None


def untrained_message(model: Any) -> str | None:
    """The warning's text for ``model``, or None when its weights were trained or loaded."""
    model = getattr(model, "_orig_mod", model)  # torch.compile keeps the module here
    if not is_untrained(model):
        return None
    source = getattr(model, "checkpoint_source", None)
    what = (
        f"the checkpoint {source} was saved from a model that was never trained"
        if source
        else "this model's weights were never trained or loaded (random initialisation)"
    )
    return (
        f"{what}, so its emotion labels are random. Load trained weights (weights=..., "
        "MDAN.from_pretrained(...), `mdan-zoo predict --weights ...`) or train them first "
        f"({docs_url('finetune.md')}); no checkpoint of the paper is published yet"
    )


def warn_if_untrained(model: Any) -> None:
    """Warn (:class:`UntrainedWeightsWarning`) the first time an untrained ``model`` predicts."""
    inner = getattr(model, "_orig_mod", model)
    message = untrained_message(inner)
    if message is None or getattr(inner, "_untrained_warned", False):
        return
    inner._untrained_warned = True
    warnings.warn(UntrainedWeightsWarning(message), stacklevel=_caller_level())


def loaded_hook(module: Any, incompatible: Any) -> None:
    """``load_state_dict`` post-hook: a load that filled every tensor counts as weights."""
    if not incompatible.missing_keys:
        module.weights_origin = "loaded"


def untrained_from_config(model: Any, config: Any) -> Any:
    """A model loaded from a checkpoint saved with ``"untrained": true`` stays untrained."""
    if isinstance(config, dict) and config.get(UNTRAINED_KEY):
        model.weights_origin = None
    return model


def mark_warned(model: Any) -> None:
    """Count the warning as given (the CLI prints it its own way)."""
    getattr(model, "_orig_mod", model)._untrained_warned = True


def _caller_level() -> int:
    """The stacklevel that points at the first frame outside mdan_zoo (the user's call)."""
    frame = sys._getframe(2)  # the caller of warn_if_untrained: stacklevel 2
    level = 2
    while frame is not None and _inside_package(frame.f_code.co_filename):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _inside_package(filename: str) -> bool:
    folder = os.path.dirname(os.path.abspath(filename))
    return folder == _PACKAGE_DIR or folder.startswith(_PACKAGE_DIR + os.sep)
