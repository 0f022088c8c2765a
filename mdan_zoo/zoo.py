"""The zoo: one factory per paper configuration, ``mdan`` for any taxonomy, ``create_model``.

Every factory takes the same keyword-only arguments (an unknown one is a ``TypeError``) and
returns an :class:`~mdan_zoo.model.MDAN` that carries its taxonomy and preprocessing
(``model.eval_transform()``). Weights come from ``pretrained=True`` (the registry entry, when
published), or ``weights=`` (a ``.safetensors`` file, a checkpoint folder, or
``"hf-hub:org/name@revision"``). Giving ``taxonomy=`` different from the weights' fine-tunes:
see :class:`~mdan_zoo.hub.TransferReport`.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Unpack

from ._builder import FACTORY_SIGNATURE, FactoryArgs, build_mdan, entrypoints, register_model
from .model import MDAN
from .registry import list_weights

__all__ = [
    "create_model",
    "from_pretrained",
    "load_pretrained",
    "push_to_hub",
    "save_pretrained",
    "list_models",
    "list_pretrained",
    "mdan",
    "mdan_abstract",
    "mdan_artphoto",
    "mdan_emoset",
    "mdan_emotion6",
    "mdan_fi",
    "mdan_findingemo",
    "mdan_iaps",
    "mdan_webemo",
]


def mdan(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """MDAN for any taxonomy of 1-3 levels.

    Args:
        pretrained: load the registry's published weights (named factories only; an
            unpublished entry raises :class:`~mdan_zoo.registry.UnpublishedWeightsError`).
        weights: a ``.safetensors`` file, a folder written by ``save_pretrained`` or
            ``"hf-hub:org/name[@revision]"``; ``.bin``/``.pt``/``.pth`` are refused (pickle).
        revision, cache_dir, progress, token and the offline switch: how the weights are
            fetched, the fields of :class:`~mdan_zoo.hub.FetchOptions` of the same names (a
            pinned Hub commit already in the cache loads without a network call).
        taxonomy: the label tree (``Taxonomy``, built-in name or ``.json`` path). With weights
            of another tree, the backbone, FPN and attention transfer and changed classifier
            heads are re-initialised (``model.transfer_report`` says what moved).
        config: the architecture (default: the paper's full model); must agree with a
            checkpoint's own config.
        backbone: shorthand for ``config.backbone`` (e.g. ``"resnet18"`` for quick tests).
        backbone_weights: for a model built without weights: ImageNet ResNet weights, as a
            torchvision name (``"IMAGENET1K_V2"``) or a local ``.safetensors``/``.pth`` file.
    """
    return build_mdan(None, **kwargs)


mdan.__signature__ = FACTORY_SIGNATURE  # type: ignore[attr-defined]  # help() shows the keywords


@register_model
def mdan_webemo(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_webemo`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_webemo", **kwargs)


@register_model
def mdan_fi(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_fi`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_fi", **kwargs)


@register_model
def mdan_emotion6(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_emotion6`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_emotion6", **kwargs)


@register_model
def mdan_artphoto(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_artphoto`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_artphoto", **kwargs)


@register_model
def mdan_iaps(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_iaps`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_iaps", **kwargs)


@register_model
def mdan_abstract(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_abstract`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_abstract", **kwargs)


@register_model
def mdan_emoset(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_emoset`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_emoset", **kwargs)


@register_model
def mdan_findingemo(**kwargs: Unpack[FactoryArgs]) -> MDAN:
    """The zoo model ``mdan_findingemo`` (the registry entry of that name adds the rest below)."""
    return build_mdan("mdan_findingemo", **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Names of the zoo's factories matching the shell ``pattern`` (``"mdan_*"``), sorted.

    The generic :func:`mdan` is not listed: it needs ``taxonomy=``.
    """
    return sorted(n for n in entrypoints() if fnmatch.fnmatch(n, pattern))


def list_pretrained(pattern: str = "*", *, include_unpublished: bool = False) -> list[str]:
    """Registry names with a downloadable checkpoint (all entries with ``include_unpublished``)."""
    return list_weights(pattern, published_only=not include_unpublished)


def create_model(name: str, **kwargs: Unpack[FactoryArgs]) -> MDAN:
    """Build a model by name: a factory (``"mdan_fi"``), ``"mdan"`` (with ``taxonomy=``), or a
    Hub checkpoint ``"hf-hub:org/name@revision"``. Arguments as for :func:`mdan`."""
    if name.startswith("hf-hub:"):
        if kwargs.get("weights") is not None:
            raise ValueError(f"create_model({name!r}) already names the weights; drop weights=")
        factory = mdan
        kwargs = {**kwargs, "weights": name}
    elif name == "mdan":
        factory = mdan
    else:
        found = entrypoints().get(name)
        if found is None:
            close = difflib.get_close_matches(name, [*list_models(), "mdan"], n=1)
            raise KeyError(
                f"no model named {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; choose one of {list_models()}, 'mdan' (with taxonomy=) "
                "or 'hf-hub:org/name@revision'"
            )
        factory = found
    return factory(**kwargs)


create_model.__signature__ = FACTORY_SIGNATURE.replace(  # type: ignore[attr-defined]
    parameters=[
        inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str"),
        *FACTORY_SIGNATURE.parameters.values(),
    ]
)


# Checkpoints as plain functions (the mixin's methods, for code that prefers functions).


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
