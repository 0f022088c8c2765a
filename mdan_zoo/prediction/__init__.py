"""Predictions with label names, the hierarchy-consistent answer and L-CAM attention maps.

:class:`PredictMixin` gives :class:`~mdan_zoo.model.MDAN` ``predict`` and ``attention_maps``
without this package importing the network. The machinery is private: ``_pipeline`` (batches in,
results out), ``_inputs`` (paths, folders, arrays), ``_loader`` (decoding, optionally in worker
processes), ``_results`` (the result records), ``_output`` (streamed jsonl/csv output, resumable,
sharded across torchrun ranks; :func:`write_predictions` writes a finished list in the same
format), ``_stream`` (the work behind ``mdan-zoo predict``); :mod:`.overlay` draws attention
overlays.
"""

from ._options import PredictOptions
from ._output import part_path, shard_from_env, write_predictions
from ._pipeline import (
    AttentionMaps,
    LabelProb,
    LevelAttention,
    LevelPrediction,
    Prediction,
    PredictMixin,
    attention_maps,
    consistent_paths,
    crop_box,
    default_workers,
    iter_batches,
    iter_results,
    predict,
)
from ._results import UNCERTAIN

__all__ = [
    "UNCERTAIN",
    "UsageError",
    "check_output",
    "part_path",
    "print_results",
    "shard_from_env",
    "stream_results",
    "AttentionMaps",
    "LabelProb",
    "LevelAttention",
    "LevelPrediction",
    "PredictMixin",
    "PredictOptions",
    "Prediction",
    "attention_maps",
    "consistent_paths",
    "crop_box",
    "default_workers",
    "iter_batches",
    "iter_results",
    "predict",
    "write_predictions",
]
from ._stream import UsageError, check_output, print_results, stream_results
