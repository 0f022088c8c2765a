"""The ``mdan-zoo`` command line: argument parsing only; the work is done by the modules.

Each group of subcommands is added by its own function below, so that areas stay apart.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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
    _add_token(p)
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
    from ..hub import WeightsError, download
    from ..registry import UnpublishedWeightsError, get_weights

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
    except (KeyError, WeightsError, UnpublishedWeightsError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    print(ckpt.weights_path.parent)
    return 0


# ---------------------------------------------------------------- train / eval / export / push / demo
def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    """`train`, `eval`, `export`, `push`, `demo`."""
    p = sub.add_parser(
        "train",
        help="train MDAN from a config (torchrun for many GPUs)",
        description="Train MDAN from a shipped config (by name, see `mdan-zoo configs`) or a "
        "JSON/TOML file. --seeds and --folds run the paper's protocol, one run per seed / "
        "fold under OUTPUT_DIR/seed-<s>/fold-<k>, and print their mean ± std; finished runs "
        "are skipped, never overwritten.",
    )
    p.add_argument(
        "config", help="a shipped config name (fi, webemo, ...: `mdan-zoo configs`) or a file"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set epochs=5 --set model.alpha=0.5",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="one run per seed, in OUTPUT_DIR/seed-<s> (the paper: --seeds 0 1 2)",
    )
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="one run per fold of a cross-validated set, in OUTPUT_DIR/fold-<k> (--folds 5)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train_train)

    p = sub.add_parser(
        "report",
        help="mean ± std of several runs' test reports (Tables 1 and 3)",
        description="Find the runs in each RUN_DIR (its seed-*/fold-* folders, or the folder "
        "itself) and print the mean ± std of their test accuracies per level and branch "
        "(P_L / P_G / P_O), the runs used and those left out.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training output folders")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_train_report)

    p = sub.add_parser("configs", help="the training configs that ship with mdan_zoo")
    p.add_argument("name", nargs="?", help="print this config (to copy and edit)")
    p.set_defaults(func=_train_configs)

    p = sub.add_parser("eval", help="Table-3 report of a trained model on a dataset split")
    p.add_argument(
        "config", help="the TrainConfig (shipped name or file) that names the dataset and run"
    )
    p.add_argument(
        "--checkpoint",
        help="a run folder, checkpoint folder or Hub-layout folder/repo "
        "(default: the config's output_dir, its validation-selected epoch)",
    )
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--preprocessing",
        choices=("checkpoint", "config"),
        help="the input transforms: the checkpoint's own (default), or the config's input_size "
        "/ resize_size (the default when --set gives either)",
    )
    p.add_argument("--out", help="folder for report.json/.txt and confusion CSV/PNG")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_token(p)
    p.set_defaults(func=_train_eval)

    p = sub.add_parser("export", help="a run's selected checkpoint into the Hub layout")
    p.add_argument(
        "run_dir",
        help="the training run's output_dir; a folder of seed-*/fold-* runs exports the run "
        "with the best validation score and records the mean ± std of all in the metrics",
    )
    p.add_argument("out_dir", help="where to write model.safetensors, config.json, README.md")
    p.add_argument("--which", default="best", choices=("best", "last"), help="default: best")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in out_dir")
    p.set_defaults(func=_train_export)

    p = sub.add_parser("push", help="upload a run's selected checkpoint to a Hub repo")
    p.add_argument("run_dir", help="the training run's output_dir")
    p.add_argument("repo_id", help="Hub repo, e.g. your-name/mdan-fi")
    p.add_argument("--which", default="best", choices=("best", "last"))
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--branch", help="branch to push to (default: main)")
    p.add_argument("--revision", help="older name for --branch")
    p.add_argument(
        "--create-pr", action="store_true", help="open a pull request instead of committing"
    )
    p.add_argument("--message", help="commit message")
    _add_token(p)
    p.set_defaults(func=_train_push)

    p = sub.add_parser(
        "demo", help="train, evaluate, save, reload and explain MDAN on Fashion-MNIST (CPU, ~1 min)"
    )
    p.add_argument("--out", default="mdan-demo", help="output folder (default ./mdan-demo)")
    p.add_argument("--quick", action="store_true", help="a few seconds of training (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train_demo)


def _add_token(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--token", help="Hub token for private repos (default: HF_TOKEN or `hf auth login`)"
    )


def _fail(err: BaseException | str) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def _train_errors() -> tuple[type[BaseException], ...]:
    from ..config import ConfigError
    from ..data.fashion_mnist import DatasetError
    from ..taxonomy import TaxonomyError
    from ..training import NonFiniteLossError, RunsError

    return (
        ConfigError,
        DatasetError,
        TaxonomyError,
        NonFiniteLossError,
        FileNotFoundError,
        FileExistsError,
        RunsError,
    )


def _rank0() -> bool:
    """Under torchrun only the first process prints summaries."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _load_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig
    from ..training import TrainConfig

    cfg = TrainConfig.from_file(args.config).with_overrides(args.overrides)
    if getattr(args, "no_progress", False):
        cfg = cfg.with_overrides(["progress=false"])
    return cfg


def _train_train(args: argparse.Namespace) -> int:
    from ..training import RunExistsError, train

    try:
        cfg = _load_config(args)
        if args.seeds is not None or args.folds is not None:
            return _train_protocol(args, cfg)
        result = train(cfg, resume=args.resume)
    except RunExistsError as err:
        return _fail_exists(err)
    except _train_errors() as err:
        return _fail(err)
    if _rank0():
        if result.test_report is not None:
            print(result.test_report.table(f"{cfg.name}: test split, epoch {result.best_epoch}"))
        print(
            f"best epoch {result.best_epoch} ({result.select_metric} {result.best_metric:.4f}); "
            f"run folder {result.output_dir}"
        )
    return 0


def _fail_exists(err: BaseException) -> int:
    detail = getattr(err, "detail", str(err))
    return _fail(
        f"{detail}. Add --resume to continue (a finished run is only evaluated again), or "
        "choose another folder with --set output_dir=...; nothing was changed"
    )


def _train_protocol(args: argparse.Namespace, cfg) -> int:  # noqa: ANN001 - TrainConfig
    from ..training import report_runs, train_runs

    runs = train_runs(cfg, seeds=args.seeds, folds=args.folds, resume=args.resume)
    if not _rank0():
        return 0
    for run in runs:
        r = run.result
        done = (
            f"{run.status}, best epoch {r.best_epoch} ({r.select_metric} {r.best_metric:.4f})"
            if r is not None
            else "finished before: skipped, left as it was"
        )
        print(f"{run.output_dir}: {done}")
    if any(run.config.eval_test for run in runs):
        print(report_runs([run.output_dir for run in runs]).table())
    return 0


def _train_report(args: argparse.Namespace) -> int:
    import json

    from ..training import report_runs

    try:
        report = report_runs(args.run_dirs)
    except _train_errors() as err:
        return _fail(err)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def _train_configs(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, config_text, list_configs

    try:
        if args.name:
            print(config_text(args.name), end="")
            return 0
        rows = [(n, TrainConfig.from_file(n)) for n in list_configs()]
    except _train_errors() as err:
        return _fail(err)
    width = max(len(n) for n, _ in rows)
    print(f"{'name':<{width}}  {'dataset':<13} {'taxonomy':<13} description")
    for name, cfg in rows:
        print(f"{name:<{width}}  {cfg.dataset:<13} {cfg.taxonomy:<13} {cfg.description}")
    print(
        "\nuse one by name: mdan-zoo train NAME --set data_root=/path/to/data; "
        "copy one to edit: mdan-zoo configs NAME > my.json"
    )
    return 0


def _train_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..evaluation import evaluate
    from ..hub import WeightsError
    from ..hub.run_folder import is_run_folder
    from ..training import build_datasets, load_checkpoint

    try:
        cfg = _load_config(args)
        if args.out and (Path(args.out) / "report.json").exists() and not args.overwrite:
            raise FileExistsError(
                f"{args.out} already holds a report (report.json). Nothing was changed: pass "
                "another --out, or --overwrite to replace it"
            )
        source = Path(args.checkpoint or cfg.resolved_output_dir())
        if is_run_folder(source):
            model = load_checkpoint(source).model
        elif args.checkpoint is None:
            raise FileNotFoundError(
                f"{source} holds no training run of {cfg.name!r} (the config's output_dir): "
                f"train it first (`mdan-zoo train {args.config}`), or name the weights with "
                "--checkpoint PATH (a run folder, a Hub-layout folder or a Hub repo)"
            )
        else:
            from ..zoo import load_pretrained

            model = load_pretrained(args.checkpoint, token=args.token)
        pre, said = _eval_preprocessing(args, cfg, model)
        datasets = build_datasets(cfg, taxonomy=model.taxonomy, preprocessing=pre)
        if args.split not in datasets:
            raise FileNotFoundError(f"the dataset has no {args.split!r} split: {sorted(datasets)}")
        device = (
            "cuda" if __import__("torch").cuda.is_available() and cfg.device != "cpu" else "cpu"
        )
        model.to(device)
        report = evaluate(
            model,
            datasets[args.split],
            batch_size=cfg.eval_batch_size,
            device=device,
            workers=cfg.loader_workers(),
            progress=cfg.progress,
        )
    except _train_errors() as err:
        return _fail(err)
    except WeightsError as err:  # --checkpoint that cannot be loaded: the message says the fix
        return _fail(err)
    print(said)
    print(report.table(f"{cfg.name}: {args.split} split ({report.num_samples} images)"))
    if args.out:
        paths = report.write(args.out, title=f"{cfg.name}: {args.split} split\n{said}")
        print(f"report and confusion matrices written to {paths['json'].parent}")
    return 0


_PREPROCESSING_KEYS = ("input_size", "resize_size")


def _eval_preprocessing(args: argparse.Namespace, cfg: Any, model: Any) -> tuple[Any, str]:
    """The transforms `eval` uses and the line that says which: the checkpoint's own, unless
    --preprocessing config or a --set of input_size / resize_size asks for the config's."""
    given = [o.partition("=")[0].strip() for o in args.overrides]
    which = args.preprocessing or (
        "config" if any(k in _PREPROCESSING_KEYS for k in given) else "checkpoint"
    )
    mine, theirs = model.preprocessing, cfg.preprocessing()

    def shown(p: Any) -> str:
        resize = "none (crop from the original)" if p.resize_size is None else p.resize_size
        return f"input_size {p.input_size}, resize_size {resize}"

    differ = shown(mine) != shown(theirs)
    if which == "config":  # the config's sizes; normalisation stays the checkpoint's
        said = f"preprocessing: the config's ({shown(theirs)})"
        said += f"; the checkpoint was trained with {shown(mine)}" if differ else ""
        pre = dataclasses.replace(
            mine, input_size=theirs.input_size, resize_size=theirs.resize_size
        )
        return pre, said
    said = f"preprocessing: the checkpoint's ({shown(mine)})"
    said += f"; the config says {shown(theirs)}: --preprocessing config uses it" if differ else ""
    return mine, said


def _train_export(args: argparse.Namespace) -> int:
    from ..training import export_run

    try:
        out = export_run(args.run_dir, args.out_dir, which=args.which, overwrite=args.overwrite)
    except _train_errors() as err:
        return _fail(err)
    print(out)
    return 0


def _train_push(args: argparse.Namespace) -> int:
    from ..hub import WeightsError
    from ..training import push_run

    try:
        commit = push_run(
            args.run_dir,
            args.repo_id,
            which=args.which,
            private=args.private or None,
            branch=args.branch,
            revision=args.revision,
            create_pr=args.create_pr or None,
            commit_message=args.message,
            token=args.token,
        )
    except _train_errors() as err:
        return _fail(err)
    except (WeightsError, ValueError) as err:  # refused token, offline, --branch vs --revision
        return _fail(err)
    print(f"pushed {args.repo_id} at commit {commit}")
    return 0


def _train_demo(args: argparse.Namespace) -> int:
    from ..training import run_demo

    run_demo(out_dir=args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress)
    return 0


# ---------------------------------------------------------------- predict
def _add_predict_commands(sub: argparse._SubParsersAction) -> None:
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
        "a Hub repo id org/name[@revision] or hf-hub:org/name[@revision]",
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_token(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from ._predict import run_cli

    return run_cli(
        args.images,
        model_name=args.model,
        weights=args.weights,
        top_k=args.top_k,
        batch_size=args.batch_size,
        device=args.device,
        json_lines=args.json,
        save_attention=args.save_attention,
        allow_truncated=args.allow_truncated,
        max_pixels=args.max_pixels,
        progress=not args.no_progress,
        token=args.token,
        workers=args.workers,
        bf16=args.bf16,
        output=args.output,
        resume=args.resume,
    )


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
    _add_zoo_commands(sub)
    _add_train_commands(sub)
    _add_predict_commands(sub)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    with _logging(args.verbose, args.quiet):
        return int(args.func(args) or 0)
