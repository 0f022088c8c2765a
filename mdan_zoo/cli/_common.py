"""What every command group shares: the ``--token`` flag, error lines, rank 0 under torchrun."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_threads", "add_token", "fail", "rank0"]


def add_token(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token", help="Hub token for private repos (default: HF_TOKEN or `hf auth login`)"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads N`` (train, eval, predict, demo): torch intra-op threads."""
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="torch intra-op threads on the CPU (default: the cores this process may use "
        "minus the DataLoader workers, so the two never exceed the cores)",
    )


def fail(err: BaseException | str) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def rank0() -> bool:
    """Under torchrun only the first process prints summaries."""

    return int(os.environ.get("RANK", "0")) == 0
