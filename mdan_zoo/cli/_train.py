"""``mdan-zoo train`` / ``eval`` / ``report`` / ``configs`` / ``export`` / ``push`` / ``demo``."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..errors import MDANZooError, UsageError
from ._common import add_threads, add_token, fail, rank0

__all__ = ["add_commands"]

# what a command reports as one line (exit 1): every error of the family, and files that are
# missing or already there
_ERRORS = (MDANZooError, FileNotFoundError, FileExistsError)


def add_commands(sub: argparse._SubParsersAction) -> None:
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
        help=(
            "override a config key (repeatable), e.g. --set epochs=5 --set model.alpha=0.5; "
            "an MDANConfig field alone reaches the model: --set mapping=c"
        ),
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
    add_threads(p)
    add_token(p)  # init_from=hf-hub:... downloads
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
    p.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="ignore the temperatures a calibrated checkpoint stores: measure the raw model",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_threads(p)
    add_token(p)
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
    add_token(p)
    p.set_defaults(func=_train_push)

    p = sub.add_parser(
        "demo", help="train, evaluate, save, reload and explain MDAN on Fashion-MNIST (CPU, ~1 min)"
    )
    p.add_argument("--out", default="mdan-demo", help="output folder (default ./mdan-demo)")
    p.add_argument("--quick", action="store_true", help="a few seconds of training (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_threads(p)
    p.set_defaults(func=_train_demo)


def _load_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig
    from ..training import TrainConfig

    cfg = TrainConfig.from_file(args.config).with_overrides(args.overrides)
    if getattr(args, "no_progress", False):
        cfg = cfg.with_overrides(["progress=false"])
    if getattr(args, "threads", None) is not None:
        cfg = cfg.with_overrides([f"threads={args.threads}"])
    return cfg


def _train_train(args: argparse.Namespace) -> int:
    from ..training import RunExistsError, train

    try:
        cfg = _load_config(args)
        if args.seeds is not None or args.folds is not None:
            return _train_protocol(args, cfg)
        result = train(cfg, resume=args.resume, token=args.token)
    except RunExistsError as err:
        return _fail_exists(err)
    except _ERRORS as err:
        return fail(err)
    if rank0():
        if result.test_report is not None:
            print(result.test_report.table())  # the same text as test/report.txt
        else:
            for text in result.warnings:
                print(f"WARNING: {text}")
        print(
            f"best epoch {result.best_epoch} ({result.select_metric} {result.best_metric:.4f}); "
            f"run folder {result.output_dir}"
        )
    return 0


def _fail_exists(err: BaseException) -> int:
    detail = getattr(err, "detail", str(err))
    return fail(
        f"{detail}. Add --resume to continue (a finished run is only evaluated again), or "
        "choose another folder with --set output_dir=...; nothing was changed"
    )


def _train_protocol(args: argparse.Namespace, cfg) -> int:  # noqa: ANN001 - TrainConfig
    from ..training import report_runs, train_runs

    runs = train_runs(cfg, seeds=args.seeds, folds=args.folds, resume=args.resume, token=args.token)
    if not rank0():
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
    except _ERRORS as err:
        return fail(err)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def _train_configs(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, config_text, list_configs

    try:
        if args.name:
            print(config_text(args.name), end="")
            return 0
        rows = [(n, TrainConfig.from_file(n)) for n in list_configs()]
    except _ERRORS as err:
        return fail(err)
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
    from ..hub.run_folder import is_run_folder
    from ..training import build_datasets, load_checkpoint

    try:
        cfg = _load_config(args)
        if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
            raise UsageError(
                f"--out {args.out} is a file; eval writes a folder there (report.json, "
                "report.txt, confusion matrices): name a new or existing folder"
            )
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
            threads=cfg.intra_op_threads(),
            calibration=args.calibration,
        )
    except _ERRORS as err:  # a --checkpoint that cannot be loaded too: the message says the fix
        return fail(err)
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
    except _ERRORS as err:
        return fail(err)
    print(out)
    return 0


def _train_push(args: argparse.Namespace) -> int:
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
    except (*_ERRORS, ValueError) as err:  # refused token, offline, --branch vs --revision
        return fail(err)
    print(f"pushed {args.repo_id} at commit {commit}")
    return 0


def _train_demo(args: argparse.Namespace) -> int:
    from ..training import run_demo

    run_demo(
        out_dir=args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        threads=args.threads,
    )
    return 0
