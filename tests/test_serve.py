"""The web app's machinery without a browser: the page's answers are model.predict's, hostile
files get a message and the rest still run, downloads are the ``predict --output`` files, and
``mdan-zoo serve`` starts light and names the extra when gradio is missing. The browser and the
live server are in tests/test_serve_browser.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_helpers import tiny_mdan

from mdan_zoo.cli import main
from mdan_zoo.serve import PIP_COMMAND, free_port
from mdan_zoo.serve._render import model_panel, results_html, warning_banner
from mdan_zoo.serve._session import Session, Upload, model_info
from mdan_zoo.untrained import untrained_message

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A tiny model saved and loaded back (so it counts as loaded weights, not random)."""
    from mdan_zoo import MDAN

    folder = tmp_path_factory.mktemp("weights") / "tiny"
    model = tiny_mdan()
    model.weights_origin = "trained"
    model.save_pretrained(folder)
    return MDAN.from_pretrained(folder), folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos and every kind of hostile upload, under the names a browser would send."""
    from skimage import data

    folder = tmp_path_factory.mktemp("uploads")
    files = {}
    for name, image in (("astronaut.jpg", data.astronaut()), ("coffee.jpg", data.coffee())):
        Image.fromarray(image).save(folder / name, quality=90)
        files[name] = folder / name
    rotated = folder / "rotated.jpg"  # EXIF orientation 6: a viewer turns it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(data.chelsea()).save(rotated, quality=90, exif=exif)
    files["rotated.jpg"] = rotated
    hostile = {
        "empty.jpg": b"",
        "page.jpg": b"<!DOCTYPE html><html><body>not a photo</body></html>\n",
        "cut.jpg": (folder / "astronaut.jpg").read_bytes()[:2000],
    }
    for name, body in hostile.items():
        (folder / name).write_bytes(body)
        files[name] = folder / name
    Image.new("RGB", (1, 20000), "white").save(folder / "strip.png")
    files["strip.png"] = folder / "strip.png"
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "big.png")  # a valid photo, ~1.4 MB
    files["big.png"] = folder / "big.png"
    return files


def _uploads(photos: dict[str, Path], *names: str) -> list[Upload]:
    return [Upload(path=str(photos[n]), name=n) for n in names]


def test_page_answers_are_model_predict_on_the_same_files(loaded, photos) -> None:  # noqa: ANN001
    model, _ = loaded
    session = Session(model, max_upload_mb=20)
    names = ("astronaut.jpg", "rotated.jpg", "coffee.jpg")
    got = session.predict(_uploads(photos, *names))
    want = model.predict([photos[n] for n in names])
    assert [p.source for p in got] == list(names)
    for g, w in zip(got, want, strict=True):
        assert g.ok and w.ok
        assert g.to_dict() | {"source": ""} == w.to_dict() | {"source": ""}  # every number equal
        for lg, lw in zip(g.levels, w.levels, strict=True):  # the branches the switch shows
            assert [(t.local_prob, t.global_prob) for t in lg.top_k] == [
                (t.local_prob, t.global_prob) for t in lw.top_k
            ]
    # P_O is the paper's mixture of the two branches the page shows beside it (Sec. 3.2)
    alpha = model.config.alpha
    for level in got[0].levels:
        for t in level.top_k:
            assert t.local_prob is not None and t.global_prob is not None
            assert t.prob == pytest.approx(alpha * t.local_prob + (1 - alpha) * t.global_prob)
    session.close()


def test_hostile_uploads_get_a_message_and_the_rest_are_answered(loaded, photos) -> None:  # noqa: ANN001
    model, _ = loaded
    session = Session(model, max_upload_mb=1)
    calls: list[list[str]] = []
    real = model.predict

    def spy(inputs, **kw):  # noqa: ANN001, ANN202
        calls.append([Path(p).name for p in inputs])
        return real(inputs, **kw)

    model.predict = spy
    try:
        names = ("empty.jpg", "page.jpg", "cut.jpg", "strip.png", "big.png", "astronaut.jpg")
        got = {p.source: p for p in session.predict(_uploads(photos, *names))}
    finally:
        del model.predict
    assert "empty (0 bytes)" in got["empty.jpg"].error
    assert "not an image file" in got["page.jpg"].error
    assert "truncated" in got["cut.jpg"].error
    assert "1 x 20000" in got["strip.png"].error and "aspect ratio" in got["strip.png"].error
    assert (
        "upload limit of 1 MB" in got["big.png"].error and "--max-upload-mb" in got["big.png"].error
    )
    assert got["astronaut.jpg"].ok and got["astronaut.jpg"].levels
    assert calls and "big.png" not in calls[0], "the oversized file reached the decoder"
    html = results_html(list(got.values()))
    for name in ("empty.jpg", "page.jpg", "cut.jpg", "strip.png", "big.png"):
        assert f'data-source="{name}" data-ok="false"' in html
    assert html.count('class="mdan-error"') == 5
    session.close()


def test_downloads_are_the_predict_output_files(loaded, photos, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    model, weights = loaded
    session = Session(model, max_upload_mb=20)
    names = ("astronaut.jpg", "page.jpg", "coffee.jpg")
    preds = session.predict(_uploads(photos, *names))
    dl = session.downloads(preds)
    monkeypatch.chdir(photos["astronaut.jpg"].parent)  # the CLI names records as it is given
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"cli.{fmt}"
        code = main(["predict", *names, "--weights", str(weights), "--output", str(out)])
        assert code == 1  # page.jpg failed, and said so
        assert Path(getattr(dl, fmt)).read_bytes() == out.read_bytes()
    assert dl.header[:3] == ["source", "ok", "label"]
    assert [row[0] for row in dl.rows] == list(names)
    lines = Path(dl.jsonl).read_text().splitlines()
    assert [json.loads(line)["ok"] for line in lines] == [True, False, True]
    session.close()


def test_attention_pictures_are_the_save_attention_pngs(loaded, photos, tmp_path) -> None:  # noqa: ANN001
    model, weights = loaded
    session = Session(model, max_upload_mb=20)
    ups = _uploads(photos, "astronaut.jpg", "empty.jpg", "coffee.jpg")
    preds = session.predict(ups)
    shown = session.attention(ups, preds)
    assert [caption.split(":")[0] for _, caption in shown] == ["astronaut.jpg", "coffee.jpg"]
    saved = tmp_path / "saved"
    code = main(
        [
            "predict",
            str(photos["astronaut.jpg"]),
            str(photos["coffee.jpg"]),
            "--weights",
            str(weights),
            "--save-attention",
            str(saved),
        ]  # fmt: skip
    )
    assert code == 0
    cli = sorted(saved.glob("*.png"))
    assert len(cli) == 2
    for (png, _), theirs in zip(shown, cli, strict=True):  # astronaut < coffee in both
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(theirs)))
    session.close()
    assert not Path(png).exists(), "close() removes what the session wrote"


def test_page_escapes_names_and_shows_branches_on_the_switch() -> None:
    from mdan_zoo import MDAN, MDANConfig, Preprocessing, Taxonomy

    tree = Taxonomy.from_nested({"<b>pos</b>": ["<script>x</script>", "joy"], "neg": ["fear"]})
    torch.manual_seed(0)
    model = MDAN(tree, MDANConfig(backbone="resnet18", fpn_channels=32),
                 preprocessing=Preprocessing(input_size=64, resize_size=72))  # fmt: skip
    with pytest.warns(UserWarning, match="random"):
        pred = model.predict(torch.rand(3, 80, 90))[0]
    plain, both = results_html([pred]), results_html([pred], branches=True)
    for html in (plain, both):
        assert "<script>" not in html and "&lt;script&gt;" in html and "<b>" not in html
    assert "P_L" not in plain and "P_G" not in plain
    rows = both.count('class="mdan-label"')
    assert rows and both.count("mdan-bar-l") == both.count("mdan-bar-g") == rows
    info = model_info(model, device="cpu")
    assert dict(info["rows"])["weights origin"].startswith("random initialisation")
    assert dict(info["rows"])["calibration"].startswith("none")
    model.set_temperatures([1.25, 2.5], 1.75)  # the panel says which probabilities it shows
    calibrated = dict(model_info(model, device="cpu")["rows"])["calibration"]
    assert "local 1.250, 2.500" in calibrated and "global 1.750" in calibrated
    panel = model_panel(info)
    assert "&lt;b&gt;pos&lt;/b&gt;" in panel and "<b>pos" not in panel
    message = untrained_message(model)
    assert message is not None
    banner = warning_banner(message)
    assert "UntrainedWeightsWarning" in banner and "labels are random" in banner


def test_free_port_skips_a_taken_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert free_port("127.0.0.1", port) > port


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_serve_without_gradio_says_the_pip_command(loaded) -> None:  # noqa: ANN001
    _, weights = loaded
    proc = _run(
        "import sys\n"
        "sys.modules['gradio'] = None  # as if the extra were not installed\n"
        "from mdan_zoo.cli import main\n"
        f"code = main(['serve', '--weights', {str(weights)!r}])\n"
        "print('torch' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    assert proc.returncode == 2, proc.stderr
    assert PIP_COMMAND in proc.stderr and PIP_COMMAND == "pip install 'mdan_zoo[serve]'"
    assert proc.stdout.strip() == "False", "the extra is checked before the model loads"


def test_help_imports_neither_gradio_nor_torch() -> None:
    proc = _run(
        "import contextlib, io, sys\n"
        "from mdan_zoo.cli import main\n"
        "for argv in (['--help'], ['serve', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert out.getvalue(), argv\n"
        "print(sorted(m for m in ('gradio', 'torch') if m in sys.modules))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_serve_flags_and_their_defaults() -> None:
    from mdan_zoo.cli import build_parser

    args = build_parser().parse_args(["serve", "--weights", "runs/fi"])
    assert (args.host, args.port, args.share, args.device) == ("127.0.0.1", 7860, False, None)
    assert args.max_upload_mb > 0 and args.queue >= 1
    args = build_parser().parse_args(
        [
            "serve",
            "--weights",
            "w",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--share",
            "--device",
            "cpu",
            "--max-upload-mb",
            "5",
            "--queue",
            "3",
        ]  # fmt: skip
    )
    assert (args.host, args.port, args.share, args.device) == ("0.0.0.0", 8000, True, "cpu")
    assert (args.max_upload_mb, args.queue) == (5.0, 3)
    for bad in (["--queue", "0"], ["--max-upload-mb", "0"], ["--port", "70000"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--weights", "w", *bad])


def test_ci_installs_what_the_browser_test_needs() -> None:
    """The README's test command (which .ci/run runs) brings Chromium, and the test extra the
    Python side, so tests/test_serve_browser.py runs in CI instead of skipping."""
    import configparser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    assert "apt-get install -y" in command and " chromium chromium-driver " in command
    assert "'.[test]'" in command
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    names = {
        k: [r.split(">")[0].strip() for r in v.split("\n") if r.strip()] for k, v in extras.items()
    }
    assert {"gradio", "selenium"} <= set(names["test"])
    assert names["serve"] == ["gradio"]


def test_settings_that_cannot_work_say_which_and_the_fix(tmp_path: Path) -> None:
    from mdan_zoo.errors import ConfigError, UsageError
    from mdan_zoo.serve import WEIGHTS_ENV, app_from_env, load_served_model

    with pytest.raises(ConfigError, match=WEIGHTS_ENV):
        app_from_env({})
    with pytest.raises(ConfigError, match=f"{WEIGHTS_ENV}: cannot load"):
        app_from_env({WEIGHTS_ENV: str(tmp_path / "nothing-here")})
    with pytest.raises(UsageError, match="--pretrained.*--model mdan_fi"):
        load_served_model(weights="mdan_fi", model_name=None, pretrained=False, token=None)
    with pytest.raises(UsageError, match="cannot load --weights"):
        load_served_model(
            weights=str(tmp_path / "missing"), model_name=None, pretrained=False, token=None
        )
