"""What every command group shares: the Hub flags (``--token``, the deadlines), error lines,
rank 0 under torchrun."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator

from ..errors import UsageError

# mdan_zoo.hub's CONNECT_TIMEOUT_ENV / TIMEOUT_ENV, spelled out: importing the hub here would
# import torch before every command (tests/test_hub_server_hostile.py checks they agree)
CONNECT_TIMEOUT_ENV = "MDAN_ZOO_HUB_CONNECT_TIMEOUT"
TIMEOUT_ENV = "MDAN_ZOO_HUB_TIMEOUT"

__all__ = ["add_threads", "add_token", "fail", "hub_deadlines", "rank0"]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def add_token(p: argparse.ArgumentParser) -> None:
    """``--token`` and the Hub deadlines: every command that may reach the Hub takes them."""
    p.add_argument(
        "--token", help="Hub token for private repos (default: HF_TOKEN or `hf auth login`)"
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        metavar="S",
        help=f"seconds to connect to the Hub (default 5, or {CONNECT_TIMEOUT_ENV})",
    )
    p.add_argument(
        "--hub-timeout",
        type=_seconds,
        metavar="S",
        help=f"seconds one Hub request may take in all (default 600, or {TIMEOUT_ENV})",
    )


@contextlib.contextmanager
def hub_deadlines(args: argparse.Namespace) -> Iterator[None]:
    """``--connect-timeout`` / ``--hub-timeout`` set their environment variables for this one
    command (the Hub code reads them at each request, as it reads ``HF_ENDPOINT``)."""
    given = {
        CONNECT_TIMEOUT_ENV: getattr(args, "connect_timeout", None),
        TIMEOUT_ENV: getattr(args, "hub_timeout", None),
    }
    saved = {name: os.environ.get(name) for name in given}
    for name, value in given.items():
        if value is not None:
            os.environ[name] = f"{value:g}"
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


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
    """Print the one-paragraph message; the exit status: 2 for a usage error, else 1."""
    print(f"error: {err}", file=sys.stderr)
    return 2 if isinstance(err, UsageError) else 1


def rank0() -> bool:
    """Under torchrun only the first process prints summaries."""

    return int(os.environ.get("RANK", "0")) == 0
