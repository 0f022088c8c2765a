"""What every command group shares: the ``--token`` flag, error lines, rank 0 under torchrun."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_token", "fail", "rank0"]


def add_token(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token", help="Hub token for private repos (default: HF_TOKEN or `hf auth login`)"
    )


def fail(err: BaseException | str) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def rank0() -> bool:
    """Under torchrun only the first process prints summaries."""

    return int(os.environ.get("RANK", "0")) == 0
