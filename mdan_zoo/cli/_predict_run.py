"""``mdan-zoo predict``: load the model the user names, predict, print or stream to a file.

Without ``--output`` each image is printed (a block, or a JSON line with ``--json``) as its
batch finishes. With ``--output FILE.jsonl|.csv`` records are appended to the file, flushed per
batch; ``--resume`` carries on a file a killed run left; under ``torchrun`` every rank writes
a part and rank 0 merges them (:mod:`mdan_zoo.prediction`).

Exit status: 0 when every image was predicted, 1 when some failed (each reported with its
reason) or a run stopped (what was written stays, for ``--resume``), 2 on usage errors, before
any work starts and with nothing overwritten. Under torchrun a finished run exits 0 even when
some images failed (torchrun reports any other status as a crashed process); the summary and
the error records say which.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .._io import OutputLockedError, exclusive_lock
from ..hub import WeightsError
from ..prediction import (
    PredictOptions,
    UsageError,
    check_output,
    part_path,
    print_results,
    shard_from_env,
    stream_results,
)
from ..untrained import mark_warned, untrained_message
from ..zoo import create_model, load_pretrained

__all__ = ["UsageError", "is_onnx", "load_model", "run_cli"]

log = logging.getLogger(__name__)


def load_model(*, name: str | None, weights: str | None, token: str | bool | None = None) -> Any:
    """The model the CLI asks for: a zoo name (``--model``, with its published weights) or a
    checkpoint (``--weights``: a folder written by ``save_pretrained``, a training run's
    output_dir, a ``.safetensors`` file, a Hub repo ``org/name[@revision]``, or an ``.onnx``
    export, run by ONNX Runtime); loading errors become :class:`UsageError`."""
    if (name is None) == (weights is None):
        raise UsageError("give exactly one of --model NAME or --weights PATH")
    if weights is not None and is_onnx(weights):
        return _load_onnx(weights)
    try:
        if weights is not None:
            return load_pretrained(weights, token=token)
        assert name is not None
        return create_model(name, pretrained=True, token=token)
    except (LookupError, ValueError, TypeError, WeightsError, OSError) as err:
        what = f"--weights {weights}" if weights is not None else f"--model {name}"
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise UsageError(f"cannot load {what}: {reason}") from None


def is_onnx(weights: str | None) -> bool:
    """Whether ``--weights`` names an ONNX export (by its ``.onnx`` suffix)."""
    return weights is not None and weights.lower().endswith(".onnx")


def _load_onnx(path: str) -> Any:
    """An ``export_onnx`` file as an :class:`~mdan_zoo.export.OnnxRuntimeModel`."""
    if not Path(path).is_file():
        raise UsageError(f"--weights {path}: no such file (an .onnx export written by export_onnx)")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UsageError(
            f"--weights {path} is an ONNX export, which runs through ONNX Runtime: "
            "pip install 'mdan_zoo[onnx]' (or pass the PyTorch checkpoint it came from)"
        ) from None
    from ..export import OnnxRuntimeModel

    try:
        return OnnxRuntimeModel(path)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UsageError(
            f"cannot load --weights {path}: {err}; export it again with "
            "mdan_zoo.export_onnx(model, path)"
        ) from None


def _check_onnx_options(weights: str, opts: PredictOptions, save_attention: str | None) -> None:
    """What an ONNX export cannot do, refused before any work."""
    if save_attention:
        raise UsageError(
            f"--save-attention needs the attention maps, which --weights {weights} (an ONNX "
            "export of the probabilities) does not have: pass the PyTorch checkpoint instead"
        )
    if opts.bf16 or opts.channels_last:
        raise UsageError(
            "--bf16 applies to the PyTorch model; ONNX Runtime runs the export's float32 graph "
            f"(--weights {weights}): drop --bf16, or pass the PyTorch checkpoint"
        )
    if opts.device is not None and torch.device(opts.device).type != "cpu":
        raise UsageError(
            f"--device {opts.device}: an ONNX export runs on ONNX Runtime's CPU provider here; "
            "drop --device, or pass the PyTorch checkpoint"
        )


def _lock_output(locks: contextlib.ExitStack, output: Path, shard: Any) -> None:
    """Lock ``--output`` (under torchrun, this rank's part of it) for the whole run."""
    locked = part_path(output, shard.rank, shard.world) if shard.sharded else output
    if output.is_dir():
        return  # check_output says what is wrong with it
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        locks.enter_context(exclusive_lock(locked, what="predict"))
    except OutputLockedError as exc:
        raise UsageError(f"--output {output}: {exc}") from None
    except OSError as exc:
        raise UsageError(
            f"--output {output}: cannot write in the folder {output.parent} "
            f"({exc.strerror or exc}); choose a writable folder"
        ) from None


def _check_attention_dir(folder: Path, *, replace: bool) -> None:
    """Refuse, before any work, to write maps into a folder that holds some, unless asked."""
    found = None if replace else next(folder.glob("*_attention.png"), None)
    if found is not None:
        raise UsageError(
            f"--save-attention {folder} already holds attention maps ({found.name}, ...); "
            "nothing was replaced: pass --overwrite to replace maps of the same names, or "
            "choose an empty folder"
        )


def run_cli(
    images: Sequence[str],
    *,
    model_name: str | None,
    weights: str | None,
    options: PredictOptions | None = None,
    json_lines: bool = False,
    save_attention: str | None = None,
    token: str | bool | None = None,
    output: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """``mdan-zoo predict``: 0 when every image was predicted, 1 when some failed (each is
    reported with its reason, the rest still run) or the run stopped, 2 on usage errors.

    ``--output`` is locked from before its "already exists" check to the last record, so a
    second writer (two runs, two ``--resume``) is refused at once; attention maps already in
    ``save_attention`` are replaced only with ``overwrite`` (or by ``--resume`` of the run that
    wrote them)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    shard = shard_from_env()
    # a worker torchrun restarted (--max-restarts) carries on what its first attempt wrote
    resume = resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    opts = options or PredictOptions(progress=True)
    locks = contextlib.ExitStack()
    try:
        if is_onnx(weights):
            assert weights is not None
            _check_onnx_options(weights, opts, save_attention)
        device = shard.device(opts.device)
        if device is not None:
            try:
                torch.empty(0, device=device)
            except (RuntimeError, AssertionError) as exc:
                raise UsageError(f"--device {device} is not usable here: {exc}") from None
        if save_attention:
            try:
                Path(save_attention).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"--save-attention {save_attention} is not a writable folder ({exc})"
                ) from None
            _check_attention_dir(Path(save_attention), replace=overwrite or resume)
        if output is not None:
            _lock_output(locks, Path(output), shard)
        target = check_output(Path(output), resume=resume) if output is not None else None
        if target is None and shard.sharded:
            raise UsageError(
                "under torchrun, give --output FILE.jsonl (or .csv): every process writes a "
                "part of it and the first merges them"
            )
        if target is None and resume:
            raise UsageError("--resume carries on an --output file: give --output FILE")
        model = load_model(name=model_name, weights=weights, token=token)
    except UsageError as exc:
        locks.close()
        if shard.rank == 0:
            print(f"mdan-zoo predict: error: {exc}", file=err)
        return 2
    with locks:
        return _run(model, images, opts, device, save_attention, json_lines, target, resume,
                    overwrite or resume, shard, out, err)  # fmt: skip


def _run(
    model: Any,  # an MDAN, or an OnnxRuntimeModel for --weights model.onnx
    images: Sequence[str],
    opts: PredictOptions,
    device: Any,
    save_attention: str | None,
    json_lines: bool,
    target: Path | None,
    resume: bool,
    replace_maps: bool,
    shard: Any,
    out: Any,
    err: Any,
) -> int:
    untrained = untrained_message(model)
    if untrained is not None:  # the same warning as model.predict, on stderr, once
        if shard.rank == 0:
            print(f"mdan-zoo predict: UntrainedWeightsWarning: {untrained}", file=err)
        mark_warned(model)
    # one bar per job, not one per process
    opts = opts.replace(
        device=device,
        with_maps=save_attention is not None,
        progress=opts.progress and shard.rank == 0,
    )
    attention_dir = Path(save_attention) if save_attention else None
    if target is None:
        return print_results(
            model, images, opts, attention_dir, json_lines, out, err, replace_maps=replace_maps
        )
    try:
        return stream_results(
            model,
            images,
            opts,
            attention_dir,
            target,
            resume,
            shard,
            err,
            replace_maps=replace_maps,
        )
    except UsageError as exc:  # a damaged --output found while reading it back
        where = f"rank {shard.rank} of {shard.world}: " if shard.sharded else ""
        print(f"mdan-zoo predict: {where}error: {exc}", file=err)
        return 2
    finally:
        shard.stop()
