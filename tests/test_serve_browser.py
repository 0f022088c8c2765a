"""``mdan-zoo serve`` for real: a live server on loopback, driven by headless Chromium.

One server (the demo's small trained model) serves every test here, started as a user starts it:
``python -m mdan_zoo serve --weights ... --port P`` with P already taken, so it must move to the
next free port and say so. The browser (Debian's /usr/bin/chromium with its chromedriver;
nothing is downloaded) uploads a real photo and the test reads back what the page shows: the
labels and probabilities must equal ``model.predict``'s for that file, and the attention picture
must be the one ``--save-attention`` writes. Then hostile files, an oversized upload and a burst
of 50 requests over HTTP, and ``app.py`` as a Space runs it.

These need the ``serve`` and ``test`` extras and Chromium (the README's test command installs all
three). Without them the tests skip on a developer's machine and fail in CI (``CI`` set).
``MDAN_ZOO_SCREENSHOT=docs/images/serve.png`` keeps the screenshot for docs/serve.md.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import importlib.util
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
START_TIMEOUT = 180  # seconds for the server to print its URL (gradio's import is most of it)


def _need(module: str):  # noqa: ANN202
    """Import ``module``; skip without it, except in CI, where it must be there."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is missing in CI ({err}): pip install -e '.[test,serve]'")
        pytest.skip(
            f"{module} not installed (pip install 'mdan_zoo[serve]' and the test extra)",
            allow_module_level=True,
        )


if importlib.util.find_spec("gradio") is None:  # the server's; not imported here (seconds)
    _need("gradio")
_need("gradio_client")


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(
        os.environ,
        PYTHONPATH=path,
        OMP_NUM_THREADS="1",
        GRADIO_ANALYTICS_ENABLED="False",
        NO_PROXY="127.0.0.1,localhost",
    )


class Server:
    """A server process; its output lines are collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _drain(stream, sink: list[str]) -> None:  # noqa: ANN001
        for line in stream:
            sink.append(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in self.out:
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"no {pattern!r}; stdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)[-3000:]}"
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's model (``mdan-zoo demo --quick``: trained on real Fashion-MNIST, seconds)."""
    from mdan_zoo.cli import main

    out = tmp_path_factory.mktemp("demo") / "mdan-demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out / "model"


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def server(
    demo_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Server]]:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cwd = tmp_path_factory.mktemp("serve")
    argv = [sys.executable, "-m", "mdan_zoo", "serve", "--weights", str(demo_model),
            "--port", str(port), "--max-upload-mb", "1", "--queue", "4"]  # fmt: skip
    srv = Server(argv, _env(), cwd)
    try:
        url = srv.wait_for(r"open (http://127\.0\.0\.1:(\d+)/) in a browser")
        assert int(url.group(2)) != port
        assert f"port {port} is taken; using {url.group(2)}" in "".join(srv.err)
        yield url.group(1), srv
    finally:
        taken.close()
        srv.stop()


@pytest.fixture(scope="module")
def model(demo_model: Path):  # noqa: ANN201
    from mdan_zoo import MDAN

    return MDAN.from_pretrained(demo_model)


def _browser():  # noqa: ANN202
    webdriver = _need("selenium.webdriver")
    service_mod = _need("selenium.webdriver.chrome.service")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium and chromium-driver (apt-get install)")
        pytest.skip(
            "no /usr/bin/chromium + /usr/bin/chromedriver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1600,1700", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=service_mod.Service(str(CHROMEDRIVER)), options=options)


def _page_levels(driver) -> list[tuple[str, list[tuple[str, float]]]]:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    card = driver.find_element(By.CSS_SELECTOR, "#mdan-results .mdan-result")
    return [
        (
            table.get_attribute("data-level"),
            [
                (row.get_attribute("data-label"), float(row.get_attribute("data-po")))
                for row in table.find_elements(By.CSS_SELECTOR, "tr.mdan-label")
            ],  # fmt: skip
        )
        for table in card.find_elements(By.CSS_SELECTOR, "table.mdan-level")
    ]


def test_browser_shows_model_predict_and_the_attention(server, model, photo, tmp_path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mdan_zoo._threads import using_threads

    url, _ = server
    # The server runs one intra-op thread (OMP_NUM_THREADS=1 in _env); so does the reference
    # here, whatever the load average makes the default: the summation order, and so the last
    # bits of every float, then match the server's.
    with using_threads(1):
        want = model.predict(photo)[0]
        expected_overlay = np.asarray(model.attention_maps(photo)[0].overlay().convert("RGB"))
    driver = _browser()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#mdan-upload input[type=file]")
        )
        upload.send_keys(str(photo))
        card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#mdan-results .mdan-result"))
        assert card.get_attribute("data-source") == photo.name
        assert card.get_attribute("data-ok") == "true"
        shown = _page_levels(driver)
        # the same labels in the same order, the same probabilities up to float32 rounding: the
        # server runs the model with its own thread count, which changes the summation order
        expected = [(lv.level, [(t.label, t.prob) for t in lv.top_k]) for lv in want.levels]
        assert [(lv, [n for n, _ in top]) for lv, top in shown] == [
            (lv, [n for n, _ in top]) for lv, top in expected
        ], "the page's labels are not model.predict's"
        got = [p for _, top in shown for _, p in top]
        assert got == pytest.approx([p for _, top in expected for _, p in top], rel=1e-5, abs=1e-7)
        path = card.find_element(By.CSS_SELECTOR, ".mdan-path")
        assert path.get_attribute("data-path") == " > ".join(c.label for c in want.consistent)
        assert float(path.get_attribute("data-joint")) == pytest.approx(want.joint_prob, rel=1e-5)
        assert " > ".join(c.label for c in want.consistent) in path.text

        img = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#mdan-attention img"))
        wait.until(
            lambda d: d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img
            )
        )
        with urllib.request.urlopen(img.get_attribute("src"), timeout=30) as answer:
            served = np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"))
        assert served.shape == expected_overlay.shape, (
            "the served picture is not the overlay's size"
        )
        # The same picture up to colour-map rounding: a float32 ulp can move a map value across
        # one of the colour map's 256 steps, which changes that pixel by a few levels. A wrong
        # level's map, another photo or no heat map at all changes most pixels by far more.
        diff = np.abs(served.astype(np.int16) - expected_overlay.astype(np.int16))
        if not (diff.max() <= 8 and (diff > 0).mean() < 0.002):
            rows, cols = np.nonzero(diff.max(axis=2))
            Image.fromarray(served).save(tmp_path / "served.png")
            Image.fromarray(expected_overlay).save(tmp_path / "expected.png")
            pytest.fail(
                "the served attention overlay is not model.attention_maps(photo)[0].overlay(): "
                f"max difference {diff.max()}, {(diff > 0).mean():.3%} of the pixels differ, in "
                f"rows {rows.min()}-{rows.max()} and columns {cols.min()}-{cols.max()} "
                f"(both pictures in {tmp_path})"
            )

        driver.find_element(By.CSS_SELECTOR, "#mdan-branches input[type=checkbox]").click()
        wait.until(lambda d: "P_L" in d.find_element(By.ID, "mdan-results").text)
        rows = driver.find_elements(By.CSS_SELECTOR, "#mdan-results tr.mdan-label")
        first = want.levels[0].top_k[0]
        assert float(rows[0].get_attribute("data-pl")) == first.local_prob
        assert float(rows[0].get_attribute("data-pg")) == first.global_prob
        assert "P_G" in rows[0].text
        time.sleep(0.5)  # the gallery's fade-in
        shot = tmp_path / "serve.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert Image.open(shot).size[0] > 1000
    keep = os.environ.get("MDAN_ZOO_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def _client(url: str):  # noqa: ANN202
    from gradio_client import Client

    return Client(url, verbose=False)


def _ask(client, *paths: Path) -> str:  # noqa: ANN001
    from gradio_client import handle_file

    html, *_ = client.predict(
        [handle_file(str(p)) for p in paths], None, False, api_name="/analyse"
    )
    return html


def _upload(url: str, path: Path) -> tuple[int, bytes]:
    """POST ``path`` to gradio's upload route as a browser does (multipart); status and body."""
    boundary = "mdan-zoo-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url + "gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_hostile_files_get_messages_and_the_server_keeps_serving(server, photo, tmp_path) -> None:  # noqa: ANN001
    url, srv = server
    bad = {
        "empty.jpg": b"",
        "page.jpg": b"<html><body><script>alert(1)</script></body></html>",
        "cut.jpg": photo.read_bytes()[:1500],
    }
    for name, body in bad.items():
        (tmp_path / name).write_bytes(body)
    Image.new("RGB", (1, 20000)).save(tmp_path / "strip.png")
    client = _client(url)
    html = _ask(client, *(tmp_path / n for n in [*bad, "strip.png"]), photo)
    assert html.count('data-ok="false"') == 4 and html.count('data-ok="true"') == 1
    for reason in ("empty (0 bytes)", "not an image file", "truncated", "aspect ratio"):
        assert reason in html
    assert "<script>" not in html

    big = tmp_path / "big.png"  # a valid photo of 1.4 MB: refused by size by the server
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), np.uint8)).save(big)
    status, answer = _upload(url, big)
    assert status == 413 and b"maximum allowed size" in answer
    assert srv.alive()
    assert 'data-ok="true"' in _ask(client, photo), "the server stopped answering"


def test_burst_of_50_completes_or_is_told_busy(server, photo) -> None:  # noqa: ANN001
    url, srv = server
    client = _client(url)

    def one(_: int) -> str:
        try:
            return "ok" if 'data-ok="true"' in _ask(client, photo) else "wrong answer"
        except Exception as err:  # noqa: BLE001 - counted: only "queue full" is a clean refusal
            return "busy" if "queue is full" in str(err).lower() else f"{type(err).__name__}: {err}"

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        outcomes = Counter(pool.map(one, range(50)))
    assert set(outcomes) <= {"ok", "busy"}, outcomes
    assert outcomes["ok"] >= 1 and outcomes["busy"] >= 1, outcomes  # --queue 4 < 50
    assert srv.alive() and 'data-ok="true"' in _ask(client, photo)


def _listening(pid: int, port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on ``port`` (from /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in list(fh)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:
                    found.append(address)
    return found


def test_binds_loopback_only(server) -> None:  # noqa: ANN001
    url, srv = server
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert _listening(srv.proc.pid, port) == ["0100007F"]  # 127.0.0.1, not 0.0.0.0


def test_app_py_runs_as_a_space_runs_it(demo_model, model, photo, tmp_path) -> None:  # noqa: ANN001
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env() | {"MDAN_ZOO_WEIGHTS": str(demo_model), "GRADIO_SERVER_PORT": str(port)}
    srv = Server([sys.executable, str(ROOT / "app.py")], env, tmp_path)
    try:
        srv.wait_for(rf"open http://127\.0\.0\.1:{port}/")
        html = _ask(_client(f"http://127.0.0.1:{port}/"), photo)
        label = model.predict(photo)[0].consistent[-1].label
        assert 'data-ok="true"' in html and label in html
    finally:
        srv.stop()
