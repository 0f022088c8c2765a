"""The promises of the README and the packaging: two commands, CI runs the test one, pins hold,
and every public name the issues give exists."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
import torch
import torchvision

import mdan_zoo
from mdan_zoo.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    quick = (
        ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    )
    return re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)


def test_readme_has_exactly_two_quick_start_commands_and_ci_runs_the_second() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c.strip() for c in commands), "each command is one line"
    assert "mdan_zoo demo" in commands[0]
    assert "pytest" in commands[1] and "dataset-fashion-mnist" in commands[1]
    ci = ROOT.joinpath(".ci/run").read_text()
    assert "<!-- test-command -->" in ci and "README.md" in ci


def test_torch_pins_admit_the_installed_pair() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    reqs = cfg["options"]["install_requires"]
    for name, mod in (("torch", torch), ("torchvision", torchvision)):
        spec = re.search(rf"^\s*{name}([<>=!,.\d\s]+)$", reqs, flags=re.M)
        assert spec, f"{name} is not pinned in setup.cfg"
        upper = re.search(r"<=\s*([\d.]+)", spec.group(1))
        assert upper, f"{name} needs an upper bound that this machine's wheel satisfies"
        have = tuple(int(p) for p in mod.__version__.split("+")[0].split(".")[:3])
        want = tuple(int(p) for p in upper.group(1).split("."))
        assert have <= want


@pytest.mark.parametrize(
    "command", ["list", "info", "download", "train", "eval", "export", "push", "demo", "predict"]
)
def test_cli_has_every_command_the_issues_name(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert command in sub.choices  # type: ignore[attr-defined]


def test_public_names_are_exported_and_documented() -> None:
    docs = " ".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [n for n in mdan_zoo.__all__ if not n.startswith("__") and n not in docs]
    assert not missing, f"public names without a docs page: {missing}"
    for name in mdan_zoo.__all__:
        assert hasattr(mdan_zoo, name), name
