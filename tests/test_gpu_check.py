"""``benchmarks/gpu_check.py --smoke`` runs every section of the GPU check on the CPU (gloo,
ResNet-18, 32 px, a few steps), so the check cannot rot before a GPU comes (issue 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "gpu_check.json").read_text())
    sections = record["sections"]
    assert list(sections) == ["env", "gpu_tests", "train", "decode", "models"]
    assert all(s["ok"] for s in sections.values()), sections
    gpu_tests = sections["gpu_tests"]  # no CUDA here: every test collected, and skipped
    assert gpu_tests["skipped"] >= 6 and gpu_tests["passed"] == gpu_tests["failed"] == 0
    train = sections["train"]
    assert (train["backend"], train["world"]) == ("gloo", 1)
    assert train["roundtrip_bitwise"] and train["resume_bitwise"]
    assert [r["epoch"] for r in train["runs"]["B"]] == [1, 2]
    assert train["optimizer_steps"] == 2 * 2 + 2 * 2 + 2
    for hist in train["runs"].values():
        for row in hist:
            assert 0 <= row["data_wait_share"] < 1 and row["loader_images_per_s"] > 0
    assert sections["decode"]["grey_level_diff"]["max"] <= 1.0
    models = sections["models"]
    for key in ("train", "infer_eager", "infer_channels_last", "infer_compile", "infer_bf16"):
        assert models["rows"][key]["per_mac"] > 0, (key, models["rows"][key])
    assert models["largest_batch"]["MDAN FI"]["fits"] >= 8
    table = (out / "gpu_check.md").read_text()
    assert "| train | ok |" in table and "inference images/s, compile" in table
