"""mdan_zoo: the model zoo for MDAN (Xu et al., CVPR 2022), hierarchical visual emotion analysis."""

from __future__ import annotations

__version__ = "0.1.0"

# --- core: taxonomies, config, network (issue 2)
from .config import BACKBONES, ConfigError, MDANConfig, Preprocessing

# --- zoo (issue 3)
from .hub import (
    ChecksumError,
    TransferReport,
    WeightsError,
    load_pretrained,
    push_to_hub,
    save_pretrained,
)
from .model import MDAN, LevelOutput, MDANOutput, mdan_loss
from .registry import UnpublishedWeightsError, WeightsEntry, get_weights, list_weights
from .taxonomy import Taxonomy, TaxonomyError, get_taxonomy, list_taxonomies
from .zoo import (
    create_model,
    list_models,
    list_pretrained,
    mdan,
    mdan_abstract,
    mdan_artphoto,
    mdan_emotion6,
    mdan_fi,
    mdan_iaps,
    mdan_webemo,
)

# isort: split
# --- predict (issue 5)
from .deploy import OnnxRuntimeModel, ProbabilityModel, export_onnx, export_program, save_program
from .imageio import ImageReadError, read_image
from .predict import (
    AttentionMaps,
    LabelProb,
    LevelAttention,
    LevelPrediction,
    Prediction,
    attention_maps,
    predict,
)

# --- train (issue 4)
# isort: split
from .demo import run_demo
from .evaluate import EvalReport, compute_report, evaluate
from .export import export_run, push_run
from .train import NonFiniteLossError, TrainConfig, Trainer, TrainResult, train

__all__ = [
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
    # zoo (issue 3)
    "ChecksumError",
    "TransferReport",
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
    "mdan_emotion6",
    "mdan_fi",
    "mdan_iaps",
    "mdan_webemo",
    "push_to_hub",
    "save_pretrained",
    # predict (issue 5)
    "AttentionMaps",
    "ImageReadError",
    "LabelProb",
    "LevelAttention",
    "LevelPrediction",
    "OnnxRuntimeModel",
    "Prediction",
    "ProbabilityModel",
    "attention_maps",
    "export_onnx",
    "export_program",
    "predict",
    "read_image",
    "save_program",
    # train (issue 4)
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
