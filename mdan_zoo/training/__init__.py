"""Training: the trainer of the paper's recipe, its config, the multi-run protocol, publishing.

:func:`train` / :class:`Trainer` run one training (single process or torchrun) into a crash-safe
run folder; :class:`TrainConfig` is its typed config; :func:`train_runs` and
:func:`report_runs` run and summarise the paper's seeds/folds protocol (Tables 1 and 3);
:func:`export_run` / :func:`push_run` publish a run's selected epoch; :func:`run_demo` is the
Fashion-MNIST demo. :func:`split_warnings` and :func:`judge_selected` are the checks a run
makes of its own verdict (a split too small to select or judge a model, a model no better than
the majority class); :data:`FREEZE_PARTS` names what ``TrainConfig.freeze`` can freeze. The
machinery is private: ``_setup`` (datasets and model from a config),
``_batching``, ``_distributed``, ``_state`` (RNG and optimizer state), ``_checkpoints`` and
``_run_writer`` (run checkpoints, read and written crash-safely), ``_input`` (DataLoader
settings from the machine, and whether the input starves the model), ``_calibrate``
(temperature scaling of a run: :func:`calibrate_run`).
"""

from ._calibrate import CALIBRATION_NAME, CalibrationResult, calibrate_model, calibrate_run
from ._checkpoints import RunCheckpoint, load_checkpoint, resume_checkpoint
from ._config import (
    AMP_MODES,
    BN_MODES,
    DECODE_MODES,
    RESUME_FREE,
    TrainConfig,
    changed_split,
    config_diff,
    config_text,
    list_configs,
)
from ._demo import DemoResult, DemoSize, run_demo
from ._freeze import FREEZE_PARTS, apply_freeze, freeze_prefixes
from ._input import STARVED_SHARE, TIMING_KEYS
from ._judge import (
    COLLAPSE_SHARE,
    MIN_PER_CLASS,
    SIGNIFICANCE,
    binomial_tail,
    class_counts,
    judge_selected,
    selection_facts,
    split_warnings,
)
from ._protocol import ProtocolRun, protocol_configs, run_status, train_runs
from ._publish import export_run, push_run, run_metrics, select_run
from ._runs import BRANCH_TAGS, RunsError, RunsReport, find_runs, is_protocol_dir, report_runs
from ._setup import build_datasets, build_model
from ._trainer import NonFiniteLossError, RunExistsError, Trainer, TrainResult, saved_state, train

__all__ = [
    "AMP_MODES",
    "BN_MODES",
    "BRANCH_TAGS",
    "DECODE_MODES",
    "COLLAPSE_SHARE",
    "FREEZE_PARTS",
    "MIN_PER_CLASS",
    "SIGNIFICANCE",
    "CALIBRATION_NAME",
    "CalibrationResult",
    "RESUME_FREE",
    "STARVED_SHARE",
    "TIMING_KEYS",
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
    "apply_freeze",
    "binomial_tail",
    "build_datasets",
    "build_model",
    "changed_split",
    "class_counts",
    "calibrate_model",
    "calibrate_run",
    "config_diff",
    "config_text",
    "export_run",
    "find_runs",
    "freeze_prefixes",
    "is_protocol_dir",
    "judge_selected",
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
    "selection_facts",
    "split_warnings",
    "train",
    "train_runs",
]
