"""Every script in benchmarks/ runs (``--quick``), so none can rot between the runs that fill
docs/benchmarks.md (issue 21). Each runs in this process (no second torch import) with its
tables checked for numbers; the measurements themselves live in the scripts, not here."""

from __future__ import annotations

import os
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
# the GPU check's CPU mode is --smoke (it trains through torchrun): tests/test_gpu_check.py runs it
SMOKED = {"gpu_check.py"}
ROW = re.compile(r"^\|.*\d+\.\d+.*\|$", re.MULTILINE)  # a table row with a decimal number


def test_every_script_is_covered() -> None:
    assert set(SCRIPTS) >= {"load.py", "taxonomy_size.py", "train_memory.py", "forward.py"}
    for name in SCRIPTS:
        flag = "--smoke" if name in SMOKED else "--quick"
        assert flag in (ROOT / "benchmarks" / name).read_text(), f"{name} has no {flag}"
    assert "--smoke" in (ROOT / "tests" / "test_gpu_check.py").read_text()


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - SMOKED))
def test_quick_mode_runs_and_prints_its_tables(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", [name, "--quick", "--threads", "1"])
    # a script runs as its own program would: what it sets in the environment (load.py sets
    # HF_HUB_OFFLINE) or in torch (the thread count) must not reach the tests after it
    environ, threads = dict(os.environ), torch.get_num_threads()
    try:
        runpy.run_path(str(ROOT / "benchmarks" / name), run_name="__main__")
    finally:
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert ROW.search(out), f"{name} printed no table of measurements:\n{out[-2000:]}"
    assert "nan" not in out.lower().replace("nanos", ""), out[-2000:]
