"""A hostile Hub server on 127.0.0.1 (issue 18, problems 1, 6 and 7, and a full disk).

The server answers what a test tells it to: an ``ETag`` or ``X-Repo-Commit`` that is a path
(``../../x``, ``/abs``), a body longer than config.json records and sent without a length, a
connection it never answers, a body dripped a byte at a time. Each test proves that nothing is
written outside the cache (nor, for refused answers, inside it), that at most the recorded size
is ever on disk, and that every request ends by its deadline with a message naming the server
and the knob.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from train_helpers import tiny_config
from zoo_helpers import files_under, tiny_mdan

from mdan_zoo import MDAN, WeightsError
from mdan_zoo.cli import main as cli_main

COMMIT = "c" * 40


@dataclass
class Answer:
    """How the server answers one file: headers, body, and how it sends it."""

    body: bytes = b""
    etag: str | None = None
    commit: str | None = COMMIT
    length: bool = True  # send Content-Length (else the body is streamed until close)
    drip: float = 0.0  # seconds between single bytes of the body
    hang: bool = False  # accept, read the request, never answer
    repeat: int = 1  # send the body this many times (a stream longer than it says)


@dataclass
class HostileHub:
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool) -> None:
                hub.requests.append((self.command, self.path))
                hub.authorizations.append(self.headers.get("Authorization"))
                name = self.path.rsplit("/", 1)[-1]
                answer = hub.answers.get(name)
                if answer is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if answer.hang:
                    time.sleep(3600)
                    return
                self.send_response(200)
                if answer.commit is not None:
                    self.send_header("X-Repo-Commit", answer.commit)
                etag = answer.etag or hashlib.sha256(answer.body).hexdigest()
                self.send_header("ETag", f'"{etag}"')
                total = len(answer.body) * answer.repeat
                if answer.length:
                    self.send_header("Content-Length", str(total))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                if not with_body:
                    return
                sent = 0
                try:
                    for _ in range(answer.repeat):
                        if answer.drip:
                            for i in range(len(answer.body)):
                                self.wfile.write(answer.body[i : i + 1])
                                self.wfile.flush()
                                sent += 1
                                time.sleep(answer.drip)
                        else:
                            self.wfile.write(answer.body)
                            sent += len(answer.body)
                except OSError:  # the client hung up: what a stopped download does
                    pass
                hub.sent[name] = sent
                self.close_connection = True

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
                self._answer(False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(True)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileHub]:
    server = HostileHub()
    server.start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A real checkpoint's config.json and model.safetensors."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_mdan(seed=5).save_pretrained(folder)
    return (folder / "config.json").read_bytes(), (folder / "model.safetensors").read_bytes()


def _config_recording(config: bytes, size: int, sha256: str) -> bytes:
    data = json.loads(config)
    data["weights"] = {**data["weights"], "size": size, "sha256": sha256}
    return json.dumps(data).encode()


def _outside(root: Path, cache: Path) -> list[str]:
    """Files (not folders) under ``root`` that are not in ``cache``, and any name with ESCAPED."""
    return [
        p
        for p in files_under(root)
        if "ESCAPED" in p or (not (root / p).is_dir() and not (root / p).is_relative_to(cache))
    ]


# ------------------------------------------------------------------ problem 1: names from the server
HOSTILE_TAGS = [
    "../../../../ESCAPED_ETAG",
    "../ESCAPED_ETAG",
    "/tmp/ESCAPED_ABSOLUTE_ETAG",
    "a/../../ESCAPED",
    "..",
    ".hidden",
    "x" * 300,
    "a b",
    "..\\..\\ESCAPED",
]


@pytest.mark.parametrize("etag", HOSTILE_TAGS, ids=lambda t: repr(t)[:30])
@pytest.mark.parametrize("file", ["config.json", "model.safetensors"])
def test_an_etag_never_names_a_file(
    etag: str, file: str, hub: HostileHub, tmp_path: Path, checkpoint: tuple[bytes, bytes]
) -> None:
    config, weights = checkpoint
    hub.answers = {"config.json": Answer(config), "model.safetensors": Answer(weights)}
    hub.answers[file].etag = etag
    cache = tmp_path / "a" / "b" / "c" / "cache"
    with pytest.raises(WeightsError, match="answered ETag with") as err:
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    assert hub.endpoint in str(err.value)
    assert _outside(tmp_path, cache) == []
    assert not Path("/tmp/ESCAPED_ABSOLUTE_ETAG").exists()
    assert ("GET", f"/org/x/resolve/main/{file}") not in hub.requests, "refused before the body"


@pytest.mark.parametrize(
    "commit", ["../../../../ESCAPED", "a" * 39, "A" * 40, "", "/abs" + "a" * 36]
)
def test_a_commit_header_never_names_a_folder(
    commit: str, hub: HostileHub, tmp_path: Path, checkpoint: tuple[bytes, bytes]
) -> None:
    hub.answers = {"config.json": Answer(checkpoint[0], commit=commit)}
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="answered X-Repo-Commit with"):
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    assert _outside(tmp_path, cache) == []
    assert [p for p in files_under(cache) if "snapshots" in p or "blobs/" in p] == []


def test_the_default_cache_is_safe_too(
    hub: HostileHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: tuple[bytes, bytes],
) -> None:
    """Five ``../`` from the default cache reach the home folder: not any more."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    hub.answers = {"config.json": Answer(checkpoint[0], etag="../../../../../ESCAPED_ETAG")}
    assert cli_main(["download", "hf-hub:org/x", "--no-progress"]) == 1
    assert not (home / "ESCAPED_ETAG").exists() and not (home / "ESCAPED_ETAG.lock").exists()
    assert [p for p in files_under(home) if "ESCAPED" in p] == []


def test_valid_answers_download_and_load(
    hub: HostileHub, tmp_path: Path, checkpoint: tuple[bytes, bytes]
) -> None:
    """The control: the same server with sound headers gives a model, in huggingface_hub's
    cache layout (a second load asks for nothing but metadata)."""
    from huggingface_hub import scan_cache_dir

    hub.answers = {"config.json": Answer(checkpoint[0]), "model.safetensors": Answer(checkpoint[1])}
    cache = tmp_path / "cache"
    model = MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    assert model.taxonomy.name == tiny_mdan().taxonomy.name
    info = scan_cache_dir(cache)
    assert info.warnings == [] and [r.repo_id for r in info.repos] == ["org/x"]
    assert (cache / "models--org--x" / "refs" / "main").read_text() == COMMIT
    hub.requests.clear()
    MDAN.from_pretrained(f"hf-hub:org/x@{COMMIT}", cache_dir=cache, progress=False)
    assert hub.requests == [], "a cached pinned commit needs no request"


# ------------------------------------------------------------------ problem 7: longer than recorded
def _sample_peak(folder: Path, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        size = 0
        for root, _, names in os.walk(folder):
            for n in names:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(root, n)).st_size
        peak[0] = max(peak[0], size)
        time.sleep(0.002)


@pytest.mark.parametrize("length", [False, True], ids=["no length", "a length too long"])
def test_a_stream_longer_than_recorded_stops_at_the_recorded_size(
    length: bool, hub: HostileHub, tmp_path: Path, checkpoint: tuple[bytes, bytes]
) -> None:
    config, weights = checkpoint
    recorded = 1_000_000
    hub.answers = {
        "config.json": Answer(_config_recording(config, recorded, "0" * 64)),
        "model.safetensors": Answer(weights[:recorded], length=length, repeat=20),
    }
    cache = tmp_path / "cache"
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_sample_peak, args=(cache, stop, peak))
    sampler.start()
    try:
        with pytest.raises(WeightsError) as err:
            MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    finally:
        stop.set()
        sampler.join()
    message = str(err.value)
    assert hub.endpoint in message and "1,000,000" in message, message
    assert [p for p in files_under(cache) if p.endswith(".incomplete")] == []
    assert peak[0] <= recorded + len(config) + 4096, peak
    print(f"peak disk use of the cache during the hostile stream: {peak[0]:,} bytes")


def test_a_file_without_a_recorded_size_is_capped(
    hub: HostileHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: tuple[bytes, bytes],
) -> None:
    config, weights = checkpoint
    data = json.loads(config)
    del data["weights"]["size"]
    hub.answers = {
        "config.json": Answer(json.dumps(data).encode()),
        "model.safetensors": Answer(weights[:100_000], length=False, repeat=50),
    }
    monkeypatch.setenv("MDAN_ZOO_HUB_MAX_BYTES", "200000")
    cache = tmp_path / "cache"
    with pytest.raises(
        WeightsError, match=r"200,000 bytes a file may have .*MDAN_ZOO_HUB_MAX_BYTES"
    ):
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    assert len([p for p in files_under(cache) if "blobs/" in p]) == 1  # config.json's only


def test_a_config_json_that_never_ends_is_capped(
    hub: HostileHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdan_zoo.hub import _checkpoint

    monkeypatch.setattr(_checkpoint, "MAX_CONFIG_BYTES", 50_000)
    hub.answers = {"config.json": Answer(b"{" + b" " * 9_999, length=False, repeat=100)}
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match=r"sent more of org/x/config.json than the 50,000"):
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    assert [p for p in files_under(cache) if "blobs/" in p] == []


def test_the_cli_flags_name_the_hub_settings() -> None:
    from mdan_zoo.cli import _common
    from mdan_zoo.hub import CONNECT_TIMEOUT_ENV, TIMEOUT_ENV

    assert (_common.CONNECT_TIMEOUT_ENV, _common.TIMEOUT_ENV) == (CONNECT_TIMEOUT_ENV, TIMEOUT_ENV)


# ------------------------------------------------------------------ problem 6: deadlines
def test_a_server_that_never_answers_meets_the_total_deadline(
    hub: HostileHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hub.answers = {"config.json": Answer(hang=True)}
    monkeypatch.setenv("MDAN_ZOO_HUB_TIMEOUT", "1.5")
    t0 = time.monotonic()
    with pytest.raises(WeightsError) as err:
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=tmp_path / "cache", progress=False)
    assert time.monotonic() - t0 < 6
    message = str(err.value)
    assert hub.endpoint in message and "1.5 s" in message and "MDAN_ZOO_HUB_TIMEOUT" in message
    assert "--hub-timeout" in message
    # the flag sets it for one command
    monkeypatch.delenv("MDAN_ZOO_HUB_TIMEOUT")
    t0 = time.monotonic()
    argv = ["download", "hf-hub:org/x", "--hub-timeout", "1", "--cache-dir", str(tmp_path / "c")]
    assert cli_main([*argv, "--no-progress"]) == 1
    assert time.monotonic() - t0 < 6 and "within 1 s" in capsys.readouterr().err
    assert "MDAN_ZOO_HUB_TIMEOUT" not in os.environ


def test_train_takes_the_hub_flags_for_init_from(
    hub: HostileHub,
    tmp_path: Path,
    fashion_mnist_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train`` reaches the Hub through ``init_from=hf-hub:...``: it takes ``--token`` and
    the deadlines as every other such command, and the download meets them (issue 18)."""
    from mdan_zoo.cli import build_parser

    helptext = build_parser()._subparsers._group_actions[0].choices["train"].format_help()  # type: ignore[union-attr]
    assert all(f in helptext for f in ("--token", "--connect-timeout", "--hub-timeout"))
    hub.answers = {"config.json": Answer(hang=True)}
    cfg = tiny_config(
        tmp_path / "t", pretrained="none", init_from="hf-hub:org/x", subset_per_class=2
    )
    cfg.to_json(tmp_path / "t.json")
    t0 = time.monotonic()
    argv = ["train", str(tmp_path / "t.json"), "--hub-timeout", "1", "--token", "hf_mine"]
    assert cli_main([*argv, "--connect-timeout", "2"]) == 1
    assert time.monotonic() - t0 < 30
    message = capsys.readouterr().err
    assert hub.endpoint in message and "within 1 s" in message and "--hub-timeout" in message
    assert hub.authorizations and set(hub.authorizations) == {"Bearer hf_mine"}
    assert "MDAN_ZOO_HUB_TIMEOUT" not in os.environ


def test_a_dripping_body_meets_the_total_deadline(
    hub: HostileHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    checkpoint: tuple[bytes, bytes],
) -> None:
    config, weights = checkpoint
    hub.answers = {
        "config.json": Answer(config),
        "model.safetensors": Answer(weights[:10_000], drip=0.2),
    }
    monkeypatch.setenv("MDAN_ZOO_HUB_TIMEOUT", "2")
    cache = tmp_path / "cache"
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=r"did not send org/x/model.safetensors within 2 s"):
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=cache, progress=False)
    assert time.monotonic() - t0 < 8
    assert len([p for p in files_under(cache) if "blobs/" in p]) == 1  # config.json's only


def test_a_connection_never_accepted_meets_the_connect_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listening socket whose backlog is full: the kernel drops further handshakes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (never accepted)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel accepts handshakes beyond a full backlog")
        except (TimeoutError, OSError):
            pass
        finally:
            probe.close()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("MDAN_ZOO_HUB_CONNECT_TIMEOUT", "1")
        t0 = time.monotonic()
        with pytest.raises(WeightsError) as err:
            MDAN.from_pretrained("hf-hub:org/x", cache_dir=tmp_path / "cache", progress=False)
        assert time.monotonic() - t0 < 5
        message = str(err.value)
        assert "did not accept a connection within 1 s" in message, message
        assert "MDAN_ZOO_HUB_CONNECT_TIMEOUT" in message and "--connect-timeout" in message
    finally:
        for s in fillers:
            s.close()
        server.close()


def test_bad_deadline_settings_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for value in ("0", "-1", "nan", "soon"):
        monkeypatch.setenv("MDAN_ZOO_HUB_TIMEOUT", value)
        with pytest.raises(WeightsError, match="MDAN_ZOO_HUB_TIMEOUT=.* is not a positive number"):
            MDAN.from_pretrained("hf-hub:org/x", cache_dir=tmp_path, progress=False)


# ------------------------------------------------------------------ a full disk (problem 9)


def test_a_full_disk_during_a_download(
    hub: HostileHub, small_disk: Path, checkpoint: tuple[bytes, bytes]
) -> None:
    config, weights = checkpoint  # 45 MB of weights for a 2 MB disk
    hub.answers = {"config.json": Answer(config), "model.safetensors": Answer(weights)}
    with pytest.raises(WeightsError) as err:
        MDAN.from_pretrained("hf-hub:org/x", cache_dir=small_disk / "cache", progress=False)
    message = str(err.value)
    assert "no space left" in message and str(small_disk) in message, message
    assert [p for p in files_under(small_disk) if p.endswith(".incomplete")] == []
