"""The one builder behind every zoo factory (the factories in :mod:`mdan_zoo.zoo` are one call).

It decides where weights come from (none, the registry, a file, a folder, the Hub), which
architecture and taxonomy the model gets, and whether loading is a plain load or a
fine-tuning transfer. Explicit beats implicit: a checkpoint's own config defines the
architecture, and an argument that contradicts it is an error, never silently dropped.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

from .config import MDANConfig, Preprocessing
from .hub import FetchOptions, WeightsError, read_state_dict, read_torch_state_dict, resolve
from .model import MDAN
from .registry import WeightsEntry, get_weights
from .taxonomy import Taxonomy, as_taxonomy
from .untrained import untrained_from_config

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., MDAN])

_ENTRYPOINTS: dict[str, Callable[..., MDAN]] = {}


def register_model(fn: F) -> F:
    """Register a factory under its function name (for create_model, list_models, hubconf),
    complete its docstring from its registry entry, the one place that knows the model, and
    give it the builder's keywords as its signature (so ``help(mdan_fi)`` lists them)."""
    entry = get_weights(fn.__name__)
    fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\n" + _entry_doc(entry)
    fn.__signature__ = FACTORY_SIGNATURE  # type: ignore[attr-defined]
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def _entry_doc(entry: WeightsEntry) -> str:
    tax = entry.get_taxonomy()
    counts = " -> ".join(str(n) for n in tax.num_classes)
    acc = (
        "Paper, Table 1 (accuracy of P_O, %): "
        + " / ".join(f"{entry.paper_metrics[str(c)]:.2f}" for c in tax.num_classes)
        if entry.paper_metrics
        else "The paper did not use this dataset; published baselines: "
        + "; ".join(entry.baselines)
    )
    return (
        f"    MDAN for {entry.dataset} (taxonomy ``{entry.taxonomy}``: {counts}), "
        f"{entry.config.backbone}.\n\n"
        f"    {acc}. Checkpoint: see "
        f"``mdan-zoo info {entry.name}`` ({entry.status}).\n"
        "    Arguments: see :func:`mdan_zoo.mdan`.\n"
    )


def entrypoints() -> dict[str, Callable[..., MDAN]]:
    return dict(_ENTRYPOINTS)


def _resolve_config(config: MDANConfig | None, backbone: str | None) -> MDANConfig | None:
    """The config the caller asked for explicitly, or None when they asked for nothing."""
    if config is not None and not isinstance(config, MDANConfig):
        raise TypeError(f"config must be an MDANConfig, got {type(config).__name__}")
    if backbone is None:
        return config
    if config is not None and config.backbone != backbone:
        raise ValueError(
            f"config.backbone={config.backbone!r} contradicts backbone={backbone!r}; give one"
        )
    return (config or MDANConfig()).replace(backbone=backbone)


def load_backbone_weights(
    model: MDAN, backbone_weights: str | os.PathLike[str], *, progress: bool
) -> None:
    """ImageNet (or other) ResNet weights for a model trained from scratch on the paper recipe.

    ``backbone_weights``: a torchvision weights name (``"IMAGENET1K_V2"``, fetched by
    torchvision into ``TORCH_HOME``), a local ``.safetensors`` file, or a local torchvision
    ``.pth`` file (read with ``torch.load(weights_only=True)``, which refuses code).
    """
    path = Path(backbone_weights)
    if path.suffix in (".pth", ".pt") and path.is_file():
        state = read_torch_state_dict(path, what="backbone weights")
    elif path.suffix == ".safetensors":
        state = read_state_dict(path)
    elif isinstance(backbone_weights, str) and "/" not in backbone_weights and not path.suffix:
        import torchvision

        enum = torchvision.models.get_model_weights(model.config.backbone)
        try:
            weights = enum[backbone_weights]
        except KeyError:
            raise ValueError(
                f"{backbone_weights!r} is not a torchvision weights name for "
                f"{model.config.backbone}; choose one of {[w.name for w in enum]} or pass a file"
            ) from None
        state = weights.get_state_dict(progress=progress)
    else:
        raise FileNotFoundError(
            f"backbone weights {str(backbone_weights)!r} not found: pass a torchvision weights "
            "name (IMAGENET1K_V1/V2), or a local .safetensors or torchvision .pth file"
        )
    model.load_backbone_state_dict(state)


class FactoryArgs(TypedDict, total=False):
    """The keywords of every zoo factory, :func:`~mdan_zoo.mdan` and ``create_model``, described
    once (each is explained in :func:`mdan_zoo.mdan`'s docstring); the factories take them as
    ``**kwargs: Unpack[FactoryArgs]`` and hand them to :func:`build_mdan`, whose keyword-only
    signature gives the defaults; an unknown keyword is a ``TypeError`` naming it."""

    pretrained: bool
    weights: str | os.PathLike[str] | None
    revision: str | None
    cache_dir: str | os.PathLike[str] | None
    local_files_only: bool
    progress: bool
    token: str | bool | None
    taxonomy: Taxonomy | str | None
    config: MDANConfig | None
    backbone: str | None
    backbone_weights: str | os.PathLike[str] | None


def build_mdan(name: str | None, **kwargs: Unpack[FactoryArgs]) -> MDAN:
    """Build the model of factory ``name`` (``None`` for the generic :func:`mdan`) from the
    factory's keywords; a keyword no factory takes is a ``TypeError`` naming the factory, the
    keyword and the closest real one."""
    for key in kwargs:
        if key not in FactoryArgs.__annotations__:
            close = difflib.get_close_matches(key, list(FactoryArgs.__annotations__), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{name or 'mdan'}() got an unexpected keyword argument {key!r}{hint}")
    return _build(name, **kwargs)


def _build(
    name: str | None,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    token: str | bool | None = None,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    backbone: str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> MDAN:
    """Build the model of factory ``name`` (``None`` for the generic :func:`mdan`).

    A named factory takes its default taxonomy, architecture and preprocessing from its
    registry entry; the keywords are :class:`FactoryArgs`.
    """
    fetch = FetchOptions(
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        token=token,
    )
    entry = get_weights(name) if name is not None else None
    default_taxonomy = entry.taxonomy if entry is not None else None
    default_config = entry.config if entry is not None else MDANConfig()
    default_pre = entry.preprocessing if entry is not None else Preprocessing()
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    explicit_config = _resolve_config(config, backbone)
    explicit_tax = as_taxonomy(taxonomy) if taxonomy is not None else None
    factory = f"{name}()" if name else "mdan()"

    source: str | os.PathLike[str] | None = weights
    expected_sha: str | None = None
    if weights is None and pretrained:
        if name is None:
            raise ValueError(
                "mdan() has no registry weights: pass weights= (a .safetensors file, a checkpoint "
                "folder or 'hf-hub:org/name@revision'), or use a named factory such as mdan_fi"
            )
        assert entry is not None
        source, revision, expected_sha = entry.download_source(revision)

    if source is None:
        plain = FetchOptions(progress=progress, token=token)
        given = [f.name for f in fields(fetch) if getattr(fetch, f.name) != getattr(plain, f.name)]
        if given:
            raise ValueError(
                f"the Hub options {'/'.join(given)} only apply when loading weights; "
                f"{factory} was called without pretrained=True or weights="
            )
        tax = explicit_tax or (as_taxonomy(default_taxonomy) if default_taxonomy else None)
        if tax is None:
            raise TypeError("mdan() needs taxonomy= (a Taxonomy, a built-in name or a .json file)")
        model = MDAN(tax, explicit_config or default_config, preprocessing=default_pre)
        if backbone_weights is not None:
            load_backbone_weights(model, backbone_weights, progress=progress)
        return model

    if backbone_weights is not None:
        raise ValueError(
            "backbone_weights only applies to a model built without weights: the checkpoint "
            "already holds the backbone"
        )
    ckpt = resolve(
        source,
        fetch.replace(revision=revision, expected_sha256=expected_sha),
        hash_on_read=True,  # hashed as the tensors are read
    )
    default_tax = as_taxonomy(default_taxonomy) if default_taxonomy else None
    if ckpt.config is None:  # a bare safetensors file: the factory knows the architecture
        tax = explicit_tax or default_tax
        if tax is None:
            raise TypeError(
                f"{ckpt.source} carries no config, so mdan() needs taxonomy= (and config= when "
                "the architecture is not the default) to know what it holds"
            )
        model = MDAN.from_state(
            ckpt.pending_state(),
            config=explicit_config or default_config,
            taxonomy=tax,
            source_taxonomy=tax,
            preprocessing=default_pre,
            source=ckpt.source,
            revision=ckpt.revision,
        )
    else:
        saved_config, saved_tax, pre = ckpt.describe()  # before any tensor is read
        if explicit_config is not None and explicit_config != saved_config:
            raise WeightsError(
                f"{ckpt.source} holds an MDAN saved with {saved_config}, but {factory} was given "
                f"{explicit_config}: drop config=/backbone= to use the checkpoint's architecture"
            )
        if (
            explicit_tax is None
            and default_tax is not None
            and not default_tax.same_tree(saved_tax)
        ):
            raise WeightsError(
                f"taxonomy mismatch: {ckpt.source} was trained on taxonomy {saved_tax.name!r} "
                f"{saved_tax.num_classes}, but {factory} is for {default_tax.name!r} "
                f"{default_tax.num_classes}. To fine-tune these weights to {default_tax.name!r}, "
                f"pass taxonomy={default_tax.name!r} (the classifier heads are re-initialised "
                f"where classes differ); to use them as they are, call "
                f"MDAN.from_pretrained({str(source)!r})"
            )
        tax = explicit_tax or saved_tax
        model = MDAN.from_state(
            ckpt.pending_state(),
            config=saved_config,
            taxonomy=tax,
            source_taxonomy=saved_tax,
            preprocessing=pre,
            source=ckpt.source,
            revision=ckpt.revision,
        )
        untrained_from_config(model, ckpt.config)
    return model


def _factory_signature() -> inspect.Signature:
    sig = inspect.signature(_build)
    keywords = [p for p in sig.parameters.values() if p.name != "name"]
    assert [p.name for p in keywords] == list(FactoryArgs.__annotations__), "FactoryArgs drifted"
    return sig.replace(parameters=keywords)


FACTORY_SIGNATURE = _factory_signature()
"""The signature every factory shows: the builder's keywords (with their defaults)."""
