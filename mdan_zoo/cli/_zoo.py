"""``mdan-zoo list`` / ``info`` / ``download``: the registry and its weights."""

from __future__ import annotations

import argparse
import sys

from ..errors import MDANZooError
from ._common import add_token

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    add_token(p)
    p.set_defaults(func=_zoo_download)


def _zoo_list(args: argparse.Namespace) -> int:
    from ..registry import format_table, list_weights

    if not list_weights(args.pattern):
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(format_table(args.pattern))
    return 0


def _zoo_info(args: argparse.Namespace) -> int:
    import json

    from ..registry import get_weights

    try:
        entry = get_weights(args.name)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    print(json.dumps(entry.to_dict(), indent=2) if args.json else entry.describe())
    return 0


def _zoo_download(args: argparse.Namespace) -> int:
    from ..hub import download
    from ..registry import get_weights

    try:
        source = args.name if ":" in args.name or "/" in args.name else get_weights(args.name)
        ckpt = download(
            source,
            revision=args.revision,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            force_download=args.force,
            token=args.token,
        )
    except (KeyError, MDANZooError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    print(ckpt.weights_path.parent)
    return 0
