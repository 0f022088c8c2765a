"""Names used as paths, two writers on one file, consent before replacing, hostile names
(issue 18, problems 2, 3, 10, 11 and 12).

Real processes race on one ``--output`` file (started together, and two ``--resume`` runs after a
real ``kill -9``); taxonomies and checkpoints with hostile level names, repeated JSON keys and
terminal control characters are fed to the same entry points a user calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _photos import tiny_model
from PIL import Image

import mdan_zoo
from mdan_zoo import Taxonomy, WeightsError
from mdan_zoo.cli import main
from mdan_zoo.evaluation import compute_report
from mdan_zoo.taxonomy import TaxonomyError

REPO = Path(mdan_zoo.__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return Path(tiny_model("webemo").save_pretrained(tmp_path_factory.mktemp("w") / "tiny"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small real-looking images (seeded noise photos are enough for the writers)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"im{i:02d}.png"
        )
    return folder


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)


def _predict(images: Path, weights: Path, out: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "mdan_zoo", "predict", str(images), "--weights", str(weights),
            "--output", str(out), "--batch-size", "4", "--workers", "0", "--no-progress",
            *more]  # fmt: skip


def _sources(path: Path) -> list[str]:
    return [json.loads(line)["source"] for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ problem 2: two writers
def test_two_predicts_on_one_output_never_duplicate(
    images: Path, weights_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.jsonl"
    procs = [
        subprocess.Popen(
            _predict(images, weights_dir, out), env=_env(), stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "another mdan-zoo predict is writing" in loser or "already exists" in loser, loser
    sources = _sources(out)
    assert len(sources) == 24 and len(set(sources)) == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.jsonl"]  # no lock file left


def test_two_overlapping_resumes_never_duplicate(
    images: Path, weights_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.jsonl"
    killed = subprocess.run(
        _predict(images, weights_dir, out),
        env=_env(MDAN_ZOO_PREDICT_KILL="0:2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # the kill freed the lock
    procs = [
        subprocess.Popen(
            _predict(images, weights_dir, out, "--resume"),
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    if codes == [0, 2]:
        loser = next(err for code, err in results if code == 2)
        assert "another mdan-zoo predict is writing" in loser and str(out) in loser, loser
    sources = _sources(out)
    assert sorted(sources) == sorted(str(p) for p in images.iterdir())  # each once


def test_the_lock_refuses_while_held(images: Path, weights_dir: Path, tmp_path: Path) -> None:
    """Deterministic: a holder that never lets go; predict refuses at once, touching nothing."""
    from mdan_zoo._io import OutputLockedError, exclusive_lock

    out = tmp_path / "preds.csv"
    out.write_text("mine\n")
    with exclusive_lock(out, what="predict --output"):
        with pytest.raises(OutputLockedError), exclusive_lock(out, what="predict --output"):
            pass
        proc = subprocess.run(
            _predict(images, weights_dir, out, "--resume"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2, proc.stderr
        assert "another mdan-zoo predict is writing" in proc.stderr
    assert out.read_text() == "mine\n"


# ------------------------------------------------------------------ problem 12: consent
def test_save_attention_never_replaces_a_file_without_overwrite(
    images: Path, weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    mine = maps / "im00_attention.png"
    mine.write_bytes(b"the user's own picture")
    before = mine.stat().st_mtime_ns
    one = images / "im00.png"
    argv = ["predict", str(one), "--weights", str(weights_dir), "--no-progress"]
    assert main([*argv, "--save-attention", str(maps)]) == 2
    err = capsys.readouterr().err
    assert "im00_attention.png" in err and "--overwrite" in err, err
    assert mine.read_bytes() == b"the user's own picture" and mine.stat().st_mtime_ns == before
    assert main([*argv, "--save-attention", str(maps), "--overwrite"]) == 0
    assert mine.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in maps.iterdir()) == ["im00_attention.png"]


def test_attention_save_can_refuse_to_replace(weights_dir: Path, tmp_path: Path) -> None:
    from mdan_zoo import MDAN

    model = MDAN.from_pretrained(weights_dir)
    result = model.attention_maps(Image.new("RGB", (40, 40)))[0]
    target = tmp_path / "a.png"
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="a.png"):
        result.save(target, overwrite=False)
    assert target.read_bytes() == b"keep" and sorted(os.listdir(tmp_path)) == ["a.png"]
    result.save(target)  # the Python default replaces, as PIL's Image.save does
    assert target.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------ problem 3: names as paths
HOSTILE_LEVELS = ["../../../../X", "/etc/Y", "a\\..\\b", ".hidden"]


def test_report_files_stay_in_their_folder(tmp_path: Path) -> None:
    tax = Taxonomy.from_dict(
        {
            "name": "hostile",
            "levels": [
                {"name": HOSTILE_LEVELS[0], "labels": ["p", "n"]},
                {
                    "name": HOSTILE_LEVELS[1],
                    "labels": ["a", "b", "c", "d"],
                    "parents": ["p", "p", "n", "n"],
                },  # fmt: skip
            ],
        }
    )
    rng = np.random.default_rng(0)
    probs = {
        b: [rng.dirichlet(np.ones(k), size=6).astype(np.float32) for k in tax.num_classes]
        for b in ("local", "global", "overall")
    }
    report = compute_report(tax, [0, 1, 2, 3, 0, 2], probs)
    out = tmp_path / "deep" / "er" / "report"
    paths = report.write(out)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(w.startswith("deep/er/report/") and w.count("/") == 3 for w in written), written
    # json, txt; csv + png per branch and level; a reliability png per level
    assert len(written) == 2 + 2 * 2 * 2 + 2
    assert not Path("/etc/Y.csv").exists()
    assert all(p.parent == out for p in paths.values())
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_level_names_that_clash_once_made_safe_stay_apart(tmp_path: Path) -> None:
    tax = Taxonomy.from_dict(
        {
            "name": "clash",
            "levels": [
                {"name": "a/b", "labels": ["p", "n"]},
                {"name": "a_b", "labels": ["a", "b"], "parents": ["p", "n"]},
            ],
        }
    )
    probs = {b: [np.eye(2, dtype=np.float32)[[0, 1]]] * 2 for b in ("local", "global", "overall")}
    paths = compute_report(tax, [0, 1], probs).write(tmp_path)
    names = sorted(p.name for p in tmp_path.glob("confusion_P_O_*.csv"))
    assert len(names) == 2, names
    assert set(paths) >= {"json", "text"}


# ------------------------------------------------------------------ problem 10: repeated keys
def test_a_repeated_key_in_a_taxonomy_file_is_an_error(tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text(
        '{"name": "t", "tree": {"positive": {"joy": [], "awe": []}, '
        '"negative": {"anger": [], "fear": []}, "positive": {"x": [], "y": []}}}'
    )
    with pytest.raises(TaxonomyError, match=r"the key 'positive' appears twice") as err:
        Taxonomy.from_json(nested)
    assert str(nested) in str(err.value)
    flat = tmp_path / "flat.json"
    flat.write_text('{"name": "t", "name": "u", "levels": [{"labels": ["a", "b"]}]}')
    with pytest.raises(TaxonomyError, match=r"the key 'name' appears twice"):
        Taxonomy.from_json(flat)


def test_a_repeated_key_in_a_config_or_checkpoint_is_an_error(
    tmp_path: Path, weights_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"name": "x", "epochs": 3, "epochs": 1, "dataset": "fashion_mnist"}')
    assert main(["train", str(cfg)]) in (1, 2)
    assert "the key 'epochs' appears twice" in capsys.readouterr().err
    ckpt = Path(shutil.copytree(weights_dir, tmp_path / "ckpt"))
    text = (ckpt / "config.json").read_text()
    (ckpt / "config.json").write_text(text.replace("{", '{"library": "x", ', 1))
    with pytest.raises(WeightsError, match=r"the key 'library' appears twice"):
        mdan_zoo.MDAN.from_pretrained(ckpt)


# ------------------------------------------------------------------ problem 11: control chars
CONTROL = ["\x1b[2J\x1b[31mjoy", "amuse\u202ement", "line\nforged: ok", "a\u2066b", "bell\x07"]


@pytest.mark.parametrize("label", CONTROL, ids=repr)
def test_control_characters_in_labels_never_reach_the_terminal(
    label: str, weights_dir: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = Path(shutil.copytree(weights_dir, tmp_path / "ckpt"))
    config = json.loads((ckpt / "config.json").read_text())
    fine = config["taxonomy"]["levels"][-1]["labels"]
    fine[0] = label
    (ckpt / "config.json").write_text(json.dumps(config))
    code = main(["predict", str(images / "im00.png"), "--weights", str(ckpt), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    shown = captured.out + captured.err
    for ch in label:
        if ch == "\n":  # a forged line would start with what follows it
            assert not any(line.startswith("forged") for line in shown.splitlines()), shown
        elif not ch.isprintable():
            assert ch not in shown, (repr(ch), shown)
    assert "control character" in shown, shown


@pytest.mark.parametrize("label", CONTROL, ids=repr)
def test_taxonomies_refuse_control_characters(label: str) -> None:
    for data in (
        {"name": "t", "levels": [{"labels": [label, "b"]}]},
        {"name": "t", "levels": [{"name": label, "labels": ["a", "b"]}]},
        {"name": label, "levels": [{"labels": ["a", "b"]}]},
        {"name": "t", "levels": [{"labels": ["a", "b"]}], "aliases": {label: "a"}},
    ):
        with pytest.raises(TaxonomyError, match="control character"):
            Taxonomy.from_dict(data)
