"""Freezing parts of MDAN for small datasets: ``TrainConfig.freeze = ["trunk"]`` and finer.

A frozen part keeps its start weights exactly: its parameters get ``requires_grad=False`` and
no optimizer group (so neither weight decay nor momentum touches them), and its BatchNorm
layers keep their running statistics (they run in eval mode while the rest trains). Only the
remaining parts learn, at their own rate (``lr_new`` for the new layers; ``lr_backbone`` for
trunk stages left unfrozen).

Parts are named after the paper's figure 3, coarse to fine (:data:`FREEZE_PARTS`); a dotted
parameter prefix of the model (``backbone.layer3``, ``laterals.1``) names any other piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: TrainConfig checks names without it
    from torch import nn

__all__ = ["FREEZE_PARTS", "apply_freeze", "freeze_prefixes", "frozen_eval"]

FREEZE_PARTS: dict[str, tuple[str, ...]] = {
    "trunk": ("backbone.",),
    "trunk.stem": ("backbone.conv1.", "backbone.bn1."),
    "trunk.layer1": ("backbone.layer1.",),
    "trunk.layer2": ("backbone.layer2.",),
    "trunk.layer3": ("backbone.layer3.",),
    "trunk.layer4": ("backbone.layer4.",),
    "top_down": ("f5.", "laterals."),
    "top_down.f5": ("f5.",),
    "top_down.level1": ("laterals.0.",),
    "top_down.level2": ("laterals.1.",),
    "top_down.level3": ("laterals.2.",),
}
"""Part name -> parameter-name prefixes. ``trunk`` is the ResNet (C2..C5; its stages
``trunk.stem`` = conv1 + bn1, ``trunk.layer1`` .. ``trunk.layer4``); ``top_down`` is F5 and the
MHCCA laterals of the top-down branch (``top_down.level<N>``: the lateral of affective level N).
The classifiers (local heads, global head) always learn."""

_HEADS = ("local_heads.", "global_head.")


def freeze_prefixes(model: nn.Module, names: Sequence[str]) -> tuple[str, ...]:
    """The parameter-name prefixes ``names`` stand for; :class:`ConfigError` for a name that is
    neither a part nor a prefix of a parameter, or that would freeze a classifier."""
    params = [n for n, _ in model.named_parameters()]
    out: list[str] = []
    for name in names:
        if name in FREEZE_PARTS:
            out += FREEZE_PARTS[name]
            continue
        prefix = name.rstrip(".") + "."
        if not any(p.startswith(prefix) for p in params):
            raise ConfigError(
                f"freeze: {name!r} is neither a part ({', '.join(FREEZE_PARTS)}) nor a "
                "module of the model (a prefix of a parameter name, e.g. backbone.layer3)"
            )
        out.append(prefix)
    if any(p.startswith(_HEADS) and p.startswith(tuple(out)) for p in params):
        raise ConfigError(
            f"freeze {list(names)} would freeze a classifier (local_heads / global_head): "
            "those must learn the new labels; freeze the trunk or the top-down branch"
        )
    return tuple(out)


def apply_freeze(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on the parameters of the parts ``names``; returns their
    names (empty when nothing is frozen)."""
    if not names:
        return []
    prefixes = freeze_prefixes(model, names)
    frozen = []
    for name, p in model.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def frozen_eval(model: nn.Module, names: Sequence[str]) -> None:
    """Put the BatchNorm layers of the frozen parts in eval mode (call after ``.train()``):
    their running statistics stay the start weights' too."""
    if not names:
        return
    from torch import nn

    prefixes = freeze_prefixes(model, names)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (name + ".").startswith(
            prefixes
        ):
            module.eval()
