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
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import mdan_zoo
from mdan_zoo.cli import build_parser
from mdan_zoo.training._config import list_configs

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


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _install_requires() -> list[Requirement]:
    lines = _setup_cfg()["options"]["install_requires"].split("\n")
    return [Requirement(line) for line in lines if line.strip()]


def test_requirements_have_a_floor_no_cap_and_admit_what_is_installed() -> None:
    """Every dependency has one ``>=`` floor (.ci/run installs exactly that floor and runs the Hub
    and checkpoint tests on it) and no upper bound: a cap below the next major refuses the
    next patch release, and none is needed for a known break today."""
    for req in _install_requires():
        ops = sorted(s.operator for s in req.specifier)
        assert ops == [">="], f"{req}: want exactly one '>=' floor and no cap"
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req} refuses {installed}"


def test_torch_floor_has_the_dynamo_onnx_exporter() -> None:
    """export.py calls torch.onnx.export(dynamo=True), new in torch 2.5 (torchvision 0.20)."""
    floors = {r.name: next(iter(r.specifier)).version for r in _install_requires()}
    assert Version(floors["torch"]) >= Version("2.5")
    assert Version(floors["torchvision"]) >= Version("0.20")
    assert "dynamo=True" in (ROOT / "mdan_zoo" / "export.py").read_text()


def test_python_requires_matches_the_code_and_the_tools() -> None:
    """tomllib (train.py) is 3.11+; ruff and mypy check the same floor the package declares."""
    spec = SpecifierSet(_setup_cfg()["options"]["python_requires"])
    floor = Version(next(iter(spec)).version)
    uses_tomllib = any(
        re.search(r"^\s*import tomllib", p.read_text(), flags=re.M)
        for p in (ROOT / "mdan_zoo").rglob("*.py")
    )
    assert not uses_tomllib or floor >= Version("3.11")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["ruff"]["target-version"] == f"py3{floor.minor}"
    assert pyproject["tool"]["mypy"]["python_version"] == f"3.{floor.minor}"


def test_metadata_uses_an_spdx_licence_and_names_a_homepage() -> None:
    meta = _setup_cfg()["metadata"]
    assert meta["license_expression"] == "MIT"
    assert "license" not in meta, "the free-text License field is superseded by the expression"
    assert "License ::" not in meta["classifiers"], "PEP 639: no licence classifier"
    assert meta["url"].startswith("https://") and "Source" in meta["project_urls"]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert any(Requirement(r).specifier.contains("77") for r in build)
    assert not any(Requirement(r).specifier.contains("76") for r in build), "PEP 639 needs 77"


def test_ci_runs_the_hub_and_checkpoint_tests_on_the_floors() -> None:
    ci = ROOT.joinpath(".ci/run").read_text()
    assert "install_requires" in ci and 'operator == ">="' in ci, "floors read from setup.cfg"
    assert "tests/test_hub.py tests/test_zoo.py" in ci


class TorchImported(AssertionError):
    """A light command pulled in torch."""


def test_light_cli_commands_do_not_import_torch() -> None:
    """``mdan-zoo --help``, ``list`` and ``info mdan_fi``, one after the other in a fresh
    process: each must work and leave torch unimported (benchmarks/startup.py times them)."""
    probe = (
        "import contextlib, io, sys\n"
        "from mdan_zoo.cli import main\n"
        "for argv in (['--help'], ['list'], ['info', 'mdan_fi']):\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            code = main(argv)\n"
        "    except SystemExit as exit_:\n"
        "        code = exit_.code\n"
        "    heavy = sorted(m for m in ('torch', 'torchvision') if m in sys.modules)\n"
        "    print(' '.join(argv), code or 0, len(out.getvalue()), heavy)\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [re.fullmatch(r"(.+) (\d+) (\d+) (\[.*\])", r) for r in proc.stdout.splitlines()]
    assert len(rows) == 3 and all(rows), proc.stdout
    for row in rows:
        assert row is not None
        command, code, printed, heavy = row.groups()
        assert code == "0" and int(printed) > 0, f"mdan-zoo {command} failed:\n{proc.stderr}"
        if heavy != "[]":
            raise TorchImported(f"mdan-zoo {command} imported {heavy}")


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
        "serve",
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
    from mdan_zoo.training._config import TrainConfig

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
        "import mdan_zoo, sys; from mdan_zoo.training._config import TrainConfig; "
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
