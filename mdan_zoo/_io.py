"""Atomic file writes: a crash or a full disk never leaves half a file under the final name.

A full disk, a read-only or forbidden folder is a :class:`~mdan_zoo.errors.StorageError`
naming the path and the fix; locks for outputs that two processes could write at once."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import StorageError

__all__ = [
    "OutputLockedError",
    "exclusive_lock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_part",
    "file_parts",
]

_NOT_IN_NAMES = re.compile(r"[^\w.-]+")


class OutputLockedError(FileExistsError):
    """Another process holds the lock of an output file or folder."""


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike[str], *, what: str) -> Iterator[None]:
    """Hold the lock of the output ``target`` (a file or folder) while the block runs.

    The lock is ``flock`` on a hidden ``.<name>.lock`` beside ``target``: a second writer gets
    :class:`OutputLockedError` at once, and the kernel drops the lock when its holder dies (even
    by ``kill -9``), so a killed run never blocks the next. The lock file is removed on release.
    Without ``fcntl`` (Windows) there is no lock: two writers are the user's to avoid.
    """
    target = Path(target)
    lock = target.with_name(f".{target.name}.lock")
    try:
        import fcntl
    except ImportError:
        yield
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"another mdan-zoo {what} is writing {target} right now (it holds {lock}): "
                "wait for it to finish, or choose another output; nothing was changed"
            ) from None
        try:  # the last holder may have removed the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _storage(err: BaseException, path: Path) -> BaseException:
    """A full disk, a read-only folder... as :class:`StorageError` naming ``path``; other
    errors as they are."""
    code = getattr(err, "errno", None)
    wrapped = type(err).__name__ == "SafetensorError" and "os error" in str(err)
    if isinstance(err, StorageError) or not (wrapped or code in _STORAGE_ERRNOS):
        return err
    return StorageError.of(err, path, "cannot write")


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Use it for writers that want a file name (``safetensors.torch.save_file``, ``Image.save``).
    ``replace=False`` never replaces an existing ``path`` (:class:`FileExistsError`, even when
    another process creates it meanwhile: the file is published with a hard link).
    """
    path = Path(path)
    if not replace and path.exists():
        raise FileExistsError(f"{path} already exists: not replaced")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _storage(err, path) from None
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except Exception as err:  # noqa: BLE001 - a full disk inside the writer (safetensors)
            storage = _storage(err, path)
            if storage is err:
                raise
            raise storage from None
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shared checkpoints must be readable
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} already exists: not replaced") from None
            except OSError:  # no hard links on this file system: check, then rename
                if path.exists():
                    raise FileExistsError(f"{path} already exists: not replaced") from None
                os.replace(tmp, path)
    except OSError as err:
        raise _storage(err, path) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file via a temporary file in the same folder and an atomic rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _storage(err, path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; written files must be readable by others
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _storage(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_part(name: str, *, fallback: str = "x", limit: int = 80) -> str:
    """``name`` (a level, label or file stem from a taxonomy, a checkpoint or an input) as one
    safe part of a file name: letters, digits, ``_``, ``.`` and ``-`` only, no leading dot, at
    most ``limit`` characters. Every name that becomes a path passes here, so none can hold a
    separator, ``..``, a control character or an absolute path."""
    part = _NOT_IN_NAMES.sub("_", name).lstrip(".")[:limit]
    return part or fallback


def file_parts(names: list[str] | tuple[str, ...]) -> list[str]:
    """:func:`file_part` of each name, made unique (``_2``, ``_3``... on a clash, case ignored)."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        part, n = file_part(name), 1
        while part.lower() in seen:
            n += 1
            part = f"{file_part(name)}_{n}"
        seen.add(part.lower())
        out.append(part)
    return out
