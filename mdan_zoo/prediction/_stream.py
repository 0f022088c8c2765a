"""Predicting many images into a terminal or a file: the work behind ``mdan-zoo predict``.

:func:`print_results` prints each image (a block, or a JSON line) as its batch finishes;
:func:`stream_results` appends records to ``--output FILE.jsonl|.csv``, flushed per batch, carries
on a file a killed run left (``resume``) and, under torchrun, has every rank write a part that
rank 0 merges (:mod:`._output`). Both take a loaded model: choosing and loading it is the
command line's job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..imageio import ImageReadError
from ._inputs import iter_image_paths
from ._options import PredictOptions
from ._output import (
    OutputError,
    ResultWriter,
    Scan,
    Shard,
    csv_header,
    existing_parts,
    merge_outputs,
    output_format,
    part_path,
    scan_output,
)
from ._pipeline import Model, iter_batches
from ._results import AttentionMaps, Prediction
from .overlay import attention_filename

__all__ = ["UsageError", "check_output", "print_results", "stream_results"]

log = logging.getLogger(__name__)


def _format_block(pred: Prediction, attention: str | None) -> str:
    if not pred.ok:
        return f"{pred.source}\n  ERROR      {pred.error}\n"
    width = max(len("answer"), *(len(lv.level) for lv in pred.levels))
    note = "" if pred.argmax_consistent else "  [per-level argmax breaks the hierarchy]"
    if pred.min_confidence is None:
        path = " > ".join(f"{c.label} {c.prob:.3f}" for c in pred.consistent)
        said = (
            f"{path}  (joint P_O {pred.joint_prob:.3f}: the path with the largest product of P_O)"
        )
    else:  # selective: the confident part of the path, then what was not sure enough
        answered = len(pred.answer)
        path = " > ".join([*pred.answer, "uncertain"] if pred.uncertain else pred.answer)
        said = f"{path}  (" + (
            f"path P_O {pred.path_probs[answered - 1]:.3f} >= {pred.min_confidence:g}"
            if answered
            else "no level is sure enough"
        )
        if pred.uncertain:
            unsure = pred.consistent[answered]
            said += (
                f"; {unsure.label} at {pred.levels[answered].level}: "
                f"{pred.path_probs[answered]:.3f} < {pred.min_confidence:g}"
            )
        said += ")"
    lines = [pred.source, f"  {'answer':<{width}}  {said}{note}"]
    outside = set(pred.outside_top_k)
    for lv, answer in zip(pred.levels, pred.consistent, strict=True):
        tops = "   ".join(f"{t.label} {t.prob:.3f}" for t in lv.top_k)
        if lv.level in outside:
            tops += f"   [answer {answer.label} {answer.prob:.3f}: outside the top {len(lv.top_k)}]"
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
    result: AttentionMaps, folder: Path | None, used: set[str], stable: bool, replace: bool
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
    return str(result.save(folder / name, overwrite=replace))


def print_results(
    model: Model,
    images: Sequence[str],
    options: PredictOptions,
    attention_dir: Path | None,
    json_lines: bool,
    out: Any,
    err: Any,
    *,
    replace_maps: bool = False,
) -> int:
    """Predict and print each image (a block, or a JSON line); attention maps already in
    ``attention_dir`` are replaced only with ``replace_maps`` (a :class:`FileExistsError`
    stops the run otherwise)."""
    used: set[str] = set()
    counts = _Counts()
    try:
        for batch in iter_batches(model, iter_image_paths(images), options):
            for result in batch:
                pred = result.prediction
                saved = _attention(result, attention_dir, used, stable=False, replace=replace_maps)
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


def stream_results(
    model: Model,
    images: Sequence[str],
    options: PredictOptions,
    attention_dir: Path | None,
    target: Path,
    resume: bool,
    shard: Shard,
    err: Any,
    *,
    replace_maps: bool = False,
) -> int:
    """Predict into ``target`` (this rank's part under torchrun), carrying on what is there
    with ``resume``; attention maps as :func:`print_results`."""
    header = csv_header(model.taxonomy.level_names, attention=attention_dir is not None)
    sharded = shard.sharded or bool(resume and existing_parts(target))
    mine = part_path(target, shard.rank, shard.world) if sharded else target
    try:
        shard.start(options.device)
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
        for batch in iter_batches(model, todo(), options):
            lines = []
            for result in batch:
                saved = _attention(result, attention_dir, set(), stable=True, replace=replace_maps)
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
