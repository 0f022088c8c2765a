"""``mdan-zoo serve``: the web page on any weights the zoo loads (argument parsing only).

gradio and torch are imported when the command runs, never when the parser is built, so
``mdan-zoo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ._common import add_token

__all__ = ["add_commands"]


def _number(kind: Callable[[str], float], low: float, high: float, what: str) -> Callable:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`serve`."""
    p = sub.add_parser(
        "serve",
        help="a local web page: drop photos, see every level's labels and attention maps",
        description="Start a local web app (gradio; `pip install 'mdan_zoo[serve]'`) on a "
        "model: upload photos or a webcam snapshot and see each level's labels with P_O bars "
        "(P_L and P_G on a switch), the hierarchy-consistent path with its joint probability, "
        "the L-CAM attention of each level, and a batch table with CSV / JSON lines downloads "
        "in the `mdan-zoo predict --output` format. It binds to loopback unless --host says "
        "otherwise, and prints the URL to open.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--weights",
        metavar="PATH",
        help="a training run's output_dir, a folder saved by save_pretrained or `mdan-zoo "
        "export` (e.g. mdan-demo/model), a .safetensors file, hf-hub:org/name[@revision], "
        "or a zoo name with --pretrained",
    )
    which.add_argument(
        "--model",
        metavar="NAME",
        help="a zoo model (`mdan-zoo list`) with random weights (the page says so, loudly), "
        "or its published ones with --pretrained",
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="--weights NAME / --model NAME: the zoo model's published checkpoint",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every "
        "interface, reachable from the network)",
    )
    p.add_argument(
        "--port",
        type=_number(int, 1, 65535, "a port number 1..65535"),
        default=7860,
        help="port (default 7860); taken, the next free one is used and said on stderr",
    )
    p.add_argument(
        "--device", default=None, metavar="DEV", help="cpu, cuda, cuda:1, mps (default: cpu)"
    )
    p.add_argument(
        "--max-upload-mb",
        type=_number(float, 1e-3, 1e6, "a positive number of megabytes"),
        default=20.0,
        metavar="MB",
        help="largest file accepted, in MB (default 20); larger uploads are refused before "
        "anything decodes them",
    )
    p.add_argument(
        "--queue",
        type=_number(int, 1, 10**6, "a positive integer"),
        default=16,
        metavar="N",
        help="the most requests waiting while one runs (default 16); more are told the app "
        "is busy, retry",
    )
    p.add_argument(
        "--share",
        action="store_true",
        help="also open a temporary public link through gradio's share servers (off unless "
        "given; the photos then travel through them)",
    )
    add_token(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import ServeExtraMissing, require_gradio

    try:
        require_gradio()  # before the model loads: the fix costs nothing to say
    except ServeExtraMissing as err:
        print(f"mdan-zoo serve: error: {err}", file=sys.stderr)
        return 2  # a usage error: the command cannot run as installed
    from ..serve import run_serve

    return run_serve(
        weights=args.weights,
        model_name=args.model,
        pretrained=args.pretrained,
        host=args.host,
        port=args.port,
        device=args.device,
        max_upload_mb=args.max_upload_mb,
        queue=args.queue,
        share=args.share,
        token=args.token,
    )
