"""``mdan-zoo predict``: its arguments; the run (:mod:`._predict_run`) loads torch when called."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._common import add_threads, add_token

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`predict`."""

    def at_least(low: int, what: str) -> Callable[[str], int]:
        def parse(text: str) -> int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
            if value < low:
                raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
            return value

        return parse

    positive, natural = at_least(1, "a positive integer"), at_least(0, "0 or more")

    p = sub.add_parser(
        "predict",
        help="predict emotions (every level + a hierarchy-consistent answer) for images",
        description="Predict the emotion of images at every level of the model's hierarchy. "
        "Exit status: 0 all images predicted, 1 some files failed (each is reported, the rest "
        "still run), 2 usage error.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders or globs")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="NAME", help="a zoo model name (see `mdan-zoo list`)")
    which.add_argument(
        "--weights",
        metavar="PATH",
        help="a folder saved by save_pretrained or `mdan-zoo export`, a training run's "
        "output_dir (its validation-selected epoch), a .safetensors file, "
        "a Hub repo id org/name[@revision] or hf-hub:org/name[@revision], or an .onnx "
        "export (run by ONNX Runtime: pip install 'mdan_zoo[onnx]')",
    )
    p.add_argument(
        "--top-k", type=positive, default=3, metavar="K", help="labels listed per level (3)"
    )
    p.add_argument(
        "--batch-size", type=positive, default=16, metavar="N", help="images per batch (16)"
    )
    p.add_argument(
        "--device", default=None, metavar="DEV", help="cpu, cuda, cuda:1, mps (default: cpu)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument(
        "--save-attention", metavar="DIR", help="write a Fig. 8-style attention PNG per image"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace attention PNGs already in --save-attention DIR (refused otherwise)",
    )
    p.add_argument(
        "--allow-truncated", action="store_true", help="decode truncated files instead of failing"
    )
    p.add_argument(
        "--max-pixels",
        type=positive,
        default=None,
        metavar="N",
        help="decompression-bomb limit per image (default: Pillow's, about 89 megapixels)",
    )
    p.add_argument(
        "--workers",
        type=natural,
        default=None,
        metavar="N",
        help="processes that read images while the model runs; 0: in the main process "
        "(default: 0 for one batch, else 1 on CPU, up to 8 on GPU)",
    )
    add_threads(p)
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast (faster on GPUs and on CPUs with AMX / AVX512-BF16)",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="append one record per image to FILE.jsonl or FILE.csv as batches finish "
        "(instead of stdout); under torchrun every process writes a part, merged at the end",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="carry on an --output file a stopped run left: skip the images it holds",
    )
    p.add_argument(
        "--min-confidence",
        type=_probability,
        default=None,
        metavar="P",
        help="selective prediction: a level whose consistent-path probability is below P "
        "answers 'uncertain' and the answer backs off to the deepest level that clears P",
    )
    p.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="ignore the temperatures a calibrated checkpoint stores: the raw model",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_token(p)
    p.set_defaults(func=_cmd_predict)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability from 0 to 1, got {value}")
    return value


def _cmd_predict(args: argparse.Namespace) -> int:
    import dataclasses

    from ..prediction import PredictOptions
    from ._predict_run import run_cli

    given = vars(args)  # the flags are named as the options they set (--top-k: top_k, ...)
    fields = [f.name for f in dataclasses.fields(PredictOptions) if f.name in given]
    return run_cli(
        args.images,
        model_name=args.model,
        weights=args.weights,
        options=PredictOptions(**{k: given[k] for k in fields}, progress=not args.no_progress),
        json_lines=args.json,
        save_attention=args.save_attention,
        token=args.token,
        output=args.output,
        resume=args.resume,
        overwrite=args.overwrite,
    )
