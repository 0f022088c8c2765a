"""timm's registry knows the zoo: after ``import mdan_zoo``, ``timm.create_model("mdan_fi")``.

``import mdan_zoo`` calls :func:`register_when_imported`: when timm is already imported the zoo's
factories are registered at once, otherwise a one-shot import hook registers them the moment
something imports timm. Nothing here imports timm (or torch) before that, so the command line
starts as fast as without it, and a machine without timm never looks for it.

timm calls an entrypoint as ``fn(pretrained=..., pretrained_cfg=..., pretrained_cfg_overlay=...,
cache_dir=..., **kwargs)``; each entrypoint here takes timm's keywords explicitly, the zoo's own
keywords (``taxonomy=``, ``backbone=``, ``weights=`` ...) as the factory of the same name does, and
``features_only`` / ``out_indices`` (timm's ``FeatureGetterNet`` over ``forward_intermediates``).
Anything else (``num_classes=``, ``drop_rate=``) is a ``TypeError``: an MDAN's classes come from its
taxonomy. ``hf-hub:org/name`` and ``local-dir:PATH`` models load through mdan_zoo's own verified
loader (sha256 of config.json's ``weights``), never through timm's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

if TYPE_CHECKING:
    from ._builder import FactoryArgs

__all__ = ["entrypoint_names", "register", "register_when_imported"]

_TIMM = "timm"


def entrypoint_names() -> list[str]:
    """The names registered with timm: the generic ``mdan`` and every zoo factory."""
    from .registry import list_weights

    return ["mdan", *list_weights("mdan_*")]


def _default_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained cfg of a factory: the model's own (``mdan_zoo.model.timm_cfg`` of its
    registry entry), the licence, and where its weights live once published. ``mdan`` (any
    taxonomy) has the default preprocessing and no classes."""
    from .config import Preprocessing
    from .model import timm_cfg
    from .registry import get_weights

    if name == "mdan":
        return timm_cfg(Preprocessing(), None)
    entry = get_weights(name)
    cfg = timm_cfg(entry.preprocessing, entry.get_taxonomy())
    cfg.update(license=entry.license, paper_name=_PAPER)
    if entry.status == "published" and entry.revision:
        cfg["hf_hub_id"] = f"{entry.hub_repo}@{entry.revision}"
    return cfg


_PAPER = "MDAN: Multi-level Dependent Attention Network for Visual Emotion Analysis"


def _weights_from_cfg(
    pretrained_cfg: Any, overlay: Mapping[str, Any] | None
) -> tuple[str | None, str | None]:
    """(where timm says the weights are, which pretrained tag was asked for) from timm's
    ``pretrained_cfg`` (a tag, a dict or a ``PretrainedCfg``) and ``pretrained_cfg_overlay``."""
    if pretrained_cfg is None or isinstance(pretrained_cfg, str):
        cfg: dict[str, Any] = {}
        tag = pretrained_cfg or None
    else:
        to_dict = getattr(pretrained_cfg, "to_dict", None)
        cfg = dict(to_dict() if callable(to_dict) else pretrained_cfg)
        tag = None
    cfg.update(overlay or {})
    if cfg.get("source") == "hf-hub" or cfg.get("hf_hub_id"):
        return f"hf-hub:{cfg['hf_hub_id']}", tag
    return (str(cfg["file"]) if cfg.get("file") else None), tag


def _entrypoint(name: str) -> Callable[..., Any]:
    factory_name = name

    def entry(
        *,
        pretrained_cfg: Any = None,
        pretrained_cfg_overlay: Mapping[str, Any] | None = None,
        pretrained_model_args: Mapping[str, Any] | None = None,
        features_only: bool = False,
        out_indices: int | Sequence[int] | None = None,
        **kwargs: Unpack[FactoryArgs],
    ) -> Any:
        from . import zoo

        del pretrained_model_args  # timm's copy of config.json's model_args: unused
        pretrained = kwargs.pop("pretrained", False)
        source, tag = _weights_from_cfg(pretrained_cfg, pretrained_cfg_overlay)
        if tag is not None:
            raise ValueError(
                f"{factory_name} has no pretrained tag {tag!r}: mdan_zoo weights are named by "
                f"factory (timm.create_model({factory_name!r}, pretrained=True)) or by Hub repo "
                "('hf-hub:org/name')"
            )
        if source is not None and kwargs.get("weights") is None and not pretrained:
            model = _architecture_of(
                source,
                cache_dir=kwargs.get("cache_dir"),
                taxonomy=kwargs.get("taxonomy"),
                config=kwargs.get("config"),
            )
        else:
            if source is not None and pretrained and kwargs.get("weights") is None:
                kwargs["weights"], pretrained = source, False
            model = getattr(zoo, factory_name)(pretrained=pretrained, **kwargs)
        if features_only:
            from timm.models._features import FeatureGetterNet

            indices: int | tuple[int, ...] = len(model.feature_info)
            if out_indices is not None:
                indices = out_indices if isinstance(out_indices, int) else tuple(out_indices)
            return FeatureGetterNet(model, out_indices=indices)
        if out_indices is not None:
            raise TypeError("out_indices applies with features_only=True")
        return model

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"timm's entrypoint for :func:`mdan_zoo.{name}` (see :mod:`mdan_zoo._timm`)."
    return entry


def _architecture_of(source: str, *, cache_dir: Any, taxonomy: Any, config: Any) -> Any:
    """``timm.create_model("hf-hub:org/name")`` without ``pretrained=True``: the saved
    architecture, taxonomy and preprocessing, randomly initialised (the checkpoint is fetched
    and verified as for loading, its weights are not read)."""
    from .errors import WeightsError
    from .hub import FetchOptions, resolve
    from .model import MDAN
    from .taxonomy import as_taxonomy

    saved_config, saved_tax, pre = resolve(source, FetchOptions(cache_dir=cache_dir)).describe()
    if config is not None and config != saved_config:
        raise WeightsError(
            f"{source} was saved with config {saved_config} but config={config} was given; drop "
            "config= to build the saved architecture"
        )
    tax = as_taxonomy(taxonomy) if taxonomy is not None else saved_tax
    return MDAN(tax, saved_config, preprocessing=pre)


def register() -> None:
    """Register ``mdan`` and every zoo factory with timm's registry (idempotent)."""
    from timm.models import _registry

    module: Any = sys.modules[__name__]
    cfgs = {}
    for name in entrypoint_names():
        current = _registry._model_entrypoints.get(name)
        if current is not None and getattr(current, "__module__", None) == __name__:
            continue
        fn = _entrypoint(name)
        setattr(module, name, fn)
        cfgs[name] = _default_cfg(name)
        module.default_cfgs = cfgs  # register_model reads the name's cfg there
        _registry.register_model(fn)


class _RegisterAfterExec:
    """The loader of timm's package, which registers the zoo once timm's ``__init__`` ran."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _register_or_warn()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _TimmImportHook:
    """A ``sys.meta_path`` finder that sees only ``import timm`` and then removes itself."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != _TIMM:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _RegisterAfterExec(spec.loader)
        return spec


def _register_or_warn() -> None:
    try:
        register()
    except Exception as err:  # an incompatible timm must not break `import timm`
        import warnings

        warnings.warn(
            f"mdan_zoo could not register its models with timm ({type(err).__name__}: {err}); "
            "timm.create_model('mdan_fi') will not find them. Use mdan_zoo.create_model instead, "
            "or upgrade mdan-zoo / timm",
            RuntimeWarning,
            stacklevel=2,
        )


def register_when_imported() -> None:
    """Register with timm now if it is imported, else the moment it is (never importing it)."""
    if _TIMM in sys.modules:
        _register_or_warn()
        return
    if not any(isinstance(f, _TimmImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TimmImportHook())
