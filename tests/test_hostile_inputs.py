"""Hostile inputs (issue 9, items 10-13): real hostile dicts and files are fed to the taxonomy
and config parsers and to the image reader; each must be refused with the library's own error
naming the field or file, never a raw TypeError / RecursionError / MemoryError, and oversized
input must be refused before it is copied, in linear time and bounded memory."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _photos import feat_photo, tiny_model
from PIL import Image

from mdan_zoo.config import MAX_IMAGE_SIDE, ConfigError, MDANConfig, Preprocessing
from mdan_zoo.imageio import MAX_ASPECT_RATIO, ImageReadError, read_image, to_pil_image
from mdan_zoo.taxonomy import (
    MAX_ALIASES,
    MAX_CLASSES_PER_LEVEL,
    MAX_LABELS,
    MAX_NAME_LENGTH,
    MAX_TAXONOMY_FILE_BYTES,
    Taxonomy,
    TaxonomyError,
)

ROOT = Path(__file__).resolve().parents[1]


def _levels(*levels: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"levels": list(levels), **extra}


TWO = {"labels": ["a", "b"]}


def _peak_bytes(fn: Callable[[], Any], error: type[Exception]) -> int:
    """Python-heap peak (tracemalloc) of ``fn``, which must raise ``error``."""
    tracemalloc.start()
    try:
        with pytest.raises(error):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------- taxonomy: field types
@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (_levels({"labels": "xy"}), r"levels\[0\]\['labels'\] must be a list .* got str 'xy'"),
        (_levels({"labels": None}), r"levels\[0\]\['labels'\] must be a list"),
        (_levels({"labels": {"a": 1, "b": 2}}), r"levels\[0\]\['labels'\] must be a list"),
        (_levels({"labels": ["a", 5]}), r"level 0 .*label must be a string, got int 5"),
        (_levels(["a", "b"]), r"levels\[0\]: expected an object with 'labels'"),
        (
            _levels(TWO, {"labels": ["x", "y"], "parents": [["a"], "b"]}),
            r"parent of label 'x' at level 1 must be a string .* got list \['a'\]",
        ),
        (
            _levels(TWO, {"labels": ["x", "y"], "parents": [0, "b"]}),
            r"parent of label 'x' at level 1 must be a string .* got int 0",
        ),
        (
            _levels(TWO, {"labels": ["x", "y"], "parents": "ab"}),
            r"levels\[1\]\['parents'\] .* must list one parent name per label",
        ),
        (_levels(TWO, aliases=[["x", "a"]]), r"'aliases' must be an object .* got list"),
        (_levels(TWO, aliases=["xa", "yb"]), r"'aliases' must be an object"),
        (_levels(TWO, aliases={"x": ["a"]}), r"target of alias 'x' must be a string, got list"),
        (_levels(TWO, name=["n"]), r"taxonomy 'name' must be a string, got list"),
        (_levels({"labels": ["a", "b"], "name": 5}), r"levels\[0\]\['name'\] must be a string"),
        (_levels(TWO, alias={"x": "a"}), r"unknown taxonomy field\(s\) \['alias'\]"),
        (_levels({"labels": ["a", "b"], "parent": []}), r"levels\[0\]: unknown field"),
        (5, r"a taxonomy must be an object .* got int 5"),
        ("ab", r"a taxonomy must be an object .* got str 'ab'"),
        ({"a": "xy", "b": ["z"]}, r"under 'a': expected a dict or a list of labels, got str"),
    ],
)
def test_taxonomy_fields_are_type_checked(data: Any, pattern: str) -> None:
    with pytest.raises(TaxonomyError, match=pattern):
        Taxonomy.from_dict(data)


def test_python_builders_check_types_too() -> None:
    with pytest.raises(TaxonomyError, match=r"level 0 must be a list of labels, got str 'xy'"):
        Taxonomy.from_levels(["xy", "ab"], [{}])
    with pytest.raises(TaxonomyError, match=r"an alias must be a string, got int 1"):
        Taxonomy.from_nested(["a", "b"], aliases={1: "a"})  # type: ignore[dict-item]
    with pytest.raises(TaxonomyError, match=r"parents\[0\] .* must be a dict"):
        Taxonomy.from_levels([["a", "b"], ["x", "y"]], [["a", "b"]])  # type: ignore[list-item]
    with pytest.raises(TaxonomyError, match=r"level_names must be a list"):
        Taxonomy.from_levels([["a", "b"]], [], level_names="p")
    with pytest.raises(TaxonomyError, match=r"unknown parent index True"):
        Taxonomy("t", ("p", "q"), (("a", "b"), ("x", "y")), ((), (0, True)))


def test_long_names_are_refused_naming_the_limit() -> None:
    long = "a" * (MAX_NAME_LENGTH + 1)
    for data in (
        _levels({"labels": [long, "b"]}),
        _levels(TWO, name=long),
        _levels({"labels": ["a", "b"], "name": long}),
        _levels(TWO, aliases={long: "a"}),
        {"x": [long, "b"]},
    ):
        with pytest.raises(TaxonomyError, match=rf"{MAX_NAME_LENGTH + 1:,} characters long.*"):
            Taxonomy.from_dict(data)
    ok = "a" * MAX_NAME_LENGTH
    assert Taxonomy.from_dict(_levels({"labels": [ok, "b"]})).labels[0][0] == ok


# ---------------------------------------------------------------------- taxonomy: hostile files
def test_deep_nesting_is_a_taxonomy_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(TaxonomyError, match=r"deep\.json is nested too deeply"):
        Taxonomy.from_json(deep)
    tree: Any = ["x", "y"]
    for i in range(5000):  # a dict built in Python, 5000 levels deep
        tree = {f"n{i}": tree, f"m{i}": ["z"]}
    with pytest.raises(TaxonomyError, match=r"4 levels: MDAN supports at most 3"):
        Taxonomy.from_nested(tree)


def test_unreadable_taxonomy_files(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"levels": [{"labels": ["caf\xe9", "b"]}]}')
    with pytest.raises(TaxonomyError, match=r"latin1\.json is not UTF-8 text \(byte 28"):
        Taxonomy.from_json(latin1)
    with pytest.raises(TaxonomyError, match="is a folder"):
        Taxonomy.from_json(tmp_path)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_TAXONOMY_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(
        TaxonomyError, match=rf"larger than the limit of {MAX_TAXONOMY_FILE_BYTES:,}"
    ):
        Taxonomy.from_json(huge)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_levels({"labels": "xy"})))
    with pytest.raises(TaxonomyError, match=r"bad\.json: levels\[0\]\['labels'\] must be a list"):
        Taxonomy.from_json(bad)


# ---------------------------------------------------------------------- taxonomy: size limits
MILLION = 10**6


@pytest.fixture(scope="module")
def million_labels() -> dict[str, Any]:
    return _levels({"labels": [f"l{i}" for i in range(MILLION)]})


def test_a_million_labels_are_refused_before_anything_is_copied(
    million_labels: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 9 item 11: 10^6 classes used to be accepted (and a 3 MB config ran for minutes)."""
    start = time.perf_counter()
    # The dict as a JSON parser hands it over: refused from its length, before any copy
    # (a copy of the list alone would be 8 MB; a set of the names, tens of MB).
    peak = _peak_bytes(lambda: Taxonomy.from_dict(million_labels), TaxonomyError)
    assert peak < 256 * 1024, peak
    with pytest.raises(
        TaxonomyError, match=rf"level 0 has 1,000,000 labels.*{MAX_CLASSES_PER_LEVEL:,}"
    ):
        Taxonomy.from_dict(million_labels)
    nested = {"a": million_labels["levels"][0]["labels"], "b": ["z"]}
    assert _peak_bytes(lambda: Taxonomy.from_nested(nested), TaxonomyError) < 256 * 1024
    aliases = _levels(TWO, aliases={f"x{i}": "a" for i in range(MILLION)})
    with pytest.raises(TaxonomyError, match=rf"1,000,000 aliases.*MAX_ALIASES = {MAX_ALIASES:,}"):
        Taxonomy.from_dict(aliases)
    # The same as a 10 MB file: refused from a count of its strings, before json builds them.
    path = tmp_path / "million.json"
    path.write_text(json.dumps(million_labels))
    size = path.stat().st_size
    assert 8 * 2**20 < size < MAX_TAXONOMY_FILE_BYTES
    peak = _peak_bytes(lambda: Taxonomy.from_json(path), TaxonomyError)
    assert peak < 3 * size, (peak, size)  # the bytes and their text; json.loads alone is ~8x
    with pytest.raises(TaxonomyError, match=r"million\.json holds about 1,000,00\d JSON strings"):
        Taxonomy.from_json(path)
    assert time.perf_counter() - start < 20  # generous: linear work on 2 shared cores


def test_total_labels_limit() -> None:
    per = MAX_CLASSES_PER_LEVEL  # every level in bounds, the three together over MAX_LABELS
    data = _levels(
        {"labels": [f"t{i}" for i in range(MAX_LABELS - 2 * per + 2)]},
        {"labels": [f"m{i}" for i in range(per)], "parents": ["t0"] * per},
        {"labels": [f"f{i}" for i in range(per)], "parents": ["m0"] * per},
    )
    with pytest.raises(TaxonomyError, match=rf"has {MAX_LABELS + 2:,} labels.*MAX_LABELS"):
        Taxonomy.from_dict(data)


def test_a_large_legal_tree_loads_and_queries_in_linear_time(tmp_path: Path) -> None:
    """At the per-level limit (15,000 parents, 30,000 children): was quadratic in the label
    checks, describe(), to_nested() and name look-ups (10,000 / 20,000 took 17 s)."""
    n = MAX_CLASSES_PER_LEVEL
    data = _levels(
        {"labels": [f"p{i}" for i in range(n // 2)]},
        {"labels": [f"c{i}" for i in range(n)], "parents": [f"p{i // 2}" for i in range(n)]},
        aliases={f"alias{i}": f"c{i}" for i in range(n)},
    )
    start = time.perf_counter()
    tax = Taxonomy.from_dict(data)
    assert tax.num_classes == (n // 2, n)
    assert tax.describe().count("\n") == n + n // 2
    assert len(tax.to_nested()) == n // 2
    assert tax.index(f"C{n - 1}") == n - 1 and tax.index(f"alias{n - 1}") == n - 1
    assert tax.children(0, n // 2 - 1) == [n - 2, n - 1]
    assert sum(len(tax.children(0, j)) for j in range(n // 2)) == n
    path = tmp_path / "big.json"
    tax.to_json(path)
    assert Taxonomy.from_json(path) == tax
    assert time.perf_counter() - start < 8  # ~1 s on 2 cores; one quadratic scan takes 10+ s
    with pytest.raises(KeyError, match=r"known labels: \[.*more\)\]"):  # bounded message
        tax.index("nope")


# ---------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("cls", "field", "value", "pattern"),
    [
        (MDANConfig, "alpha", "0.5", "must be a number, got str '0.5'"),
        (MDANConfig, "alpha", math.nan, "NaN and infinity are not allowed"),
        (MDANConfig, "alpha", math.inf, "NaN and infinity are not allowed"),
        (MDANConfig, "fpn_channels", True, "must be an integer, got bool True"),
        (MDANConfig, "fpn_channels", 1.5, "must be an integer, got float"),
        (MDANConfig, "fpn_channels", 10**9, "must be at most 4,096"),
        (MDANConfig, "heads", 5, "must be a list of integers, got int 5"),
        (MDANConfig, "heads", "248", "must be a list of integers, got str"),
        (MDANConfig, "heads", [2, True], "must be a list of integers"),
        (MDANConfig, "heads", [10**9], "must be at most 1,024"),
        (MDANConfig, "mhcca", "false", "must be true or false, got str 'false'"),
        (MDANConfig, "lcam", 1, "must be true or false, got int 1"),
        (MDANConfig, "prob_eps", "1e-8", "must be a number"),
        (MDANConfig, "backbone", ["resnet50"], "must be a string, got list"),
        (MDANConfig, "lcam_norm", None, "must be one of"),
        (Preprocessing, "mean", "abc", "must be a list of 3 numbers, got str 'abc'"),
        (Preprocessing, "mean", [math.nan, 0.4, 0.4], "NaN and infinity are not allowed"),
        (Preprocessing, "std", [math.inf, 1, 1], "NaN and infinity are not allowed"),
        (Preprocessing, "mean", [0.1, 0.2], "must be a list of 3 numbers"),
        (Preprocessing, "mean", [0.1, 0.2, 0.3, 0.4], "must be a list of 3 numbers"),
        (Preprocessing, "mean", [[0.1], 0.2, 0.3], "must be a list of 3 numbers"),
        (Preprocessing, "std", [0, 1, 1], "std positive"),
        (Preprocessing, "std", [-1, 1, 1], "std positive"),
        (Preprocessing, "input_size", -5, "must be an integer from 32"),
        (Preprocessing, "input_size", 0, "must be an integer from 32"),
        (Preprocessing, "resize_size", 0, "must be an integer from 32"),
        (Preprocessing, "resize_size", 10**9, f"MAX_IMAGE_SIDE = {MAX_IMAGE_SIDE}"),
        (Preprocessing, "input_size", "448", "must be an integer, got str '448'"),
        (Preprocessing, "input_size", True, "must be an integer, got bool"),
        (Preprocessing, "hflip", "no", "must be true or false"),
        (Preprocessing, "extra", "abc", "must be an object"),
        (Preprocessing, "interpolation", 5, "must be a string"),
    ],
)
def test_config_fields_are_type_checked(cls: type, field: str, value: Any, pattern: str) -> None:
    data = {field: value}
    if cls is Preprocessing and field == "input_size" and value == -5:
        data["resize_size"] = 512
    with pytest.raises(ConfigError, match=field) as info:
        cls.from_dict(data)  # type: ignore[attr-defined]
    assert pattern in str(info.value)
    # Through a JSON file too (what a downloaded config.json is), when JSON can hold the value.
    if cls is MDANConfig and not (isinstance(value, float) and not math.isfinite(value)):
        with pytest.raises(ConfigError, match=field):
            MDANConfig.from_dict(json.loads(json.dumps(data)))


def test_config_files_and_non_dicts(tmp_path: Path) -> None:
    for data in (["alpha"], "abc", 5, None):
        with pytest.raises(ConfigError, match="must be a JSON object"):
            MDANConfig.from_dict(data)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="must be a JSON object"):
            Preprocessing.from_dict(data)  # type: ignore[arg-type]
    cases = {
        "latin1.json": (b'{"backbone": "r\xe9snet"}', r"latin1\.json is not UTF-8 text"),
        "bad.json": (b"{bad", r"bad\.json is not valid JSON"),
        "deep.json": (b"[" * 100_000 + b"]" * 100_000, r"deep\.json is nested too deeply"),
        "typed.json": (b'{"alpha": "0.5"}', r"typed\.json: MDANConfig\.alpha must be a number"),
    }
    for name, (raw, pattern) in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ConfigError, match=pattern):
            MDANConfig.from_json(tmp_path / name)
    with pytest.raises(ConfigError, match="not found"):
        MDANConfig.from_json(tmp_path / "missing.json")


def test_valid_values_still_load() -> None:
    cfg = MDANConfig.from_dict({"alpha": 1, "heads": [1, 2], "fpn_channels": 4096})
    assert cfg.alpha == 1.0 and isinstance(cfg.alpha, float) and cfg.heads == (1, 2)
    pre = Preprocessing.from_dict({"mean": [0, 0.5, 1], "input_size": 32, "resize_size": 2048})
    assert pre.mean == (0.0, 0.5, 1.0) and Preprocessing.from_dict(pre.to_dict()) == pre


# ---------------------------------------------------------------------- images: thin strips
def _strip(tmp_path: Path, width: int, height: int) -> Path:
    path = tmp_path / f"strip_{width}x{height}.png"
    Image.new("RGB", (width, height), (200, 100, 50)).save(path)
    return path


@pytest.mark.parametrize(("width", "height"), [(8000, 1), (1, 8000), (2000, 1), (510, 10)])
def test_thin_strips_are_refused_naming_file_size_and_limit(
    tmp_path: Path, width: int, height: int
) -> None:
    path = _strip(tmp_path, width, height)
    assert path.stat().st_size < 200  # a tiny file: the bomb guard alone lets it through
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and f"{width} x {height} pixels" in message
    assert f"limit of {MAX_ASPECT_RATIO:g}:1" in message and "max_aspect_ratio=" in message
    # A caller who trusts the file can turn the check off (reading a strip is cheap; the
    # transform is what would blow up).
    assert read_image(path, max_aspect_ratio=None).size == (width, height)


def test_strips_in_memory_are_refused_too() -> None:
    arr = np.zeros((1, 8000, 3), np.uint8)
    for image in (arr, torch.zeros(3, 8000, 1), Image.fromarray(arr)):
        with pytest.raises(ImageReadError, match=r"aspect ratio 8,000:1"):
            to_pil_image(image)


def test_panoramas_and_the_exact_limit_are_admitted(tmp_path: Path) -> None:
    for width, height in ((8000, 1000), (500, 10), (10, 500)):  # 8:1, 50:1, 1:50
        assert read_image(_strip(tmp_path, width, height)).size == (width, height)
    assert read_image(_strip(tmp_path, 90, 2), max_aspect_ratio=45).size == (90, 2)
    with pytest.raises(ImageReadError, match="limit of 30:1"):
        read_image(_strip(tmp_path, 90, 2), max_aspect_ratio=30)
    with pytest.raises(ValueError, match="max_aspect_ratio must be >= 1"):
        read_image(_strip(tmp_path, 90, 2), max_aspect_ratio=0.5)


def test_predict_refuses_the_strip_not_the_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    from mdan_zoo.prediction._pipeline import predict

    strip, photo = _strip(tmp_path, 8000, 1), feat_photo("single_face.jpg")
    results = predict(tiny_model("emotion6"), [strip, photo], batch_size=2)
    assert not results[0].ok and "aspect ratio 8,000:1" in (results[0].error or "")
    assert results[1].ok and results[1].label


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from mdan_zoo.config import Preprocessing
    from mdan_zoo.imageio import ImageReadError, read_image

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    transform = Preprocessing().eval_transform()  # the default: shorter side to 512
    # Safety net (after torch is loaded: its libraries map much address space): if the guard
    # ever breaks, fail with MemoryError instead of eating the machine.
    vm = status("VmSize:")
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))
    out = {}
    for path in sys.argv[1:]:
        open("/proc/self/clear_refs", "w").write("5")  # VmHWM := current RSS
        rest = status("VmRSS:")
        try:
            transform(read_image(path))
            outcome = "read"
        except ImageReadError:
            outcome = "refused"
        except MemoryError:
            outcome = "MemoryError"
        out[path] = (outcome, status("VmHWM:") - rest)
    print(json.dumps(out))
    """
)


def test_peak_memory_of_a_strip_is_below_a_normal_photo(tmp_path: Path) -> None:
    """Issue 9 item 13: an 86-byte 1 x 2000 PNG took 2.8 GB in predict (read + the eval
    transform's resize); a 1 x 8000 one asks for 6.3 GB. Measured in a child process (peak RSS
    above its resting RSS), next to a real 572 x 562 photo."""
    strip, photo = _strip(tmp_path, 8000, 1), feat_photo("single_face.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(strip), str(photo)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (strip_outcome, strip_peak), (photo_outcome, photo_peak) = (
        result[str(strip)],
        result[str(photo)],
    )
    assert (strip_outcome, photo_outcome) == ("refused", "read")
    assert strip_peak < 16 * 2**20, strip_peak  # before: a 6.3 GB allocation
    assert strip_peak <= photo_peak + 2**20, (strip_peak, photo_peak)


def test_running_out_of_memory_is_never_blamed_on_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MemoryError while rotating a photo or reading weights is the machine's, not the
    file's: it propagates as itself, never as "unreadable EXIF" or "corrupted, delete it".
    The weights are read for real in a process whose address space cannot hold them."""
    import mdan_zoo.imageio as imageio

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    photo = tmp_path / "photo.jpg"
    Image.open(feat_photo("single_face.jpg")).save(photo)
    read_image(photo)  # fine with memory
    monkeypatch.setattr(imageio.ImageOps, "exif_transpose", no_memory)
    with pytest.raises(MemoryError):
        read_image(photo)
    from safetensors.torch import save_file

    weights = tmp_path / "big.safetensors"
    save_file({"w": torch.zeros(32_000_000)}, str(weights))  # 128 MB, a healthy file
    script = textwrap.dedent(
        """
        import resource, sys
        from mdan_zoo.hub._checkpoint import WeightsError, read_state_dict
        vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
        if sys.argv[2] == "tight":  # 64 MB more address space than now: the tensor cannot fit
            resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), resource.RLIM_INFINITY))
        try:
            read_state_dict(sys.argv[1])
            print("read")
        except MemoryError:
            print("MemoryError")
        except WeightsError as err:
            print("WeightsError", err)
        """
    )
    outcomes = {}
    for room in ("ample", "tight"):
        run = subprocess.run(
            [sys.executable, "-c", script, str(weights), room],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        outcomes[room] = run.stdout.strip()
    assert outcomes == {"ample": "read", "tight": "MemoryError"}
