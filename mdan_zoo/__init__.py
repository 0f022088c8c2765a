"""mdan_zoo: the model zoo for MDAN (Xu et al., CVPR 2022), hierarchical visual emotion analysis.

The public API below is imported lazily (PEP 562): ``import mdan_zoo`` costs nothing until a
name is used, so the command line answers ``--help`` or ``list`` without importing torch. It
registers the zoo's factories with timm's registry when timm is imported (now or later), without
importing timm itself (:mod:`mdan_zoo._timm`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
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


# The flat module paths of 0.2 that the subpackage layout moved (CHANGELOG, "Subpackages named
# after the concepts"): importing one still works, with a DeprecationWarning, and its names are
# the new module's, so ``from mdan_zoo.trainer import NonFiniteLossError`` keeps working. Every
# exception is also found under each old path, as it was where the old module imported it.
_MOVED: dict[str, str] = {
    "batching": "training._batching",
    "checkpoint": "hub._checkpoint",
    "demo": "training._demo",
    "deploy": "export",
    "distributed": "training._distributed",
    "hub_errors": "hub._network",
    "hub_refs": "hub._refs",
    "inputs": "prediction._inputs",
    "integrity": "hub._integrity",
    "model_card": "hub._model_card",
    "overlay": "prediction.overlay",
    "predict_cli": "cli._predict",
    "predict_loader": "prediction._loader",
    "predict_output": "prediction._output",
    "predict_results": "prediction._results",
    "predict_shard": "prediction._output",
    "pretrained": "hub._mixin",
    "protocol": "training._protocol",
    "run_checkpoints": "training._checkpoints",
    "run_folder": "hub.run_folder",
    "run_writer": "training._run_writer",
    "runs": "training._runs",
    "taxonomy_rules": "taxonomy._rules",
    "train_config": "training._config",
    "train_setup": "training._setup",
    "train_state": "training._state",
    "trainer": "training._trainer",
    "transfer": "hub._transfer",
    "transport": "hub._download",
}


class _MovedModule(importlib.abc.Loader, importlib.abc.MetaPathFinder):
    """Answers ``import mdan_zoo.<old path>`` with a module whose names are the new home's."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        old = fullname.removeprefix(f"{__name__}.")
        if old == fullname or old not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> None:
        return None  # the default: an empty module, filled by exec_module

    def exec_module(self, module: Any) -> None:
        import warnings

        old = module.__name__.removeprefix(f"{__name__}.")
        home = f"{__name__}.{_MOVED[old]}"
        warnings.warn(
            f"{module.__name__} moved to {home}; import the public names from mdan_zoo or its "
            "subpackages (this old path will be removed in 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        new = importlib.import_module(home)
        errors = importlib.import_module(f"{__name__}.errors")

        def moved_getattr(name: str) -> Any:
            for source in (new, errors):
                if not name.startswith("__") and hasattr(source, name):
                    return getattr(source, name)
            raise AttributeError(
                f"module {module.__name__!r} (now {home}) has no attribute {name!r}"
            )

        module.__getattr__ = moved_getattr


sys.meta_path.append(_MovedModule())


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
