"""The ``mdan-zoo`` command line: argument parsing; the work is done by the packages.

Each group of subcommands is a module of its own: ``_zoo`` (``list``, ``info``, ``download``),
``_train`` (``train``, ``eval``, ``report``, ``configs``, ``export``, ``push``, ``demo``),
``_calibrate`` (``calibrate``), ``_predict`` (``predict``), ``_serve`` (``serve``, the web
app). Modules import torch (and gradio) only inside the commands, so ``--help`` and ``list``
stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

from ..errors import MDANZooError, UsageError
from . import _calibrate, _predict, _serve, _train, _zoo
from ._common import hub_deadlines

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="mdan-zoo",
        description="MDAN (CVPR 2022) model zoo: hierarchical visual emotion analysis.",
    )
    parser.add_argument("--version", action="version", version=f"mdan-zoo {__version__}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="debug logging; -vv adds other libraries' info (e.g. Hub HTTP requests), -vvv theirs",
    )
    loud.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (_zoo, _train, _calibrate, _predict, _serve):
        group.add_commands(sub)
    return parser


@contextlib.contextmanager
def _logging(verbose: int, quiet: bool) -> Iterator[None]:
    """Show the ``mdan_zoo`` logger on stderr while a command runs, and nothing else's.

    Scoped to our logger rather than ``logging.basicConfig`` on the root: other libraries'
    INFO lines (httpx logs every Hub request) stay hidden unless ``-vv`` (DEBUG: ``-vvv``);
    their warnings still reach stderr through Python's last-resort handler. Undone on return,
    so calling ``main`` in-process (tests, notebooks) leaves the caller's logging as it was.
    """
    pkg, root = logging.getLogger("mdan_zoo"), logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = pkg.level, pkg.propagate, root.level
    pkg.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    target = root if verbose >= 2 else pkg
    target.addHandler(handler)
    if verbose >= 2:
        root.setLevel(logging.DEBUG if verbose >= 3 else logging.INFO)
    else:
        pkg.propagate = False  # one line per record even where the caller set up the root
    try:
        yield
    finally:
        target.removeHandler(handler)
        pkg.setLevel(saved[0])
        pkg.propagate = saved[1]
        root.setLevel(saved[2])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``mdan-zoo`` command; the exit status: 0 done, 1 failed, 2 a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    with _logging(args.verbose, args.quiet), hub_deadlines(args):
        try:
            return int(args.func(args) or 0)
        except MDANZooError as err:  # the one family: a message with the fix, no traceback
            print(f"mdan-zoo {args.command}: error: {err}", file=sys.stderr)
            return 2 if isinstance(err, UsageError) else 1
