"""Streaming result files for ``mdan-zoo predict --output``: JSON lines or CSV, resumable.

One record per image, appended as each batch finishes and flushed (``tail -f`` shows them);
records are whole lines (CSV fields holding a newline are quoted), so a run killed at any
instant leaves complete records followed by at most one cut record at the very end.
:func:`scan_output` reads such a file back: it validates every record, finds the cut tail (no
final newline, or an unbalanced CSV quote), and returns the paths already done as a sorted array
of 64-bit hashes (8 bytes per image, so resuming a million images costs 8 MB, not a set of
strings). :func:`merge_outputs` writes the parts of a sharded run as one file in input order.

``MDAN_ZOO_PREDICT_KILL=RANK:BATCH`` (for tests) makes that rank write half of that batch's
records, flush, and ``SIGKILL`` itself: a real kill that leaves a cut line behind.

Many processes (``torchrun ... -m mdan_zoo predict ... --output FILE``): every rank walks the same inputs and keeps every ``world``-th one (input ``i`` goes to rank
``i % world``), predicts them and appends its records to its own part,
``FILE.part<rank>-of-<world>``. When all ranks are done, rank 0 merges the parts into ``FILE`` in
input order (:func:`merge_outputs`) and removes them. The process
group is plain ``torch.distributed`` from torchrun's environment: nccl on GPUs, gloo on CPUs,
plus a gloo group for the small messages (counts, barriers), so they never touch a GPU.
If a rank dies, torchrun stops the others and names it; the parts stay, and ``--resume``
(with any number of processes, one included) carries on from them.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import logging
import os
import re
import signal
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import OutputError
from ._results import Prediction

__all__ = [
    "FORMATS",
    "OutputError",
    "PART_SUFFIX",
    "ResultWriter",
    "Scan",
    "Shard",
    "csv_header",
    "existing_parts",
    "merge_outputs",
    "output_format",
    "part_path",
    "scan_output",
    "shard_from_env",
    "source_key",
    "write_predictions",
]

log = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
"""``--output`` suffix -> format."""

KILL_ENV = "MDAN_ZOO_PREDICT_KILL"

PART_SUFFIX = re.compile(r"\.part(\d+)-of-(\d+)$")
"""The end of a part's name, ``FILE.part<rank>-of-<world>`` (its format is FILE's)."""


def output_format(path: str | os.PathLike[str]) -> str:
    """``"jsonl"`` or ``"csv"`` from the file's suffix; :class:`OutputError` otherwise."""
    suffix = Path(PART_SUFFIX.sub("", Path(path).name)).suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(
            f"--output {path}: unknown format {suffix or '(no suffix)'!r}; "
            f"name the file {', '.join('*' + s for s in FORMATS)}"
        )
    return FORMATS[suffix]


def source_key(source: str) -> int:
    """A 64-bit hash of an image's source path (how resume and merge recognise it)."""
    digest = hashlib.blake2b(source.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def csv_header(levels: Sequence[str], *, attention: bool = False) -> list[str]:
    """The CSV columns: the answer, then the top-1 label and P_O of every level, then the error."""
    cols = ["source", "ok", "label", "joint_prob", "consistent", "argmax_consistent"]
    for level in levels:
        cols += [f"{level}.label", f"{level}.prob"]
    return cols + (["attention"] if attention else []) + ["error"]


def _record(pred: Prediction, attention: str | None) -> dict[str, Any]:
    data = pred.to_dict()
    if attention is not None:
        data["attention"] = attention
    return data


def _csv_row(data: dict[str, Any], header: Sequence[str]) -> list[str]:
    row = {key: "" for key in header}
    row.update(source=data["source"], ok="true" if data["ok"] else "false")
    if data["ok"]:
        row.update(
            label=data["label"],
            joint_prob=repr(data["joint_prob"]),
            consistent=" > ".join(c["label"] for c in data["consistent"]),
            argmax_consistent="true" if data["argmax_consistent"] else "false",
        )
        for lv in data["levels"]:
            row[f"{lv['level']}.label"] = lv["label"]
            row[f"{lv['level']}.prob"] = repr(lv["prob"])
    else:
        row["error"] = data["error"]
    if "attention" in data and "attention" in row:
        row["attention"] = data["attention"]
    return [row[key] for key in header]


def _csv_line(fields: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(fields)
    return buf.getvalue()


def _line(fmt: str, header: Sequence[str], pred: Prediction, attention: str | None) -> str:
    data = _record(pred, attention)
    try:  # strict JSON; ASCII escapes keep odd file names (lone surrogates) writable
        text = json.dumps(data, allow_nan=False)
    except ValueError:
        bad = Prediction(source=pred.source, error="the result holds NaN or infinite numbers")
        data = _record(bad, None)
        text = json.dumps(data)
    if fmt == "jsonl":
        return text + "\n"
    return _csv_line(_csv_row(data, header))


class ResultWriter:
    """Appends records to an output file (JSON lines or CSV), one flush per batch.

    Args:
        path: the file; created if missing (with the CSV header), appended to otherwise.
        header: the CSV columns (:func:`csv_header`); ignored for JSON lines.
        rank: this process's rank (only for the ``MDAN_ZOO_PREDICT_KILL`` test hook).
    """

    def __init__(self, path: Path, *, header: Sequence[str], rank: int = 0) -> None:
        self.path = path
        self.format = output_format(path)
        self.header = list(header)
        self.rank = rank
        self.batches = 0
        empty = not path.exists() or path.stat().st_size == 0
        self._fh: IO[str] = open(  # noqa: SIM115 - closed by close()
            path, "a", encoding="utf-8", errors="surrogateescape", newline=""
        )
        if self.format == "csv" and empty:
            self._fh.write(_csv_line(self.header))
            self._fh.flush()
        self._kill_at = _kill_batch(rank)

    def line(self, pred: Prediction, attention: str | None = None) -> str:
        """One record as text, newline included; a non-finite number becomes an error record."""
        return _line(self.format, self.header, pred, attention)

    def write_batch(self, lines: Iterable[str]) -> None:
        """Append one batch of records and flush, so a reader sees whole batches."""
        text = "".join(lines)
        self.batches += 1
        if self._kill_at == self.batches:
            self._fh.write(text[: max(1, len(text) // 2)])
            self._fh.flush()
            os.fsync(self._fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        self._fh.write(text)
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def write_predictions(
    path: str | os.PathLike[str], predictions: Iterable[Prediction], *, levels: Sequence[str]
) -> Path:
    """Write ``predictions`` to ``path`` (``.jsonl`` / ``.ndjson`` / ``.csv``) exactly as
    ``mdan-zoo predict --output`` writes them (its CSV columns from the model's ``levels``), in
    one go: a temporary file renamed onto ``path``, so no half file is ever seen there."""
    from .._io import atomic_write_bytes

    target = Path(path)
    fmt = output_format(target)  # an unknown suffix is refused before anything is written
    header = csv_header(levels)
    lines = [_csv_line(header)] if fmt == "csv" else []
    lines += [_line(fmt, header, p, None) for p in predictions]
    atomic_write_bytes(target, "".join(lines).encode("utf-8", "surrogateescape"))
    return target


def _kill_batch(rank: int) -> int | None:
    spec = os.environ.get(KILL_ENV, "")
    if not spec:
        return None
    who, _, batch = spec.partition(":")
    return int(batch) if who.strip() == str(rank) and batch.strip().isdigit() else None


@dataclass
class Scan:
    """What an existing output file holds.

    Attributes:
        keys: :func:`source_key` of every complete record, sorted (for :meth:`done`).
        records: complete records; ``failed``: those with ``"ok": false``.
        good_end: the byte offset after the last complete record.
        cut: whether a cut record (a killed write) follows ``good_end``.
    """

    keys: np.ndarray
    records: int = 0
    failed: int = 0
    good_end: int = 0
    cut: bool = False

    def done(self, source: str) -> bool:
        """Whether ``source`` already has a record."""
        key = np.uint64(source_key(source))
        i = int(np.searchsorted(self.keys, key))
        return i < len(self.keys) and self.keys[i] == key


def _raw_records(fh: IO[bytes], fmt: str) -> Iterator[tuple[int, bytes, bool]]:
    """``(offset, bytes, complete)`` per record; the last may be incomplete (a cut write)."""
    offset = 0
    pending = b""
    start = 0
    for line in fh:
        if not pending:
            start = offset
        offset += len(line)
        pending += line
        balanced = fmt == "jsonl" or pending.count(b'"') % 2 == 0
        if line.endswith(b"\n") and balanced:
            yield start, pending, True
            pending = b""
    if pending:
        yield start, pending, False


def _parse(raw: bytes, fmt: str, header: Sequence[str]) -> tuple[str, bool]:
    text = raw.decode("utf-8", "surrogateescape")  # a file name that is not UTF-8
    if fmt == "jsonl":
        data = json.loads(text, parse_constant=_no_constant)
        if not isinstance(data, dict) or not isinstance(data.get("source"), str):
            raise ValueError("no 'source' field")
        if not isinstance(data.get("ok"), bool):
            raise ValueError("no true/false 'ok' field")
        return data["source"], data["ok"]
    (fields,) = list(csv.reader(io.StringIO(text)))
    if len(fields) != len(header) or fields[1] not in ("true", "false"):
        raise ValueError(f"{len(fields)} fields where the header has {len(header)}")
    return fields[0], fields[1] == "true"


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def iter_output(
    path: Path, *, header: Sequence[str]
) -> Iterator[tuple[int, int, str, bool] | tuple[int, None, None, None]]:
    """``(offset, length, source, ok)`` of every complete record of ``path``, in file order;
    a cut record at the end comes last as ``(offset, None, None, None)``. A damaged record
    anywhere else, or a CSV header other than ``header``, raises :class:`OutputError`."""
    fmt = output_format(path)
    with open(path, "rb") as fh:
        number = 0
        for offset, raw, complete in _raw_records(fh, fmt):
            number += 1
            if not complete:
                yield offset, None, None, None
                return
            if fmt == "csv" and number == 1:
                got = next(csv.reader(io.StringIO(raw.decode("utf-8", "replace"))), [])
                if got != list(header):
                    raise OutputError(
                        f"{path}: its CSV columns ({', '.join(got)}) are not the ones this run "
                        f"writes ({', '.join(header)}): it was written by another model or "
                        "with other options; choose another --output"
                    )
                continue
            try:
                source, ok = _parse(raw, fmt, header)
            except (ValueError, UnicodeDecodeError, csv.Error) as err:
                raise OutputError(
                    f"{path}, record {number} (byte {offset}): not a record of mdan-zoo predict "
                    f"({err}); the file was changed by something else: repair or remove that "
                    "record, or choose another --output"
                ) from None
            yield offset, len(raw), source, ok


def scan_output(path: Path, *, header: Sequence[str], repair: bool = False) -> Scan:
    """Read back an output file (see :class:`Scan`); with ``repair`` a cut record at the end
    is removed (its image is then predicted again)."""
    keys = array("Q")
    scan = Scan(keys=np.zeros(0, dtype=np.uint64))
    for offset, length, source, ok in iter_output(path, header=header):
        if length is None or source is None:
            scan.cut = True
            break
        keys.append(source_key(source))
        scan.records += 1
        scan.failed += not ok
        scan.good_end = offset + length
    if scan.good_end == 0 and output_format(path) == "csv" and not scan.cut:
        scan.good_end = path.stat().st_size  # the header alone
    if scan.cut and repair:
        log.warning(
            "%s ends with a record cut off by a killed run (byte %d on): removed it; its "
            "image is predicted again",
            path,
            scan.good_end,
        )
        os.truncate(path, scan.good_end)
    scan.keys = np.sort(np.frombuffer(keys, dtype=np.uint64)) if keys else scan.keys
    return scan


def _read_record(fh: IO[bytes], offset: int, length: int) -> bytes:
    fh.seek(offset)
    return fh.read(length)


@dataclass
class MergeStats:
    """What :func:`merge_outputs` wrote."""

    records: int = 0
    failed: int = 0
    missing: int = 0
    kept_extra: int = 0


def merge_outputs(
    target: Path, parts: Sequence[Path], order: Iterable[str], *, header: Sequence[str]
) -> MergeStats:
    """Write ``target`` with one record per name of ``order`` (the inputs, in input order),
    taken from ``parts`` (and from ``target`` itself when it exists: a resumed run), then
    the records of the old ``target`` that name no input. Atomic: a temporary file renamed
    onto ``target``. Keeps 21 bytes per record in memory (hash, place, length, ok)."""
    fmt = output_format(target)
    sources = ([target] if target.exists() else []) + [p for p in parts if p != target]
    keys, places, lengths, oks = array("Q"), array("Q"), array("I"), array("B")
    for k, path in enumerate(sources):
        for offset, length, source, ok in iter_output(path, header=header):
            if length is None or source is None:
                break  # a cut record: its image is missing, and reported
            keys.append(source_key(source))
            places.append((k << 48) | offset)
            lengths.append(length)
            oks.append(bool(ok))
    key_arr = np.frombuffer(keys, dtype=np.uint64) if keys else np.zeros(0, np.uint64)
    order_idx = np.argsort(key_arr, kind="stable")  # ties keep file order: old target first
    key_arr = key_arr[order_idx]
    used = np.zeros(len(keys), dtype=bool)
    stats = MergeStats()
    handles = [open(p, "rb") for p in sources]  # noqa: SIM115
    tmp = target.with_name(f".{target.name}.merge-{os.getpid()}.tmp")

    def copy(j: int, out: IO[bytes]) -> None:
        place = places[j]
        out.write(_read_record(handles[place >> 48], place & ((1 << 48) - 1), lengths[j]))

    try:
        with open(tmp, "wb") as out:
            if fmt == "csv":
                out.write(_csv_line(header).encode("utf-8"))
            for name in order:
                key = np.uint64(source_key(name))
                lo = int(np.searchsorted(key_arr, key))
                if lo >= len(key_arr) or key_arr[lo] != key:
                    stats.missing += 1
                    continue
                hi = int(np.searchsorted(key_arr, key, "right"))
                used[order_idx[lo:hi]] = True  # repeats of this image are dropped
                j = int(order_idx[lo])
                copy(j, out)
                stats.records += 1
                stats.failed += not oks[j]
            if sources and sources[0] == target:  # the old file's records that name no input
                for extra in np.flatnonzero(~used).tolist():
                    if places[extra] >> 48 == 0:
                        copy(extra, out)
                        stats.kept_extra += 1
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        for fh in handles:
            fh.close()
        tmp.unlink(missing_ok=True)
    return stats


# Sharding: many processes writing one output


@dataclass
class Shard:
    """This process's place in a torchrun job (``world == 1``: a plain single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None  # the gloo group for counts and barriers, once started
    started: bool = False

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def mine(self, index: int) -> bool:
        """Whether input number ``index`` is this rank's."""
        return index % self.world == self.rank

    def device(self, device: str | torch.device | None) -> str | torch.device | None:
        """``--device cuda`` means this rank's GPU (``cuda:LOCAL_RANK``)."""
        if self.sharded and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def start(self, device: str | torch.device | None) -> None:
        """Join the process group (nccl when this rank runs on a GPU, gloo otherwise)."""
        if not self.sharded or self.started:
            return
        on_gpu = device is not None and torch.device(device).type == "cuda"
        if on_gpu:
            torch.cuda.set_device(torch.device(device or "cuda"))
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if on_gpu else "gloo", timeout=datetime.timedelta(hours=2)
            )
            self.started = True
        self.group = dist.new_group(backend="gloo") if on_gpu else dist.group.WORLD

    def barrier(self) -> None:
        if self.sharded:
            dist.barrier(group=self.group)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (``[value]`` when not sharded)."""
        if not self.sharded:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value, group=self.group)
        return out

    def stop(self) -> None:
        if self.started and dist.is_initialized():
            dist.destroy_process_group()
            self.started = False


def shard_from_env() -> Shard:
    """The rank and world size torchrun set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    return Shard(rank=rank, world=world, local_rank=local)


def part_path(output: Path, rank: int, world: int) -> Path:
    """Where rank ``rank`` of ``world`` writes its records: ``FILE.part<rank>-of-<world>``."""
    return output.with_name(f"{output.name}.part{rank}-of-{world}")


def existing_parts(output: Path) -> list[Path]:
    """Parts of ``output`` left by a sharded run (any number of ranks), sorted."""
    if not output.parent.is_dir():
        return []
    prefix = output.name
    found = []
    with os.scandir(output.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and PART_SUFFIX.fullmatch(entry.name[len(prefix) :]):
                found.append(output.parent / entry.name)
    return sorted(found, key=lambda p: tuple(int(g) for g in PART_SUFFIX.findall(p.name)[0][::-1]))
