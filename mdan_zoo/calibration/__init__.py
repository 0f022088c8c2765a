"""Confidence you can trust: calibration metrics, reliability diagrams, temperature scaling.

``_metrics`` holds the numbers (ECE, adaptive ECE, Brier, NLL, ROC-AUC, risk-coverage), in
plain numpy so that each can be checked by hand; ``_reliability`` draws the reliability
diagram; ``_temperature`` fits one temperature per branch of MDAN on validation logits
(Guo et al., 2017). :mod:`mdan_zoo.evaluation` puts the numbers in every report; the trainer
and ``mdan-zoo calibrate`` fit the temperatures, which the network applies itself
(``MDANConfig.local_temperatures`` / ``global_temperature``).
"""

from ._metrics import (
    COVERAGES,
    N_BINS,
    NLL_EPS,
    accuracy_at_coverage,
    adaptive_calibration_error,
    binary_brier,
    binary_nll,
    binary_roc_auc,
    brier_score,
    calibration_metrics,
    claim_metrics,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage,
    roc_auc_ovr,
    selective_metrics,
    top_label,
)
from ._reliability import save_reliability_png
from ._report import (
    calibration_block,
    calibration_flat,
    calibration_table,
    consistent_path_numpy,
    jsonable_block,
    write_reliability_pngs,
)
from ._temperature import (
    RawLogits,
    branch_probs,
    collect_logits,
    fit_temperatures,
    scaled_probs,
)

__all__ = [
    "COVERAGES",
    "N_BINS",
    "NLL_EPS",
    "RawLogits",
    "accuracy_at_coverage",
    "adaptive_calibration_error",
    "binary_brier",
    "binary_nll",
    "binary_roc_auc",
    "branch_probs",
    "brier_score",
    "calibration_block",
    "calibration_flat",
    "calibration_metrics",
    "calibration_table",
    "claim_metrics",
    "collect_logits",
    "consistent_path_numpy",
    "expected_calibration_error",
    "fit_temperatures",
    "jsonable_block",
    "negative_log_likelihood",
    "reliability_bins",
    "risk_coverage",
    "roc_auc_ovr",
    "save_reliability_png",
    "scaled_probs",
    "selective_metrics",
    "top_label",
    "write_reliability_pngs",
]
