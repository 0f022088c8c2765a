"""mdan_zoo: the model zoo for MDAN (Xu et al., CVPR 2022), hierarchical visual emotion analysis."""

from __future__ import annotations

__version__ = "0.1.0"

# --- core: taxonomies, config, network (issue 2)
from .config import BACKBONES, ConfigError, MDANConfig, Preprocessing
from .model import MDAN, LevelOutput, MDANOutput, mdan_loss
from .taxonomy import Taxonomy, TaxonomyError, get_taxonomy, list_taxonomies

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
]
