"""Atomic writes: readable results, nothing half-written left behind on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mdan_zoo._io import atomic_path, atomic_write_bytes


def test_written_file_is_world_readable_and_complete(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "weights.bin"
    atomic_write_bytes(target, b"x" * 1000)
    assert target.read_bytes() == b"x" * 1000
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["weights.bin"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
