"""mdan_zoo: the model zoo for MDAN (Xu et al., CVPR 2022), hierarchical visual emotion analysis.

The public API below is imported lazily (PEP 562): ``import mdan_zoo`` costs nothing until a
name is used, so the command line answers ``--help`` or ``list`` without importing torch. It
registers the zoo's factories with timm's registry when timm is imported (now or later), without
importing timm itself (:mod:`mdan_zoo._timm`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._timm import register_when_imported
from ._version import __version__

register_when_imported()  # timm.create_model("mdan_fi") works once timm is imported, now or later

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # the error family
    "MDANZooError": "errors",
    # taxonomies, config, network
    "BACKBONES": "config",
    "ConfigError": "errors",
    "MDANConfig": "config",
    "Preprocessing": "config",
    "MDAN": "model",
    "LevelOutput": "model",
    "MDANOutput": "model",
    "mdan_loss": "model",
    "Taxonomy": "taxonomy",
    "TaxonomyError": "errors",
    "get_taxonomy": "taxonomy",
    "list_taxonomies": "taxonomy",
    # checkpoints, the Hub, the zoo
    "ChecksumError": "errors",
    "WeightsError": "errors",
    "TransferReport": "hub",
    "UntrainedWeightsWarning": "errors",
    "load_pretrained": "zoo",
    "push_to_hub": "zoo",
    "save_pretrained": "zoo",
    "UnpublishedWeightsError": "errors",
    "WeightsEntry": "registry",
    "get_weights": "registry",
    "list_weights": "registry",
    "create_model": "zoo",
    "list_models": "zoo",
    "list_pretrained": "zoo",
    "mdan": "zoo",
    "mdan_abstract": "zoo",
    "mdan_artphoto": "zoo",
    "mdan_emoset": "zoo",
    "mdan_emotion6": "zoo",
    "mdan_fi": "zoo",
    "mdan_findingemo": "zoo",
    "mdan_iaps": "zoo",
    "mdan_webemo": "zoo",
    # predictions and deployment
    "AttentionMaps": "prediction",
    "LabelProb": "prediction",
    "LevelAttention": "prediction",
    "LevelPrediction": "prediction",
    "Prediction": "prediction",
    "attention_maps": "prediction",
    "predict": "prediction",
    "ImageReadError": "errors",
    "MissingDependencyError": "errors",
    "read_image": "imageio",
    "OnnxRuntimeModel": "export",
    "ProbabilityModel": "export",
    "export_onnx": "export",
    "export_program": "export",
    "save_program": "export",
    # training and evaluation
    "EvalReport": "evaluation",
    "compute_report": "evaluation",
    "evaluate": "evaluation",
    "export_run": "training",
    "push_run": "training",
    "run_demo": "training",
    "TrainConfig": "training",
    "NonFiniteLossError": "errors",
    "TrainResult": "training",
    "Trainer": "training",
    "train": "training",
}

__all__ = [  # the same names as _EXPORTS (a test checks)
    "MDANZooError",
    "BACKBONES",
    "MDAN",
    "ConfigError",
    "LevelOutput",
    "MDANConfig",
    "MDANOutput",
    "Preprocessing",
    "Taxonomy",
    "TaxonomyError",
    "__version__",
    "get_taxonomy",
    "list_taxonomies",
    "mdan_loss",
    # checkpoints, the Hub, the zoo
    "ChecksumError",
    "TransferReport",
    "UntrainedWeightsWarning",
    "UnpublishedWeightsError",
    "WeightsEntry",
    "WeightsError",
    "create_model",
    "get_weights",
    "list_models",
    "list_pretrained",
    "list_weights",
    "load_pretrained",
    "mdan",
    "mdan_abstract",
    "mdan_artphoto",
    "mdan_emoset",
    "mdan_emotion6",
    "mdan_fi",
    "mdan_findingemo",
    "mdan_iaps",
    "mdan_webemo",
    "push_to_hub",
    "save_pretrained",
    # predictions and deployment
    "AttentionMaps",
    "ImageReadError",
    "LabelProb",
    "LevelAttention",
    "LevelPrediction",
    "MissingDependencyError",
    "OnnxRuntimeModel",
    "Prediction",
    "ProbabilityModel",
    "attention_maps",
    "export_onnx",
    "export_program",
    "predict",
    "read_image",
    "save_program",
    # training and evaluation
    "EvalReport",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "compute_report",
    "evaluate",
    "export_run",
    "push_run",
    "run_demo",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mdan_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The public names only (``Any``, ``importlib`` and the other module machinery stay out
    of ``dir(mdan_zoo)`` and tab completion)."""
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .config import BACKBONES, MDANConfig, Preprocessing
    from .errors import (
        ChecksumError,
        ConfigError,
        ImageReadError,
        MDANZooError,
        MissingDependencyError,
        NonFiniteLossError,
        TaxonomyError,
        UnpublishedWeightsError,
        UntrainedWeightsWarning,
        WeightsError,
    )
    from .evaluation import EvalReport, compute_report, evaluate
    from .export import (
        OnnxRuntimeModel,
        ProbabilityModel,
        export_onnx,
        export_program,
        save_program,
    )
    from .hub import TransferReport
    from .imageio import read_image
    from .model import MDAN, LevelOutput, MDANOutput, mdan_loss
    from .prediction import (
        AttentionMaps,
        LabelProb,
        LevelAttention,
        LevelPrediction,
        Prediction,
        attention_maps,
        predict,
    )
    from .registry import WeightsEntry, get_weights, list_weights
    from .taxonomy import Taxonomy, get_taxonomy, list_taxonomies
    from .training import (
        TrainConfig,
        Trainer,
        TrainResult,
        export_run,
        push_run,
        run_demo,
        train,
    )
    from .zoo import (
        create_model,
        list_models,
        list_pretrained,
        load_pretrained,
        mdan,
        mdan_abstract,
        mdan_artphoto,
        mdan_emoset,
        mdan_emotion6,
        mdan_fi,
        mdan_findingemo,
        mdan_iaps,
        mdan_webemo,
        push_to_hub,
        save_pretrained,
    )
