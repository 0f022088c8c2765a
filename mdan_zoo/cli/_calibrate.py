"""``mdan-zoo calibrate``: temperature scaling of a finished run, fitted on its validation split."""

from __future__ import annotations

import argparse

from ..errors import MDANZooError
from ._common import fail

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`calibrate`."""
    p = sub.add_parser(
        "calibrate",
        help="fit temperature scaling of a run on its validation split and store it",
        description="Fit one temperature per branch (the local logits of every level, the "
        "global logits) of a finished run's selected checkpoint by minimising the NLL of P_O "
        "on the validation split (never the test split), store them in the checkpoint's "
        "config (predict, eval, export and ONNX use them; --no-calibration there gives the "
        "raw model), print before / after on validation and test, and write "
        "RUN_DIR/calibration.json and the calibrated RUN_DIR/test report. A folder of "
        "seed-*/fold-* runs calibrates each.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a training run's output_dir")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's)")
    p.add_argument(
        "--no-test-report",
        dest="test_report",
        action="store_false",
        help="leave RUN_DIR/test as it is (it then describes the raw model)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from ..training import calibrate_run

    try:
        results = calibrate_run(
            args.run_dir,
            device=args.device,
            progress=not args.no_progress,
            test_report=args.test_report,
        )
    except (MDANZooError, FileNotFoundError) as err:
        return fail(err)
    for result in results:
        print(result.table())
    return 0
