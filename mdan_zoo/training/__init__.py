"""Training: the trainer of the paper's recipe, its config, the multi-run protocol, publishing.

:func:`train` / :class:`Trainer` run one training (single process or torchrun) into a crash-safe
run folder; :class:`TrainConfig` is its typed config; :func:`train_runs` and
:func:`report_runs` run and summarise the paper's seeds/folds protocol (Tables 1 and 3);
:func:`export_run` / :func:`push_run` publish a run's selected epoch; :func:`run_demo` is the
Fashion-MNIST demo. The machinery is private: ``_setup`` (datasets and model from a config),
``_batching``, ``_distributed``, ``_state`` (RNG and optimizer state), ``_checkpoints`` and
``_run_writer`` (run checkpoints, read and written crash-safely), ``_calibrate`` (temperature
scaling of a run: :func:`calibrate_run`).
"""

from ._calibrate import CALIBRATION_NAME, CalibrationResult, calibrate_model, calibrate_run
from ._checkpoints import RunCheckpoint, load_checkpoint, resume_checkpoint
from ._config import (
    AMP_MODES,
    BN_MODES,
    RESUME_FREE,
    TrainConfig,
    config_diff,
    config_text,
    list_configs,
)
from ._demo import DemoResult, DemoSize, run_demo
from ._protocol import ProtocolRun, protocol_configs, run_status, train_runs
from ._publish import export_run, push_run, run_metrics, select_run
from ._runs import BRANCH_TAGS, RunsError, RunsReport, find_runs, is_protocol_dir, report_runs
from ._setup import build_datasets
from ._trainer import NonFiniteLossError, RunExistsError, Trainer, TrainResult, saved_state, train

__all__ = [
    "AMP_MODES",
    "BN_MODES",
    "BRANCH_TAGS",
    "CALIBRATION_NAME",
    "CalibrationResult",
    "RESUME_FREE",
    "RunCheckpoint",
    "DemoResult",
    "DemoSize",
    "NonFiniteLossError",
    "ProtocolRun",
    "RunExistsError",
    "RunsError",
    "RunsReport",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_datasets",
    "calibrate_model",
    "calibrate_run",
    "config_diff",
    "config_text",
    "export_run",
    "find_runs",
    "is_protocol_dir",
    "list_configs",
    "load_checkpoint",
    "protocol_configs",
    "push_run",
    "report_runs",
    "resume_checkpoint",
    "run_demo",
    "run_metrics",
    "run_status",
    "saved_state",
    "select_run",
    "train",
    "train_runs",
]
