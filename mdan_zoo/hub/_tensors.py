"""Safetensors files read and written: one pass that hashes what it reads, and headers whose
metadata is written in one order so that the same weights always give the same bytes.

:mod:`._checkpoint` says what a checkpoint is; this module reads and writes its tensor file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import ChecksumError, WeightsError

__all__ = [
    "HashedReader",
    "hashed_reader",
    "read_hashed_state_dict",
    "read_state_dict",
    "sort_header_metadata",
    "stat_key",
    "unreadable",
]


def stat_key(path: str | os.PathLike[str]) -> str:
    """What identifies one state of a file: device, inode, size, mtime and ctime (ns).

    ``st_ctime_ns`` changes on every write and on every ``utime``, so even a write that puts
    the old size and mtime back is seen (the mtime alone can be restored by anyone).
    """
    st = os.stat(path)
    return (
        f"{os.path.realpath(path)}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|"
        f"{st.st_ctime_ns}"
    )


def unreadable(path: Path, err: BaseException) -> WeightsError:
    return WeightsError(
        f"{path} is not a readable safetensors file ({err}); it is probably truncated or "
        f"corrupted (an interrupted download or copy). Delete it (`rm '{path}'`) and download or "
        "save it again"
    )


def read_state_dict(
    path: str | os.PathLike[str], *, unchanged_since: str | None = None
) -> dict[str, Tensor]:
    """All tensors of a safetensors file, on the CPU, in memory the caller owns.

    Nothing stays memory-mapped: overwriting or truncating the file later never changes (or
    crashes, SIGBUS) a model built from it. ``unchanged_since`` (a :func:`stat_key`) refuses a
    file that changed since its sha256 was checked. A damaged file raises :class:`WeightsError`.
    """
    import inspect

    from safetensors.torch import load_file

    path = Path(path)
    try:
        if "backend" in inspect.signature(load_file).parameters:  # safetensors >= 0.8
            state = load_file(path, backend="pread")  # read(2) into owned buffers, no mmap
        else:  # older safetensors maps the file: copy each tensor out of the mapping
            state = {k: v.clone() for k, v in load_file(path).items()}
    except MemoryError:  # too big for this machine: the file is fine, never say delete it
        raise
    except Exception as err:
        raise unreadable(path, err) from None
    if unchanged_since is not None and stat_key(path) != unchanged_since:
        raise ChecksumError(
            f"{path} changed after its sha256 was checked (something wrote to it while it was "
            "being loaded); load it again, and if it keeps changing find what writes to it"
        )
    return state


_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip
_ITEMSIZE = {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2,
             "int16": 2, "int8": 1, "uint8": 1, "bool": 1}  # fmt: skip
_HASH_BLOCK = 256 * 1024  # read and hashed while it is still in the CPU cache
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class _Unsupported(Exception):
    """A valid safetensors feature the one-pass reader does not handle (e.g. float8)."""


def read_hashed_state_dict(
    path: str | os.PathLike[str],
    *,
    on_header: Callable[[dict[str, tuple[int, ...]]], None] | None = None,
) -> tuple[dict[str, Tensor], str]:
    """All tensors of a safetensors file and the sha256 of its bytes, in one pass (see
    :func:`hashed_reader`, which this runs to the end). The caller compares the digest before
    using the tensors. ``on_header`` gets every tensor's shape before the tensors are read. A
    damaged file raises :class:`WeightsError`."""
    reader = hashed_reader(path)
    try:
        shapes = next(reader)
        if on_header is not None:
            on_header(shapes)
        next(reader)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        reader.close()
    raise AssertionError("hashed_reader yields once")  # pragma: no cover


HashedReader = Generator[dict[str, tuple[int, ...]], None, tuple[dict[str, Tensor], str]]


def hashed_reader(path: str | os.PathLike[str]) -> HashedReader:
    """One pass over a safetensors file in two steps, in the caller's thread: the first
    ``next()`` reads the header and gives every tensor's shape (a model can be built from it
    before any tensor is read); the second reads every tensor straight into memory of its own
    (no memory map, no second copy) in blocks hashed as they arrive, and stops with ``(state,
    sha256 of the file's bytes)`` as ``StopIteration.value``. ``close()`` in between stops
    reading. A damaged file raises :class:`WeightsError` from the step that meets it."""
    path = Path(path)
    try:
        with open(path, "rb", buffering=0) as fh:
            digest = hashlib.sha256()
            try:
                entries = _read_header(fh, digest)
            except _Unsupported:  # hash the bytes safetensors itself then deserialises
                from safetensors.torch import load

                fh.seek(0)
                data = fh.read()
                state = load(data)
                yield {k: tuple(v.shape) for k, v in state.items()}
                return state, hashlib.sha256(data).hexdigest()
            yield {name: tuple(shape) for name, _, shape, _ in entries}
            return _read_tensors(fh, entries, digest), digest.hexdigest()
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, SafetensorError...
        raise unreadable(path, err) from None


def _read_header(fh: Any, digest: Any) -> list[tuple[str, str, list[int], int]]:
    size = os.fstat(fh.fileno()).st_size
    head = _read_exact(fh, 8)
    (length,) = struct.unpack("<Q", head)
    if length > min(_MAX_HEADER, size - 8):
        raise ValueError(f"header length {length} does not fit a file of {size} bytes")
    raw = _read_exact(fh, length)
    digest.update(head)
    digest.update(raw)
    return _tensor_entries(raw, size - 8 - length)


def _read_tensors(
    fh: Any, entries: list[tuple[str, str, list[int], int]], digest: Any
) -> dict[str, Tensor]:
    import torch

    state: dict[str, Tensor] = {}
    for name, dtype, shape, nbytes in entries:
        tensor = torch.empty(shape, dtype=getattr(torch, dtype))
        if nbytes:
            view = tensor.view(-1).view(torch.uint8).numpy().data  # a uint8 memoryview
            for start in range(0, nbytes, _HASH_BLOCK):
                block = view[start : start + _HASH_BLOCK]
                _readinto_exact(fh, block)
                digest.update(block)
        state[name] = tensor
    if fh.read(1):
        raise ValueError("the file goes on after its last tensor")
    return state


def _tensor_entries(raw: bytes, data_size: int) -> list[tuple[str, str, list[int], int]]:
    """(name, torch dtype, shape, bytes) of every tensor, in file order, checked as
    safetensors checks them: the tensors tile the data section exactly, each as long as its
    dtype and shape say."""
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise ValueError(f"tensor {name!r} has a malformed header entry")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if isinstance(dtype, str) and dtype not in _DTYPES:
            raise _Unsupported(dtype)
        if (
            dtype not in _DTYPES
            or not isinstance(shape, list)
            or not all(type(d) is int and d >= 0 for d in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
        ):
            raise ValueError(f"tensor {name!r} has a malformed header entry")
        nbytes = math.prod(shape) * _ITEMSIZE[_DTYPES[dtype]]
        if offsets[1] - offsets[0] != nbytes:
            raise ValueError(
                f"tensor {name!r} has {nbytes} bytes by its shape, {offsets} in the file"
            )
        entries.append((offsets[0], name, _DTYPES[dtype], shape, nbytes))
    entries.sort()
    at = 0
    for start, name, _, _, nbytes in entries:
        if start != at:
            raise ValueError(f"tensor {name!r} starts at byte {start}, expected {at}")
        at += nbytes
    if at != data_size:
        raise ValueError(f"the tensors hold {at} bytes but the data section has {data_size}")
    return [(name, dtype, shape, nbytes) for _, name, dtype, shape, nbytes in entries]


def _read_exact(fh: Any, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ValueError(f"the file ends after {len(data)} of {n} header bytes (truncated)")
    return data


def _readinto_exact(fh: Any, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            raise ValueError("the file ends inside a tensor (truncated)")
        got += n


def sort_header_metadata(path: Path) -> None:
    """Rewrite a safetensors file's header with its ``__metadata__`` keys sorted, in place.

    safetensors keeps the metadata in a hash map and writes its keys in an order that changes
    from call to call, so the same tensors and metadata gave different bytes (and sha256) on
    each save. The sorted header holds the same JSON text, reordered: it has the same length
    and replaces the old one where it stands (a header that would change length, which valid
    input never gives, is an error rather than a shifted file).
    """
    with open(path, "r+b") as fh:
        length = int.from_bytes(fh.read(8), "little")
        raw = fh.read(length)
        header = json.loads(raw)
        meta = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
        ordered.update(header)  # the tensors, in safetensors' own (deterministic) order
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) != len(raw.rstrip(b" ")):
            raise WeightsError(f"{path}: cannot sort the safetensors header in place")
        fh.seek(8)
        fh.write(text.ljust(length, b" "))
