"""What save_pretrained writes: the same bytes every time, a config.json timm reads, and the
previous layout still loading."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import timm
import torch
from zoo_helpers import same_state, tiny_mdan

from mdan_zoo import MDAN

# Saves the seeded tiny model to argv[1] (a fresh process: its own hash seed, its own allocator).
SAVE = """
import sys
sys.path.insert(0, "tests")
from zoo_helpers import tiny_mdan
tiny_mdan("webemo", seed=3).save_pretrained(sys.argv[1], metrics={"b": 1, "a": {"y": 2, "x": 3}})
"""


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_saves_are_byte_deterministic_in_one_process_and_across_processes(tmp_path: Path) -> None:
    """Twelve saves here and two in fresh processes (different hash seeds) give the same
    sha256 for every file. safetensors writes its metadata map in hash order: before the
    header was sorted, 12 saves gave 5 different weights files."""
    model = tiny_mdan("webemo", seed=3)
    metrics = {"b": 1, "a": {"y": 2, "x": 3}}
    digests = [
        _digests(model.save_pretrained(tmp_path / f"here{i}", metrics=metrics)) for i in range(12)
    ]
    for i, seed in enumerate(("0", "random")):
        env = dict(os.environ, PYTHONHASHSEED=seed, OMP_NUM_THREADS="1")
        out = tmp_path / f"there{i}"
        subprocess.run([sys.executable, "-c", SAVE, str(out)], env=env, check=True)
        digests.append(_digests(out))
    assert set(digests[0]) == {"README.md", "config.json", "model.safetensors"}
    assert all(d == digests[0] for d in digests)
    config = json.loads((tmp_path / "here0" / "config.json").read_text())
    assert list(config) == sorted(config)
    assert config["weights"]["sha256"] == digests[0]["model.safetensors"]
    raw = (tmp_path / "here0" / "model.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])


def test_config_json_carries_what_timm_reads(tmp_path: Path) -> None:
    """timm reads architecture (its entrypoint), pretrained_cfg, num_classes / label_names and
    num_features; ``local-dir:`` goes through the same reader as ``hf-hub:`` (the Hub test in
    test_hub.py runs the latter against olah)."""
    model = tiny_mdan("fi", seed=1)
    folder = model.save_pretrained(tmp_path / "fi")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "mdan" and config["format_version"] == 2
    assert config["pretrained_cfg"] == json.loads(json.dumps(model.pretrained_cfg))
    assert config["num_features"] == model.num_features == 512
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert isinstance(loaded, MDAN) and same_state(loaded, model)
    assert loaded.preprocessing == model.preprocessing
    fresh = timm.create_model(f"local-dir:{folder}")  # the architecture, randomly initialised
    assert fresh.taxonomy.same_tree(model.taxonomy) and fresh.config == model.config
    assert not same_state(fresh, model)


def test_the_previous_layout_still_loads(tmp_path: Path) -> None:
    """format_version 1 (the MDANConfig under ``architecture``) loads as before."""
    model = tiny_mdan("fi", seed=2)
    folder = model.save_pretrained(tmp_path / "v1")
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = config.pop("model_config")
    for key in ("pretrained_cfg", "num_features"):
        del config[key]
    config["format_version"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    loaded = MDAN.from_pretrained(folder)
    assert same_state(loaded, model) and loaded.config == model.config
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)[-1].probs, model.eval()(x)[-1].probs)
