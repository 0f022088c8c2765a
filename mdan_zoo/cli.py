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
    p = sub.add_parser("list", help="list the zoo's models and their checkpoint status")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'mdan_*'")
    p.set_defaults(func=_zoo_list)

    p = sub.add_parser("info", help="a model's registry entry, taxonomy tree and metrics")
    p.add_argument("name", help="registry name (see `mdan-zoo list`)")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(func=_zoo_info)

    p = sub.add_parser("download", help="fetch and verify a checkpoint into the Hub cache")
    p.add_argument("name", help="registry name or hf-hub:org/name[@revision]")
    p.add_argument("--revision", help="branch, tag or full commit (default: the registry's pin)")
    p.add_argument("--cache-dir", help="Hub cache folder (default: HF_HUB_CACHE / HF_HOME)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_zoo_download)


def _zoo_list(args: argparse.Namespace) -> int:
    from .registry import format_table, list_weights

    if not list_weights(args.pattern):
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(format_table(args.pattern))
    return 0


def _zoo_info(args: argparse.Namespace) -> int:
    import json

    from .registry import get_weights

    try:
        entry = get_weights(args.name)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    print(json.dumps(entry.to_dict(), indent=2) if args.json else entry.describe())
    return 0


def _zoo_download(args: argparse.Namespace) -> int:
    from .hub import WeightsError, download
    from .registry import UnpublishedWeightsError, get_weights

    try:
        source = args.name if ":" in args.name or "/" in args.name else get_weights(args.name)
        ckpt = download(
            source,
            revision=args.revision,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            force_download=args.force,
        )
    except (KeyError, WeightsError, UnpublishedWeightsError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    print(ckpt.weights_path.parent)
    return 0


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
