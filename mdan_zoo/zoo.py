"""The zoo: one factory per paper configuration, ``mdan`` for any taxonomy, ``create_model``.

Every factory takes the same keyword-only arguments (an unknown one is a ``TypeError``) and
returns an :class:`~mdan_zoo.model.MDAN` that carries its taxonomy and preprocessing
(``model.eval_transform()``). Weights come from ``pretrained=True`` (the registry entry, when
published), or ``weights=`` (a ``.safetensors`` file, a checkpoint folder, or
``"hf-hub:org/name@revision"``). Giving ``taxonomy=`` different from the weights' fine-tunes:
see :class:`~mdan_zoo.hub.TransferReport`.
"""

from __future__ import annotations

import fnmatch
import os

from ._builder import build_mdan, entrypoints, register_model
from .config import MDANConfig
from .model import MDAN
from .registry import list_weights
from .taxonomy import Taxonomy

__all__ = [
    "create_model",
    "list_models",
    "list_pretrained",
    "mdan",
    "mdan_abstract",
    "mdan_artphoto",
    "mdan_emotion6",
    "mdan_fi",
    "mdan_iaps",
    "mdan_webemo",
]


def mdan(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for any taxonomy of 1-3 levels.

    Args:
        pretrained: load the registry's published weights (named factories only; an
            unpublished entry raises :class:`~mdan_zoo.registry.UnpublishedWeightsError`).
        weights: a ``.safetensors`` file, a folder written by ``save_pretrained`` or
            ``"hf-hub:org/name[@revision]"``; ``.bin``/``.pt``/``.pth`` are refused (pickle).
        revision: Hub branch, tag or (best) full commit; a pinned commit already in the cache
            loads without a network call.
        cache_dir: Hub cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME``).
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE=1``).
        progress: show download bars.
        taxonomy: the label tree (``Taxonomy``, built-in name or ``.json`` path). With weights
            of another tree, the backbone, FPN and attention transfer and changed classifier
            heads are re-initialised (``model.transfer_report`` says what moved).
        config: the architecture (default: the paper's full model); must agree with a
            checkpoint's own config.
        backbone: shorthand for ``config.backbone`` (e.g. ``"resnet18"`` for quick tests).
        backbone_weights: for a model built without weights: ImageNet ResNet weights, as a
            torchvision name (``"IMAGENET1K_V2"``) or a local ``.safetensors``/``.pth`` file.
    """
    return build_mdan(
        name=None,
        default_taxonomy=None,
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


@register_model
def mdan_webemo(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for WEBEmo (taxonomy ``webemo``: 2 -> 6 -> 25 (polarity, Parrott's secondary, tertiary)), ResNet-101, the paper's full model.

    Paper, Table 1 (accuracy of P_O, %): 82.72 / 55.65 / 34.28 (2 / 6 / 25 classes). Checkpoint: see ``mdan-zoo info mdan_webemo``
    (none is published yet: ``pretrained=True`` then raises and says how to train one).
    Arguments: see :func:`mdan`.
    """
    return build_mdan(
        name="mdan_webemo",
        default_taxonomy="webemo",
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


@register_model
def mdan_fi(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for FI (taxonomy ``fi``: 2 -> 8 (polarity, Mikels' eight)), ResNet-101, the paper's full model.

    Paper, Table 1 (accuracy of P_O, %): 91.08 / 76.41 (2 / 8 classes). Checkpoint: see ``mdan-zoo info mdan_fi``
    (none is published yet: ``pretrained=True`` then raises and says how to train one).
    Arguments: see :func:`mdan`.
    """
    return build_mdan(
        name="mdan_fi",
        default_taxonomy="fi",
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


@register_model
def mdan_emotion6(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for Emotion6 (taxonomy ``emotion6``: 2 -> 6 (polarity, Ekman's six)), ResNet-101, the paper's full model.

    Paper, Table 1 (accuracy of P_O, %): 84.62 / 61.66 (2 / 6 classes). Checkpoint: see ``mdan-zoo info mdan_emotion6``
    (none is published yet: ``pretrained=True`` then raises and says how to train one).
    Arguments: see :func:`mdan`.
    """
    return build_mdan(
        name="mdan_emotion6",
        default_taxonomy="emotion6",
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


@register_model
def mdan_artphoto(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for ArtPhoto (taxonomy ``artphoto``: 2 -> 8 (polarity, Mikels' eight)), ResNet-101, the paper's full model.

    Paper, Table 1 (accuracy of P_O, %): 91.50 / 78.12 (2 / 8 classes, 5-fold CV). Checkpoint: see ``mdan-zoo info mdan_artphoto``
    (none is published yet: ``pretrained=True`` then raises and says how to train one).
    Arguments: see :func:`mdan`.
    """
    return build_mdan(
        name="mdan_artphoto",
        default_taxonomy="artphoto",
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


@register_model
def mdan_iaps(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for IAPSsubset (taxonomy ``iaps``: 2 -> 8 (polarity, Mikels' eight)), ResNet-101, the paper's full model.

    Paper, Table 1 (accuracy of P_O, %): 96.73 / 85.96 (2 / 8 classes, 5-fold CV). Checkpoint: see ``mdan-zoo info mdan_iaps``
    (none is published yet: ``pretrained=True`` then raises and says how to train one).
    Arguments: see :func:`mdan`.
    """
    return build_mdan(
        name="mdan_iaps",
        default_taxonomy="iaps",
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


@register_model
def mdan_abstract(
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """MDAN for Abstract (taxonomy ``abstract``: 2 -> 8 (polarity, Mikels' eight)), ResNet-101, the paper's full model.

    Paper, Table 1 (accuracy of P_O, %): 83.80 / 72.34 (2 / 8 classes, 5-fold CV). Checkpoint: see ``mdan-zoo info mdan_abstract``
    (none is published yet: ``pretrained=True`` then raises and says how to train one).
    Arguments: see :func:`mdan`.
    """
    return build_mdan(
        name="mdan_abstract",
        default_taxonomy="abstract",
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )


def list_models(pattern: str = "*") -> list[str]:
    """Names of the zoo's factories matching the shell ``pattern`` (``"mdan_*"``), sorted.

    The generic :func:`mdan` is not listed: it needs ``taxonomy=``.
    """
    return sorted(n for n in entrypoints() if fnmatch.fnmatch(n, pattern))


def list_pretrained(pattern: str = "*", *, include_unpublished: bool = False) -> list[str]:
    """Registry names with a downloadable checkpoint (all entries with ``include_unpublished``)."""
    return list_weights(pattern, published_only=not include_unpublished)


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """Build a model by name: a factory (``"mdan_fi"``), ``"mdan"`` (with ``taxonomy=``), or a
    Hub checkpoint ``"hf-hub:org/name@revision"``. Arguments as for :func:`mdan`."""
    if name.startswith("hf-hub:"):
        if weights is not None:
            raise ValueError(f"create_model({name!r}) already names the weights; drop weights=")
        factory = mdan
        weights = name
    elif name == "mdan":
        factory = mdan
    else:
        found = entrypoints().get(name)
        if found is None:
            raise KeyError(
                f"no model named {name!r}; choose one of {list_models()}, 'mdan' (with taxonomy=) "
                "or 'hf-hub:org/name@revision'"
            )
        factory = found
    return factory(
        pretrained=pretrained,
        weights=weights,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        taxonomy=taxonomy,
        config=config,
        backbone=backbone,
        backbone_weights=backbone_weights,
    )
