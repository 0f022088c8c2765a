"""The ``mdan-zoo`` command line: argument parsing only; the work is done by the modules.

Each group of subcommands is added by its own function below, so that areas stay apart.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


# ---------------------------------------------------------------- zoo: list / info / download
def _add_zoo_commands(sub: argparse._SubParsersAction) -> None:
    """`list`, `info`, `download` (the zoo and its weights registry)."""


# ---------------------------------------------------------------- train / eval / export / push / demo
def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    """`train`, `eval`, `export`, `push`, `demo`."""


# ---------------------------------------------------------------- predict
def _add_predict_commands(sub: argparse._SubParsersAction) -> None:
    """`predict`."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mdan-zoo",
        description="MDAN (CVPR 2022) model zoo: hierarchical visual emotion analysis.",
    )
    parser.add_argument("--version", action="version", version=f"mdan-zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_zoo_commands(sub)
    _add_train_commands(sub)
    _add_predict_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)
