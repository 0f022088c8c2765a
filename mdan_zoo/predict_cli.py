"""``mdan-zoo predict``: load the model the user names, predict, print or stream to a file.

Without ``--output`` each image is printed (a block, or a JSON line with ``--json``) as its
batch finishes. With ``--output FILE.jsonl|.csv`` records are appended to the file, flushed per
batch; ``--resume`` carries on a file a killed run left; under ``torchrun`` every rank writes
a part and rank 0 merges them (:mod:`mdan_zoo.predict_shard`).

Exit status: 0 when every image was predicted, 1 when some failed (each reported with its
reason) or a run stopped (what was written stays, for ``--resume``), 2 on usage errors, before
any work starts and with nothing overwritten. Under torchrun a finished run exits 0 even when
some images failed (torchrun reports any other status as a crashed process); the summary and
the error records say which.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .hub import WeightsError, load_pretrained
from .imageio import ImageReadError
from .inputs import iter_image_paths
from .model import MDAN
from .overlay import attention_filename
from .predict_output import (
    OutputError,
    ResultWriter,
    Scan,
    csv_header,
    merge_outputs,
    output_format,
    scan_output,
)
from .predict_shard import Shard, existing_parts, part_path, shard_from_env
from .prediction import AttentionMaps, Prediction, iter_batches
from .untrained import mark_warned, untrained_message
from .zoo import create_model

__all__ = ["UsageError", "load_model", "run_cli"]

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """A command-line mistake (exit status 2): unknown model, unreadable weights, bad option."""


def load_model(*, name: str | None, weights: str | None, token: str | bool | None = None) -> MDAN:
    """The model the CLI asks for: a zoo name (``--model``, with its published weights) or a
    checkpoint (``--weights``: a folder written by ``save_pretrained``, a training run's
    output_dir, a ``.safetensors`` file or a Hub repo ``org/name[@revision]``); loading errors
    become :class:`UsageError`."""
    if (name is None) == (weights is None):
        raise UsageError("give exactly one of --model NAME or --weights PATH")
    try:
        if weights is not None:
            return load_pretrained(weights, token=token)
        assert name is not None
        return create_model(name, pretrained=True, token=token)
    except (LookupError, ValueError, TypeError, WeightsError, OSError) as err:
        what = f"--weights {weights}" if weights is not None else f"--model {name}"
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise UsageError(f"cannot load {what}: {reason}") from None


def _format_block(pred: Prediction, attention: str | None) -> str:
    if not pred.ok:
        return f"{pred.source}\n  ERROR      {pred.error}\n"
    width = max(len("answer"), *(len(lv.level) for lv in pred.levels))
    path = " > ".join(c.label for c in pred.consistent)
    note = "" if pred.argmax_consistent else "  [per-level argmax breaks the hierarchy]"
    lines = [pred.source, f"  {'answer':<{width}}  {path}  (joint P_O {pred.joint_prob:.3f}){note}"]
    for lv in pred.levels:
        tops = "   ".join(f"{t.label} {t.prob:.3f}" for t in lv.top_k)
        lines.append(f"  {lv.level:<{width}}  {tops}")
    if attention is not None:
        lines.append(f"  {'attention':<{width}}  {attention}")
    return "\n".join(lines) + "\n"


def check_output(output: Path, *, resume: bool) -> Path:
    """``--output`` checked before any work: a known format, a folder we can write in, and no
    existing file (or parts of one) unless ``--resume`` says to carry it on."""
    try:
        output_format(output)
    except OutputError as err:
        raise UsageError(str(err)) from None
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder; name a file in it, e.g. preds.jsonl")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UsageError(
            f"--output {output}: cannot write in the folder {folder} ({err.strerror or err}); "
            "choose a writable folder"
        ) from None
    if not resume:
        if output.exists():
            raise UsageError(
                f"--output {output} already exists (nothing was overwritten): add --resume to "
                "carry it on, or choose another file"
            )
        parts = existing_parts(output)
        if parts:
            raise UsageError(
                f"--output {output}: {len(parts)} part(s) of an unfinished multi-process run "
                f"exist ({parts[0].name}, ...): add --resume to finish them, or remove them"
            )
    return output


@dataclass
class _Counts:
    done: int = 0
    failed: int = 0
    skipped: int = 0


def _attention(
    result: AttentionMaps, folder: Path | None, used: set[str], stable: bool
) -> str | None:
    if folder is None or not result.ok:
        return None
    if stable:  # same name in every rank and every resumed run, and no memory per image
        tag = hashlib.blake2b(result.source.encode("utf-8", "surrogateescape"), digest_size=4)
        name = attention_filename(result.source, set()).replace(
            "_attention.png", f"_{tag.hexdigest()}_attention.png"
        )
    else:
        name = attention_filename(result.source, used)
    return str(result.save(folder / name))


def run_cli(
    images: Sequence[str],
    *,
    model_name: str | None,
    weights: str | None,
    top_k: int = 3,
    batch_size: int = 16,
    device: str | None = None,
    json_lines: bool = False,
    save_attention: str | None = None,
    allow_truncated: bool = False,
    max_pixels: int | None = None,
    progress: bool = True,
    token: str | bool | None = None,
    workers: int | None = None,
    bf16: bool = False,
    output: str | None = None,
    resume: bool = False,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """``mdan-zoo predict``: 0 when every image was predicted, 1 when some failed (each is
    reported with its reason, the rest still run) or the run stopped, 2 on usage errors."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    shard = shard_from_env()
    # a worker torchrun restarted (--max-restarts) carries on what its first attempt wrote
    resume = resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    try:
        if top_k < 1 or batch_size < 1:
            raise UsageError("--top-k and --batch-size must be positive integers")
        if max_pixels is not None and max_pixels < 1:
            raise UsageError("--max-pixels must be a positive integer")
        if workers is not None and workers < 0:
            raise UsageError("--workers must be 0 (read in the main process) or more")
        device = shard.device(device)
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
        if shard.rank == 0:
            print(f"mdan-zoo predict: error: {exc}", file=err)
        return 2
    untrained = untrained_message(model)
    if untrained is not None:  # the same warning as model.predict, on stderr, once
        if shard.rank == 0:
            print(f"mdan-zoo predict: UntrainedWeightsWarning: {untrained}", file=err)
        mark_warned(model)
    options = dict(
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        with_maps=save_attention is not None,
        allow_truncated=allow_truncated,
        max_pixels=max_pixels,
        progress=progress,
        workers=workers,
        bf16=bf16,
    )
    attention_dir = Path(save_attention) if save_attention else None
    if shard.rank != 0:
        options["progress"] = False  # one bar per job, not one per process
    if target is None:
        return _print_run(model, images, options, attention_dir, json_lines, out, err)
    try:
        return _file_run(model, images, options, attention_dir, target, resume, shard, err)
    except UsageError as exc:  # a damaged --output found while reading it back
        where = f"rank {shard.rank} of {shard.world}: " if shard.sharded else ""
        print(f"mdan-zoo predict: {where}error: {exc}", file=err)
        return 2
    finally:
        shard.stop()


def _print_run(
    model: MDAN,
    images: Sequence[str],
    options: dict[str, Any],
    attention_dir: Path | None,
    json_lines: bool,
    out: Any,
    err: Any,
) -> int:
    used: set[str] = set()
    counts = _Counts()
    try:
        for batch in iter_batches(model, iter_image_paths(images), **options):
            for result in batch:
                pred = result.prediction
                saved = _attention(result, attention_dir, used, stable=False)
                counts.done += pred.ok
                counts.failed += not pred.ok
                if json_lines:
                    record = pred.to_dict()
                    if saved is not None:
                        record["attention"] = saved
                    out.write(json.dumps(record, allow_nan=False) + "\n")
                else:
                    out.write(_format_block(pred, saved))
            out.flush()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - a message, not a traceback
        why = (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        )
        print(
            f"mdan-zoo predict: stopped after {counts.done + counts.failed} image(s) ({why}); "
            "--output FILE keeps results in a file that --resume can carry on",
            file=err,
        )
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    total = counts.done + counts.failed
    print(
        f"{total} image(s): {counts.done} predicted, {counts.failed} failed"
        + (f"; attention maps in {attention_dir}" if attention_dir and counts.done else ""),
        file=err,
    )
    return 1 if counts.failed else 0


def _names(images: Sequence[str]) -> Iterator[str]:
    for item in iter_image_paths(images):
        yield item.path if isinstance(item, ImageReadError) else str(item)


def _done_before(target: Path, mine: Path, parts: list[Path], header: list[str]) -> Scan:
    """Records already written: the target (a killed single run, or a finished one) and every
    part (a killed sharded run); only ``mine`` was repaired, the others are only read."""
    scans = [scan_output(p, header=header) for p in [target, *parts] if p.exists() and p != mine]
    if mine.exists():
        scans.append(scan_output(mine, header=header))
    keys = np.unique(np.concatenate([s.keys for s in scans])) if scans else np.zeros(0, np.uint64)
    return Scan(keys=keys, records=len(keys), failed=sum(s.failed for s in scans))


def _file_run(
    model: MDAN,
    images: Sequence[str],
    options: dict[str, Any],
    attention_dir: Path | None,
    target: Path,
    resume: bool,
    shard: Shard,
    err: Any,
) -> int:
    header = csv_header(model.taxonomy.level_names, attention=attention_dir is not None)
    sharded = shard.sharded or bool(resume and existing_parts(target))
    mine = part_path(target, shard.rank, shard.world) if sharded else target
    try:
        shard.start(options["device"])
    except (RuntimeError, ValueError) as exc:
        print(f"mdan-zoo predict: cannot start the process group ({exc})", file=err)
        return 1
    try:
        shard.barrier()  # every rank checked --output before any creates its part
        done = None
        if resume:
            if mine.exists():
                scan_output(mine, header=header, repair=True)
            shard.barrier()  # every part repaired before anyone reads it
            done = _done_before(target, mine, existing_parts(target) if sharded else [], header)
        writer = ResultWriter(mine, header=header, rank=shard.rank)
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--output {target}: {exc}") from None
    except RuntimeError as exc:  # a collective failed: another rank is gone
        print(f"mdan-zoo predict: lost the other processes before starting ({exc})", file=err)
        return 1
    counts = _Counts()

    def todo() -> Iterator[Path | ImageReadError]:
        for index, item in enumerate(iter_image_paths(images)):
            if not shard.mine(index):
                continue
            if done is not None and done.done(
                item.path if isinstance(item, ImageReadError) else str(item)
            ):
                counts.skipped += 1
                continue
            yield item

    where = f"rank {shard.rank} of {shard.world}: " if shard.sharded else ""
    try:
        for batch in iter_batches(model, todo(), **options):
            lines = []
            for result in batch:
                saved = _attention(result, attention_dir, set(), stable=True)
                lines.append(writer.line(result.prediction, saved))
            writer.write_batch(lines)
            good = sum(r.prediction.ok for r in batch)
            counts.done += good
            counts.failed += len(batch) - good
        writer.close()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - a message, not a traceback
        with contextlib.suppress(OSError, ValueError):
            writer.close()
        why = (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        )
        print(
            f"mdan-zoo predict: {where}stopped ({why}); the {counts.done + counts.failed} "
            f"record(s) written so far are in {mine}: run the same command with --resume to "
            "carry on",
            file=err,
        )
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    try:
        totals = np.sum(shard.gather([counts.done, counts.failed, counts.skipped]), axis=0)
        if sharded:
            shard.barrier()  # every part complete
            code = _merge(target, images, header, shard, err) if shard.rank == 0 else 0
            shard.barrier()  # nobody exits (which would stop the others) before the merge
        else:
            code = 1 if counts.failed or (done is not None and done.failed) else 0
    except RuntimeError as exc:  # a collective failed: another rank is gone
        print(
            f"mdan-zoo predict: {where}lost the other processes ({exc}); one of them stopped "
            f"(torchrun's report names it); the parts stay: rerun with --resume",
            file=err,
        )
        return 1
    if shard.rank == 0:
        ok, failed, skipped = (int(v) for v in totals)
        if done is not None and done.records and not skipped:
            log.warning(
                "%s held %d record(s) but none names one of these inputs: were the images "
                "given another way (relative vs absolute paths, another folder)?",
                target,
                done.records,
            )
        print(
            f"{ok + failed} image(s): {ok} predicted, {failed} failed"
            + (f"; {skipped} already in the output, skipped" if skipped else "")
            + f"; results in {target}",
            file=err,
        )
    return code


def _merge(target: Path, images: Sequence[str], header: list[str], shard: Shard, err: Any) -> int:
    """Rank 0 writes the parts as one file in input order and removes them; the exit status.

    Under torchrun a finished run exits 0 even when some images failed (they are error records,
    counted in the summary): torchrun reports any non-zero status as a crashed process."""
    parts = existing_parts(target)
    stats = merge_outputs(target, parts, _names(images), header=header)
    for part in parts:
        part.unlink()
    if stats.missing:
        print(
            f"mdan-zoo predict: {stats.missing} input(s) have no record in the parts (files "
            f"added while the run went on?); rerun with --resume to predict them",
            file=err,
        )
    log.info("merged %d part(s) into %s: %d records", len(parts), target, stats.records)
    if stats.failed and shard.sharded:
        print(f"mdan-zoo predict: {stats.failed} image(s) failed: see their records", file=err)
    return 1 if stats.missing or (stats.failed and not shard.sharded) else 0
