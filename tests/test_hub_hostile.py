"""Hostile Hub refs, tokens, files and configs (issue 9, cases 6, 7, 10, 11; issue 12 tokens).

A fake Hub on 127.0.0.1 that answers every request proves that a bad ref is refused before
any request is sent or any file written; real processes prove that a loaded model owns its
memory (its file overwritten by ``cp``, or truncated, in a process that keeps running).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from zoo_helpers import FakeHub, batch, files_under, tiny_mdan

from mdan_zoo import MDAN, ChecksumError, WeightsError, create_model, load_pretrained, mdan
from mdan_zoo.cli import main as cli_main
from mdan_zoo.hub import download
from mdan_zoo.zoo import push_to_hub

SECRET = "hf_sEcReT0123456789abcdefTOKEN"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[MDAN, Path]:
    model = tiny_mdan(seed=3)
    folder = tmp_path_factory.mktemp("saved") / "ckpt"
    model.save_pretrained(folder)
    return model, folder


def _copy(saved: tuple[MDAN, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved[1], tmp_path / "ckpt"))


def _hf_home() -> Path:
    return Path(os.environ["HF_HOME"])


# ------------------------------------------------------------------ case 6: refs
BAD_REFS = [
    "hf-hub:org/name@../../../x",
    "hf-hub:org/name@refs/../../../../x",
    "hf-hub:org/name@/etc/passwd",
    "hf-hub:org/name@.hidden",
    "hf-hub:org/name@a/./b",
    "hf-hub:org/name@a//b",
    "hf-hub:org/name@",
    "hf-hub:org/name@a\x00b",
    "hf-hub:org/name@main\n",
    "hf-hub:org/name@a b",
    "hf-hub:org/name@x\\..\\..\\y",
    "hf-hub:org/name@" + "a" * 300,
    "hf-hub:../name",
    "hf-hub:org/..",
    "hf-hub:org/",
    "hf-hub:/name",
    "hf-hub:org//name",
    "hf-hub:org/name/extra",
    "hf-hub:name",
    "hf-hub:org/na me",
    "hf-hub:org/nä",
    "hf-hub:org/na--me",
    "hf-hub:org/-name",
    "hf-hub:org\x00/name",
    "hf-hub:org/" + "n" * 200,
    "org/name@../../../x",  # without the prefix too
]


def _names_ref(message: str, ref: str) -> bool:
    shown = repr(ref[:40])[:-1]  # the ref as the message writes it (repr, maybe cut short)
    return shown in message


@pytest.mark.parametrize("ref", BAD_REFS, ids=lambda r: repr(r)[:40])
def test_bad_refs_send_nothing_and_write_nothing(
    ref: str, fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "a" / "b" / "c" / "cache"
    calls: list[Any] = [
        lambda: mdan(weights=ref, cache_dir=cache, progress=False),
        lambda: MDAN.from_pretrained(ref, cache_dir=cache, progress=False),
        lambda: load_pretrained(ref, cache_dir=cache, token=SECRET),
        lambda: download(ref, cache_dir=cache, progress=False),
    ]
    if ref.startswith("hf-hub:"):
        calls.append(lambda: create_model(ref, cache_dir=cache, progress=False))
    for call in calls:
        with pytest.raises(WeightsError) as err:
            call()
        assert _names_ref(str(err.value), ref), str(err.value)
        assert "valid Hub" in str(err.value)
    assert cli_main(["download", ref, "--cache-dir", str(cache)]) == 1
    assert _names_ref(capsys.readouterr().err, ref)
    assert fake_hub.requests == [], "a request was sent for a ref that must be refused"
    assert files_under(tmp_path) == [] and files_under(_hf_home()) == []


@pytest.mark.parametrize("revision", ["../../x", "..", "/abs", "a\x00", "", "x" * 256])
def test_bad_revision_arguments_and_push_targets(
    revision: str, fake_hub: FakeHub, tmp_path: Path, saved: tuple[MDAN, Path]
) -> None:
    cache, model = tmp_path / "cache", saved[0]
    with pytest.raises(WeightsError, match="not a valid Hub revision|must be a string"):
        MDAN.from_pretrained("hf-hub:org/name", revision=revision, cache_dir=cache)
    with pytest.raises(WeightsError, match="not a valid Hub revision"):
        mdan(weights="org/name", revision=revision, cache_dir=cache)
    with pytest.raises(WeightsError, match="not a valid Hub revision"):
        push_to_hub(model, "org/name", branch=revision, token=SECRET)
    with pytest.raises(WeightsError, match="not a valid Hub repository id"):
        model.push_to_hub(f"org/{revision}x/..", token=SECRET)
    assert fake_hub.requests == [] and files_under(tmp_path) == []


@pytest.mark.parametrize("path", ["/x/" + "a" * 5000, "./a\x00b", "a" * 3000, "~/" + "b" * 300])
def test_hostile_local_paths_are_weights_errors(path: str, fake_hub: FakeHub) -> None:
    with pytest.raises(WeightsError, match="not found|cannot read|not a valid Hub"):
        MDAN.from_pretrained(path)
    assert fake_hub.requests == []


def test_a_valid_ref_does_reach_the_fake_hub(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The control: the same server is asked, and files are cached, when the ref is valid
    (its answer is no checkpoint, which is a clear error too)."""
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="config.json of hf-hub:org/name"):
        mdan(weights="hf-hub:org/name@refs/pr/1", cache_dir=cache, progress=False)
    assert [r[:2] for r in fake_hub.requests][0] == (
        "HEAD",
        "/org/name/resolve/refs%2Fpr%2F1/config.json",
    )
    assert "models--org--name/refs/refs/pr/1" in files_under(cache)


# ------------------------------------------------------------------ tokens
@pytest.fixture
def refusing_hub(fake_hub: FakeHub) -> FakeHub:
    fake_hub.status = 401
    return fake_hub


def _refused(call: Any, token: str = SECRET) -> str:
    with pytest.raises(WeightsError) as err:
        call()
    message = str(err.value)
    assert "hf auth login" in message and token not in message, message
    return message


def test_a_refused_token_says_how_to_log_in_and_is_never_echoed(
    refusing_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cache = "hf-hub:org/private", tmp_path / "cache"
    calls = [
        lambda: MDAN.from_pretrained(ref, token=SECRET, cache_dir=cache, progress=False),
        lambda: load_pretrained(ref, token=SECRET, cache_dir=cache, progress=False),
        lambda: mdan(weights=ref, token=SECRET, cache_dir=cache, progress=False),
        lambda: create_model(ref, token=SECRET, cache_dir=cache, progress=False),
        lambda: download(ref, token=SECRET, cache_dir=cache, progress=False),
    ]
    for call in calls:
        refusing_hub.requests.clear()
        assert "refused the token" in _refused(call)
        assert refusing_hub.requests[0][2] == f"Bearer {SECRET}", "the token was not sent"
    argv = ["download", ref, "--token", SECRET, "--cache-dir", str(cache), "--no-progress"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "hf auth login" in err and SECRET not in err
    image = tmp_path / "x.png"
    image.write_bytes(b"not read: the model fails first")
    argv = ["predict", str(image), "--weights", ref, "--token", SECRET, "--no-progress"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "hf auth login" in err and SECRET not in err
    assert refusing_hub.requests[-1][2] == f"Bearer {SECRET}"


def test_hf_token_from_the_environment_is_used_and_not_echoed(
    refusing_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_token = "hf_fromTheEnvironment0123456789"
    monkeypatch.setenv("HF_TOKEN", env_token)
    _refused(lambda: mdan(weights="hf-hub:org/private", cache_dir=tmp_path), token=env_token)
    assert refusing_hub.requests[0][2] == f"Bearer {env_token}"


def test_push_with_a_refused_token(refusing_hub: FakeHub, saved: tuple[MDAN, Path]) -> None:
    model = saved[0]
    _refused(lambda: push_to_hub(model, "me/mine", token=SECRET))
    _refused(lambda: model.push_to_hub("me/mine", token=SECRET, branch="dev", create_pr=True))
    assert refusing_hub.requests[0][:2] == ("POST", "/api/repos/create")
    assert refusing_hub.requests[0][2] == f"Bearer {SECRET}"


def test_push_offline_or_unreachable_is_a_weights_error(
    monkeypatch: pytest.MonkeyPatch, saved: tuple[MDAN, Path]
) -> None:
    model = saved[0]
    # conftest points HF_ENDPOINT at a port where nothing listens
    with pytest.raises(WeightsError, match=r"cannot reach the Hub at http://127\.0\.0\.1:9"):
        model.push_to_hub("me/mine", token=SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"offline mode is on.*hf upload"):
        push_to_hub(model, "me/mine")


# ------------------------------------------------------------------ case 7: owned memory
@pytest.fixture
def two_checkpoints(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    tiny_mdan(seed=1).save_pretrained(a)
    tiny_mdan(seed=2).save_pretrained(b)
    return a, b


def test_overwriting_the_file_never_changes_a_loaded_model(
    two_checkpoints: tuple[Path, Path],
) -> None:
    a, b = two_checkpoints
    model = MDAN.from_pretrained(a)
    x = batch(model)
    with torch.no_grad():
        before = [lv.probs for lv in model(x)]
    maps = Path("/proc/self/maps").read_text()
    assert str(a / "model.safetensors") not in maps, "the weights are still memory-mapped"
    subprocess.run(["cp", str(b / "model.safetensors"), str(a / "model.safetensors")], check=True)
    with torch.no_grad():
        after = [lv.probs for lv in model(x)]
    assert all(torch.equal(p, q) for p, q in zip(before, after, strict=True))
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        MDAN.from_pretrained(a)  # config.json still names the old weights


CHILD = textwrap.dedent(
    """
    import os, sys, torch
    torch.set_num_threads(1)
    from mdan_zoo import MDAN
    folder = sys.argv[1]
    model = MDAN.from_pretrained(folder)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = [lv.probs for lv in model(x)]
    os.truncate(os.path.join(folder, "model.safetensors"), 64)  # as a full disk or a crash would
    with torch.no_grad():
        after = [lv.probs for lv in model(x)]
    print("same" if all(torch.equal(p, q) for p, q in zip(before, after)) else "changed")
    """
)


def test_truncating_the_file_does_not_kill_the_process(
    two_checkpoints: tuple[Path, Path],
) -> None:
    a, _ = two_checkpoints
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(a)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, f"exit {proc.returncode} (-7 is SIGBUS): {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "same"
    assert (a / "model.safetensors").stat().st_size == 64


# ------------------------------------------------------------------ case 10: config.json types
def _rewrite_config(folder: Path, change: Any) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _set(path: str, value: Any) -> Any:
    def change(cfg: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value

    return change


CONFIG_CASES = [
    ("weights", "abc", "'weights' must be an object"),
    ("weights", ["x"], "'weights' must be an object"),
    ("weights.sha256", 5, "'weights.sha256' must be 64 lower-case hex"),
    ("weights.sha256", "zz", "'weights.sha256' must be 64 lower-case hex"),
    ("weights.size", -1, "'weights.size' must be a non-negative integer"),
    ("weights.file", {"a": 1}, "'weights.file' must be a file name"),
    ("format_version", "1", "'format_version' must be the integer 2"),
    ("format_version", True, "'format_version' must be the integer 2"),
    ("format_version", 99, "format_version 99 is not one this mdan_zoo reads"),
    ("architecture", {"backbone": "resnet18"}, "'architecture' must be a string"),
    ("model_config", [], "'model_config' must be an object"),
    ("model_config", "abc", "'model_config' must be an object"),
    ("pretrained_cfg", "abc", "'pretrained_cfg' must be an object or null"),
    ("num_features", "wide", "'num_features' must be an integer"),
    ("taxonomy", 5, "'taxonomy' must be an object"),
    ("preprocessing", "x", "'preprocessing' must be an object or null"),
    ("metrics", 3, "'metrics' must be an object or null"),
    ("training", [1], "'training' must be an object or null"),
    ("num_classes", "x", "'num_classes' must be a list of integers"),
    ("num_params", "many", "'num_params' must be an integer"),
    ("library", 7, "'library' must be a string"),
    ("preprocessing.mean", "abc", "field 'preprocessing'"),
    ("preprocessing.input_size", "big", "field 'preprocessing'"),
    ("model_config.backbone", 5, "field 'model_config'"),
    ("model_config.heads", "ab", "field 'model_config'"),
    ("taxonomy.levels", [{"labels": 5}], "field 'taxonomy'"),
    ("taxonomy.levels", [{"name": "x"}], "field 'taxonomy'"),
    (
        "taxonomy.levels",
        [{"labels": ["a", "b"]}, {"labels": ["c"], "parents": [["a"]]}],
        "taxonomy",
    ),
]


@pytest.mark.parametrize(("field", "value", "pattern"), CONFIG_CASES)
def test_config_json_types_are_checked(
    field: str, value: Any, pattern: str, tmp_path: Path, saved: tuple[MDAN, Path]
) -> None:
    folder = _copy(saved, tmp_path)
    _rewrite_config(folder, _set(field, value))
    for load in (MDAN.from_pretrained, lambda f: mdan(weights=f)):
        with pytest.raises(WeightsError) as err:  # never a raw TypeError / AttributeError
            load(folder)
        message = str(err.value)
        assert str(folder / "config.json") in message and pattern in message, message


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (b'{"format_version": 1, "weights": "\xff\xfe"}', "is not UTF-8 text"),
        (b"\xef\xbb\xbf{}", "is not valid JSON"),  # a UTF-8 BOM
        (b'{"format_version": 1,', "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"", "is not valid JSON"),
    ],
)
def test_unreadable_config_json(
    raw: bytes, pattern: str, tmp_path: Path, saved: tuple[MDAN, Path]
) -> None:
    folder = _copy(saved, tmp_path)
    (folder / "config.json").write_bytes(raw)
    with pytest.raises(WeightsError, match=pattern) as err:
        MDAN.from_pretrained(folder)
    assert str(folder / "config.json") in str(err.value)


def test_oversized_config_json_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saved: tuple[MDAN, Path]
) -> None:
    from mdan_zoo.hub import _checkpoint as checkpoint

    folder = _copy(saved, tmp_path)
    monkeypatch.setattr(checkpoint, "MAX_CONFIG_BYTES", 1000)
    with pytest.raises(WeightsError, match=r"larger than 1,000 bytes"):
        MDAN.from_pretrained(folder)


def test_bad_description_in_a_lone_safetensors_header(
    tmp_path: Path, saved: tuple[MDAN, Path]
) -> None:
    from safetensors.torch import save_file

    model = saved[0]
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for meta, pattern in [
        ("{not json", "is not valid JSON"),
        (json.dumps({**model.describe_checkpoint(), "weights": "abc"}), "'weights' must be"),
        (json.dumps({**model.describe_checkpoint(), "taxonomy": []}), "'taxonomy' must be"),
    ]:
        path = tmp_path / "lone.safetensors"
        save_file(state, str(path), metadata={"format": "pt", "mdan_zoo": meta})
        with pytest.raises(WeightsError, match=pattern) as err:
            MDAN.from_pretrained(path)
        assert "header entry of" in str(err.value) and str(path) in str(err.value)


def test_integer_tensor_where_floats_belong_names_the_tensor(
    tmp_path: Path, saved: tuple[MDAN, Path]
) -> None:
    from safetensors.torch import save_file

    model, folder = saved[0], _copy(saved, tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["global_head.weight"] = state["global_head.weight"].to(torch.int32)
    save_file(state, str(folder / "model.safetensors"))
    _rewrite_config(
        folder,
        _set(
            "weights.sha256",
            hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest(),
        ),
    )
    with pytest.raises(WeightsError, match=r"tensor 'global_head.weight' is torch.int32"):
        MDAN.from_pretrained(folder)
    with pytest.raises(WeightsError, match=r"tensor 'global_head.weight' is torch.int32"):
        mdan(weights=folder)


# ------------------------------------------------------------------ case 11: huge taxonomies
def _huge_taxonomy_config(folder: Path, classes: int) -> None:
    fine = [f"c{i}" for i in range(classes)]
    _rewrite_config(
        folder,
        _set(
            "taxonomy",
            {
                "name": "huge",
                "levels": [
                    {"name": "coarse", "labels": ["a", "b"]},
                    {
                        "name": "fine",
                        "labels": fine,
                        "parents": ["ab"[i % 2] for i in range(classes)],
                    },
                ],
            },
        ),
    )


MEASURE = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from mdan_zoo import MDAN, WeightsError
    torch.set_num_threads(1)

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current resident size
    before = kib("VmRSS")
    t0 = time.perf_counter()
    try:
        MDAN.from_pretrained(sys.argv[1])
        error = None
    except WeightsError as err:
        error = str(err)[:500]
    grew = (kib("VmHWM") - before) * 1024
    print(json.dumps({"error": error, "seconds": time.perf_counter() - t0, "grew": grew}))
    """
)


def _measure(folder: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_taxonomy_that_does_not_fit_the_weights_fails_before_anything_is_built(
    tmp_path: Path, saved: tuple[MDAN, Path]
) -> None:
    """20k fine classes beside weights for 10: the model (and its 20k x 20k taxonomy buffers,
    1.6 GB) is never built; the mismatch is seen from the tensors' shapes. Peak memory is the
    process's own resident peak (VmHWM), which counts torch's allocations too."""
    folder = _copy(saved, tmp_path)
    _huge_taxonomy_config(folder, 20_000)
    result = _measure(folder)
    assert "names 20000 classes at level 1" in result["error"]
    assert result["grew"] < 300e6, result  # the bytes of config.json and the parsed tree


def test_a_million_classes_fail_fast_and_small(tmp_path: Path, saved: tuple[MDAN, Path]) -> None:
    folder = _copy(saved, tmp_path)
    _huge_taxonomy_config(folder, 10**6)
    result = _measure(folder)
    assert result["error"] and "config.json" in result["error"], result
    assert "field 'taxonomy'" in result["error"], result
    assert result["seconds"] < 10 and result["grew"] < 1e9, result
