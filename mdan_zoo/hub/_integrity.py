"""Proof that a weights file is the one its registry entry or config.json names (sha256).

Hashing a large file on every load costs time, so a file from the Hub cache that was verified
once is recognised by a small record of its :func:`~mdan_zoo.hub._checkpoint.stat_key` (device,
inode, size, mtime and ctime). The records live in huggingface_hub's assets folder
(``cached_assets_path("mdan_zoo", "verified")``, under ``HF_ASSETS_CACHE`` /
``HF_HOME/assets``), never inside the Hub cache, whose layout belongs to huggingface_hub. Local
files are hashed on every load and nothing is written for them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

from .._io import atomic_write_text
from ._checkpoint import Checkpoint, ChecksumError, sha256_file, stat_key

__all__ = ["assets_dir", "records_dir", "verify"]

logger = logging.getLogger(__name__)


def assets_dir() -> Path:
    """huggingface_hub's assets folder, read from the environment now (it reads it at import)."""
    if os.environ.get("HF_ASSETS_CACHE"):
        return Path(os.environ["HF_ASSETS_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "assets"
    from huggingface_hub import constants

    return Path(constants.HF_ASSETS_CACHE)


def records_dir() -> Path:
    """Where "already verified" records live (created on first use)."""
    from huggingface_hub import cached_assets_path

    return cached_assets_path("mdan_zoo", namespace="verified", assets_dir=assets_dir())


def _record_name(path: Path, digest: str) -> str:
    where = hashlib.sha256(os.path.realpath(path).encode("utf-8", "surrogateescape"))
    return f"{digest}-{where.hexdigest()[:16]}"


def verify(ckpt: Checkpoint, expected: str | None, *, on_read: bool = False) -> Checkpoint:
    """Check the weights' sha256 against the registry (``expected``) or config.json; raise
    :class:`ChecksumError` on a mismatch. Returns ``ckpt`` with ``verified_stat`` set, so that
    reading it later refuses a file changed in between.

    ``on_read=True`` leaves the hashing to :meth:`Checkpoint.state_dict`, which hashes the bytes
    as it reads them (one pass over the file, not two) and raises the same error; callers that
    read the tensors ask for it, those that only fetch or check (``download``) do not.

    A Hub checkpoint verified before is not hashed again while its stat key is unchanged; any
    write to the file, even one that restores size and mtime, changes its ctime.
    """
    recorded = None
    if ckpt.config is not None:
        recorded = (ckpt.config.get("weights") or {}).get("sha256")
    want = expected or recorded
    if not want:
        return ckpt
    path = ckpt.weights_path
    before = stat_key(path)
    record = records_dir() / _record_name(path, want) if ckpt.repo_id else None
    try:
        if record is not None and record.read_text(encoding="utf-8") == before:
            return dataclasses.replace(ckpt, verified_stat=before)
    except OSError:
        pass

    def check(got: str, stat_before: str) -> None:
        _check(ckpt, want, got, stat_before, record, from_registry=bool(expected))

    if on_read:
        return dataclasses.replace(ckpt, check_on_read=check)
    check(sha256_file(path), before)
    return dataclasses.replace(ckpt, verified_stat=before)


def _check(
    ckpt: Checkpoint, want: str, got: str, before: str, record: Path | None, *, from_registry: bool
) -> None:
    """Raise :class:`ChecksumError` unless ``got`` is ``want`` and the file kept its stat key
    ``before`` while it was hashed; record a verified Hub file."""
    path = ckpt.weights_path
    if got != want:
        real = Path(os.path.realpath(path))
        where = "the registry" if from_registry else "its config.json"
        fix = (
            f"delete it (`rm '{real}'`, or `hf cache delete` / remove the repository folder from "
            "the Hub cache) and download again (`mdan-zoo download NAME --force`)"
            if ckpt.repo_id
            else "save or copy the checkpoint again"
        )
        raise ChecksumError(
            f"sha256 mismatch for {real} (from {ckpt.source}): expected {want} ({where}), got "
            f"{got or 'an unreadable file'}. The file is corrupted or was replaced; {fix}"
        )
    if stat_key(path) != before:
        raise ChecksumError(
            f"{path} changed while its sha256 was being computed; load it again, and if it keeps "
            "changing find what writes to it"
        )
    if record is not None:
        try:
            atomic_write_text(record, before)
        except OSError:  # a read-only assets folder only costs a re-hash next time
            logger.debug("cannot record verification of %s", path)
