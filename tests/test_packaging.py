"""The promises of the README and the packaging: two commands, CI runs the test one, pins hold,
and every public name the issues give exists."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

import mdan_zoo
from mdan_zoo.cli import build_parser
from mdan_zoo.train_config import list_configs

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
    "command",
    [
        "list",
        "info",
        "download",
        "train",
        "eval",
        "export",
        "push",
        "demo",
        "predict",
        "report",
        "configs",
    ],  # fmt: skip
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


# ------------------------------------------------------------------ configs ship in the package
def test_no_config_folder_outside_the_package() -> None:
    """The configs live in mdan_zoo/configs only: a second copy would drift."""
    assert not (ROOT / "configs").exists()
    assert sorted(p.name for p in (ROOT / "mdan_zoo" / "configs").iterdir()) == sorted(
        f"{n}.json" for n in list_configs()
    )


def test_configs_by_name_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdan_zoo.cli import main
    from mdan_zoo.config import ConfigError
    from mdan_zoo.train_config import TrainConfig

    monkeypatch.chdir(tmp_path)
    assert TrainConfig.from_file("fi").name == "mdan_fi"
    assert TrainConfig.from_file("webemo.json").dataset == "webemo"
    (tmp_path / "fi.json").write_text('{"name": "mine", "epochs": 2}')
    assert TrainConfig.from_file("fi.json").name == "mine"  # a file of that name wins
    with pytest.raises(ConfigError, match=r"did you mean 'fi'\?.*abstract, artphoto"):
        TrainConfig.from_file("fii")
    with pytest.raises(ConfigError, match=r"configs/fi\.json' does not exist.*mdan-zoo train fi"):
        TrainConfig.from_file("configs/fi.json")  # the old path says where the configs went
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name in list_configs():
        cfg = TrainConfig.from_file(name)
        assert any(
            line.split()[:3] == [name, cfg.dataset, cfg.taxonomy] for line in out.splitlines()
        ), name
    assert main(["configs", "iaps"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "iaps"
    assert main(["configs", "nope"]) == 1
    assert "fashion_mnist_demo" in capsys.readouterr().err
    assert main(["train", "webemmo"]) == 1
    assert "did you mean 'webemo'" in capsys.readouterr().err


def test_wheel_ships_the_configs_and_they_load_after_install(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources, unpack it as pip would, and use a shipped
    config by name from an empty folder with nothing but the installed package."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "mdan_zoo", src / "mdan_zoo", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", str(tmp_path / "dist")],
        cwd=src,
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("mdan_zoo-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    shipped = sorted(p.name for p in (ROOT / "mdan_zoo" / "configs").iterdir())
    assert sorted(n.split("/")[-1] for n in names if n.startswith("mdan_zoo/configs/")) == shipped
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = (
        "import mdan_zoo, sys; from mdan_zoo.train_config import TrainConfig; "
        "print(mdan_zoo.__file__); print(TrainConfig.from_file('fi').name)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    where, name = run.stdout.split()
    assert Path(where).is_relative_to(tmp_path / "site") and name == "mdan_fi"
    # `mdan-zoo train fi --set data_root=...` reads the shipped config; a wrong folder is named
    train = subprocess.run(
        [sys.executable, "-m", "mdan_zoo", "train", "fi", "--set", "data_root=nowhere/FI"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert train.returncode == 1
    assert (
        "data_root nowhere/FI does not exist" in train.stderr and "--set data_root=" in train.stderr
    )
    assert "Traceback" not in train.stderr and not (elsewhere / "runs").exists()
