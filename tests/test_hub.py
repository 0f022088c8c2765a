"""The zoo against a real Hub server: olah, offline, on 127.0.0.1, serving git repositories that
these tests create from checkpoints written by the project's own save_pretrained.

olah serves ``<mirrors>/models/<org>/<name>`` git repositories through the Hub's HTTP API
(``/api/models/<repo>/revision/<rev>``, ``/<repo>/resolve/<rev>/<file>``), so huggingface_hub
downloads from it exactly as from huggingface.co: branches, full commits, ETags, the cache.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from zoo_helpers import batch, same_state, tiny_mdan

from mdan_zoo import (
    MDAN,
    ChecksumError,
    WeightsError,
    create_model,
    list_pretrained,
    mdan,
    mdan_emotion6,
    mdan_fi,
)
from mdan_zoo.cli import main as cli_main
from mdan_zoo.hub import download
from mdan_zoo.zoo import push_to_hub

GIT = ["git", "-c", "user.name=mdan-zoo tests", "-c", "user.email=tests@mdan-zoo.invalid"]
GIT += [
    "-c",
    "core.compression=0",
    "-c",
    "core.looseCompression=0",
    "-c",
    "init.defaultBranch=main",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OlahServer:
    """olah-cli on 127.0.0.1:<free port>, offline, serving the git repos under ``mirrors``."""

    def __init__(self, mirrors: Path, workdir: Path, probe: str) -> None:
        self.mirrors, self.workdir, self.probe = mirrors, workdir, probe
        self.start()

    def start(self) -> None:
        mirrors, workdir, probe = self.mirrors, self.workdir, self.probe
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{workdir / "repos"}"\n'
            f'mirrors-path = ["{mirrors}"]\n'
            "[accessibility]\noffline = true\n"
        )
        exe = shutil.which("olah-cli") or str(Path(sys.executable).with_name("olah-cli"))
        self.log = workdir / "olah.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "-c", str(config)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        url = f"{self.endpoint}/api/models/{probe}/revision/main"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited early:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"olah did not answer {url} in 60 s:\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    """Commit the folder, storing ``*.safetensors`` as Git LFS objects, as the Hub does.

    Written by hand (the pointer file and ``.git/lfs/objects/<oid>``: exactly what git-lfs
    writes), so the tests need no git-lfs binary. olah serves LFS files straight from disk.
    """
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    for path in repo.glob("*.safetensors"):
        data = path.read_bytes()
        oid = hashlib.sha256(data).hexdigest()
        store = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_bytes(data)
        path.write_text(
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n"
        )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@dataclass
class Hub:
    server: OlahServer
    mirrors: Path
    workdir: Path
    model_a: MDAN
    model_b: MDAN
    rev_a: str
    rev_b: str
    rev_fi: str
    sha_fi: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint


def _tiny_half(taxonomy: str = "fashion_mnist", seed: int = 0) -> MDAN:
    """A tiny MDAN stored in float16: olah streams files in 4 KiB chunks (~7 MB/s here), so
    halving the bytes halves every download. Compare outputs after ``.float()``."""
    return tiny_mdan(taxonomy, seed=seed).half()


def _outputs(model: MDAN, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return [lv.probs for lv in copy.deepcopy(model).float()(x)]


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("olah")
    mirrors = root / "mirrors"
    models = mirrors / "models" / "org"

    # org/fashion: two commits, two different sets of weights; main is the second.
    fashion = models / "fashion"
    fashion.mkdir(parents=True)
    _git(fashion, "init", "-q")
    model_a, model_b = _tiny_half(seed=1), _tiny_half(seed=2)
    model_a.save_pretrained(fashion, metrics={"accuracy_O": {"2": 90.0}})
    rev_a = _commit(fashion, "weights A")
    model_b.save_pretrained(fashion, metrics={"accuracy_O": {"2": 95.0}})
    rev_b = _commit(fashion, "weights B")

    # org/corrupt: config.json records the sha256 of a (small) weights file of which the
    # repository holds a copy with one byte flipped.
    corrupt = models / "corrupt"
    corrupt.mkdir()
    _git(corrupt, "init", "-q")
    model_a.save_pretrained(corrupt)
    from safetensors.torch import save_file

    save_file(
        {"global_head.weight": model_a.global_head.weight.detach()}, corrupt / "model.safetensors"
    )
    config = json.loads((corrupt / "config.json").read_text())
    data = bytearray((corrupt / "model.safetensors").read_bytes())
    config["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    (corrupt / "config.json").write_text(json.dumps(config))
    data[len(data) // 2] ^= 0xFF
    (corrupt / "model.safetensors").write_bytes(bytes(data))
    _commit(corrupt, "flipped byte")

    # org/pickled: only a pickled state dict, as old repos have.
    pickled = models / "pickled"
    pickled.mkdir()
    _git(pickled, "init", "-q")
    (pickled / "config.json").write_text((fashion / "config.json").read_text())
    torch.save({"w": torch.zeros(3)}, pickled / "pytorch_model.bin")
    _commit(pickled, "pickle only")

    # org/fi-tiny: an FI (2 -> 8) model to fine-tune from.
    fi = models / "fi-tiny"
    fi.mkdir()
    _git(fi, "init", "-q")
    _tiny_half("fi", seed=3).save_pretrained(fi)
    sha_fi = hashlib.sha256((fi / "model.safetensors").read_bytes()).hexdigest()
    rev_fi = _commit(fi, "fi")

    server = OlahServer(mirrors, root / "server", probe="org/fashion")
    try:
        yield Hub(server, mirrors, root, model_a, model_b, rev_a, rev_b, rev_fi, sha_fi)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def warm_cache(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hub cache filled once per session from the server: A (pinned), B (main), fi-tiny."""
    cache = tmp_path_factory.mktemp("warm") / "hub"
    with pytest.MonkeyPatch.context() as m:
        m.setenv("HF_ENDPOINT", hub.endpoint)
        for ref in (f"hf-hub:org/fashion@{hub.rev_a}", "hf-hub:org/fashion", "hf-hub:org/fi-tiny"):
            download(ref, cache_dir=cache, progress=False)
    return cache


@pytest.fixture
def on_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """Point this test at the olah server (conftest points HF_ENDPOINT at a dead port)."""
    if not hub.server.running():
        hub.server.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return hub


@pytest.fixture
def warm(on_hub: Hub, warm_cache: Path) -> Hub:
    """This test's (so far empty) cache, filled with a copy of the session's warm cache."""
    shutil.copytree(warm_cache, _cache(), symlinks=True, dirs_exist_ok=True)
    return on_hub


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a TCP connection fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)


def _refuse(self: socket.socket, address: object) -> None:
    raise AssertionError(f"network call to {address} in a test that must make none")


def _cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


# ------------------------------------------------------------------ revisions
def test_default_and_pinned_revisions_load_exactly(warm: Hub) -> None:
    """Two commits, two sets of weights: main gives B, the pinned commit gives A, exactly.
    (The session's warm cache downloaded both from the server; main is resolved there again.)"""
    on_hub = warm
    latest = mdan(weights="hf-hub:org/fashion", progress=False)
    assert same_state(latest, on_hub.model_b)
    # the repository holds float16 weights (see _tiny_half); they load as float32 and run
    assert {p.dtype for p in latest.parameters()} == {torch.float32}
    assert latest.checkpoint_revision == on_hub.rev_b
    pinned = mdan(weights=f"hf-hub:org/fashion@{on_hub.rev_a}", progress=False)
    assert same_state(pinned, on_hub.model_a) and not same_state(pinned, latest)
    assert pinned.checkpoint_revision == on_hub.rev_a
    again = MDAN.from_pretrained("org/fashion", revision=on_hub.rev_a, progress=False)
    assert same_state(again, on_hub.model_a)
    assert again.preprocessing == on_hub.model_a.preprocessing
    x = batch(again)  # real photographs through the checkpoint's own transform
    for saved, loaded in zip(_outputs(on_hub.model_a, x), _outputs(again, x), strict=True):
        assert torch.equal(saved, loaded)
    with pytest.raises(WeightsError, match="two revisions given"):
        mdan(weights=f"hf-hub:org/fashion@{on_hub.rev_a}", revision=on_hub.rev_b)


def test_create_model_with_a_hub_name(warm: Hub) -> None:
    model = create_model(f"hf-hub:org/fashion@{warm.rev_b}", progress=False)
    assert same_state(model, warm.model_b)


def test_timm_loads_a_saved_repo_from_the_hub(warm: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``import mdan_zoo``, timm's own hf-hub path builds the saved model: timm reads
    config.json (architecture ``mdan``, pretrained_cfg), the weights come through mdan_zoo's
    verified loader; its data config is the checkpoint's preprocessing."""
    pytest.importorskip("timm", reason="timm is in the test extra, not in the floor step's venv")
    import huggingface_hub.constants as hf_constants
    import timm
    import timm.data

    # timm downloads config.json with huggingface_hub's import-time endpoint: point it at olah
    url = hf_constants.HUGGINGFACE_CO_URL_TEMPLATE.replace(hf_constants.ENDPOINT, warm.endpoint)
    monkeypatch.setattr(hf_constants, "ENDPOINT", warm.endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url)
    latest = timm.create_model("hf-hub:org/fashion", pretrained=True, cache_dir=_cache())
    assert isinstance(latest, MDAN) and same_state(latest, warm.model_b)
    assert latest.checkpoint_revision == warm.rev_b
    pinned = timm.create_model(
        f"hf-hub:org/fashion@{warm.rev_a}", pretrained=True, cache_dir=_cache()
    )
    assert same_state(pinned, warm.model_a)
    data = timm.data.resolve_model_data_config(pinned)
    side = warm.model_a.preprocessing.input_size
    assert data["input_size"] == (3, side, side)
    shape = timm.create_model("hf-hub:org/fashion", cache_dir=_cache())  # no weights: random
    assert shape.config == warm.model_b.config and not same_state(shape, warm.model_b)


# ------------------------------------------------------------------ damaged files, missing repos
def test_corrupted_file_on_the_server(on_hub: Hub) -> None:
    with pytest.raises(ChecksumError) as err:
        MDAN.from_pretrained("hf-hub:org/corrupt", progress=False)
    message = str(err.value)
    snapshot = next((_cache() / "models--org--corrupt" / "snapshots").iterdir())
    blob = os.path.realpath(snapshot / "model.safetensors")
    assert f"sha256 mismatch for {blob}" in message and f"rm '{blob}'" in message


def test_corrupted_file_in_the_cache(
    warm: Hub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"hf-hub:org/fashion@{warm.rev_a}"
    assert same_state(mdan(weights=ref, progress=False), warm.model_a)
    link = _cache() / "models--org--fashion" / "snapshots" / warm.rev_a / "model.safetensors"
    path = Path(os.path.realpath(link))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=f"sha256 mismatch for {path}"):
        mdan(weights=ref, progress=False)
    fixed = MDAN.from_pretrained(ref, force_download=True, progress=False)  # fetched again
    assert same_state(fixed, warm.model_a)
    path.write_bytes(bytes(data))  # corrupt it once more, for the CLI's fix below
    capsys.readouterr()
    monkeypatch.setenv("TQDM_POSITION", "-1")  # huggingface_hub: bars on without a terminal
    download(ref, force_download=True, progress=True)  # the fix the message gives
    assert "model.safetensors" in capsys.readouterr().err, "progress=True shows a download bar"
    assert same_state(mdan(weights=ref, progress=False), warm.model_a)


def test_verified_shortcut_is_not_fooled_by_a_write_that_keeps_size_and_mtime(
    warm: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9, case 8: a file verified once is not hashed again while unchanged, but an
    in-place write that puts size and mtime back is still caught (st_ctime_ns moves)."""
    from mdan_zoo.hub import _checkpoint as checkpoint
    from mdan_zoo.hub import _integrity as integrity

    hashed: list[Path] = []
    real_hash, real_read = integrity.sha256_file, checkpoint.hashed_reader

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real_hash(path)

    def counting_read(path: Path) -> checkpoint.HashedReader:  # hashes as it reads
        hashed.append(Path(path))
        return real_read(path)

    monkeypatch.setattr(integrity, "sha256_file", counting)
    monkeypatch.setattr(checkpoint, "hashed_reader", counting_read)
    ref = f"hf-hub:org/fashion@{warm.rev_a}"
    assert same_state(mdan(weights=ref, progress=False), warm.model_a)
    assert len(hashed) == 1
    assert same_state(mdan(weights=ref, progress=False), warm.model_a)
    assert len(hashed) == 1, "the second load used the verified record"
    link = _cache() / "models--org--fashion" / "snapshots" / warm.rev_a / "model.safetensors"
    blob = Path(os.path.realpath(link))
    st = blob.stat()
    with open(blob, "r+b") as fh:  # in place: same inode, same size
        fh.seek(st.st_size - 100)
        byte = fh.read(1)
        fh.seek(st.st_size - 100)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = blob.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    with pytest.raises(ChecksumError, match=f"sha256 mismatch for {blob}"):
        mdan(weights=ref, progress=False)
    assert len(hashed) == 2


def test_the_hub_cache_holds_only_huggingface_hub_layout(on_hub: Hub) -> None:
    """Issue 12, item 2: after downloads through mdan_zoo, huggingface_hub's own scan finds
    nothing it does not know; mdan_zoo's verification records live in the assets folder."""
    from huggingface_hub import scan_cache_dir

    mdan(weights=f"hf-hub:org/fashion@{on_hub.rev_a}", progress=False)
    download("hf-hub:org/fi-tiny", progress=False)
    info = scan_cache_dir(_cache())
    assert info.warnings == []
    assert sorted(r.repo_id for r in info.repos) == ["org/fashion", "org/fi-tiny"]
    # CACHEDIR.TAG is written by newer huggingface_hub releases only (not by the 1.1 floor).
    names = sorted(p.name for p in _cache().iterdir() if p.name != "CACHEDIR.TAG")
    assert names == [".locks", "models--org--fashion", "models--org--fi-tiny"]
    records = Path(os.environ["HF_HOME"]) / "assets" / "mdan_zoo" / "verified" / "default"
    assert len(list(records.iterdir())) == 2


def test_missing_repo_and_pickle_only_repo(on_hub: Hub) -> None:
    with pytest.raises(WeightsError, match="repository 'org/nothing' not found"):
        mdan_fi(weights="hf-hub:org/nothing", progress=False)
    with pytest.raises(
        WeightsError,
        match=r"model\.safetensors not found in Hub repository 'org/pickled'.*never unpickled",
    ):
        mdan(weights="hf-hub:org/pickled", progress=False)


# ------------------------------------------------------------------ offline
def test_cold_cache_offline_is_a_clear_error(
    on_hub: Hub, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        WeightsError, match=r"not in the Hub cache .*HF_HUB_OFFLINE=1.*mdan-zoo download"
    ):
        mdan(weights=f"hf-hub:org/fashion@{on_hub.rev_a}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(WeightsError, match="local_files_only=True forbids downloading"):
        mdan(weights="hf-hub:org/fashion", local_files_only=True)


# ------------------------------------------------------------------ taxonomies
def test_taxonomy_mismatch_over_the_hub(warm: Hub) -> None:
    with pytest.raises(
        WeightsError, match=r"taxonomy mismatch.*'fashion_mnist'.*mdan_fi\(\) is for 'fi'"
    ):
        mdan_fi(weights=f"hf-hub:org/fashion@{warm.rev_a}", progress=False)


def test_fine_tuning_transfer_from_the_hub(
    warm: Hub, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.INFO, logger="mdan_zoo.hub._mixin"):
        model = mdan_emotion6(weights="hf-hub:org/fi-tiny", taxonomy="emotion6", progress=False)
    report = model.transfer_report
    assert report.source_taxonomy == "fi" and report.target_taxonomy == "emotion6"
    assert report.transferred == ("backbone", "f5", "laterals.0", "laterals.1", "local_heads.0")
    assert report.reinitialised == ("local_heads.1", "global_head")
    assert report.copied_rows["local_heads.1"] == ("anger", "disgust", "fear", "sadness")
    assert [r.getMessage() for r in caplog.records if "transfer" in r.getMessage()] == [
        report.summary()
    ]
    from huggingface_hub import ModelCard  # its card names the model it was fine-tuned from

    card = ModelCard.load(model.save_pretrained(tmp_path / "ft") / "README.md")
    assert card.data.base_model == "org/fi-tiny"
    with pytest.raises(WeightsError, match="taxonomy mismatch"):
        mdan_emotion6(weights="hf-hub:org/fi-tiny", progress=False)


def test_pretrained_true_follows_a_published_registry_entry(
    warm: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pretrained=True downloads the entry's pinned commit and checks the entry's sha256."""
    import dataclasses

    from mdan_zoo import registry

    entry = dataclasses.replace(
        registry.get_weights("mdan_fi"),
        hub_repo="org/fi-tiny",
        revision=warm.rev_fi,
        sha256=warm.sha_fi,
        status="published",
    )
    monkeypatch.setitem(registry._REGISTRY, "mdan_fi", entry)
    assert "mdan_fi" in list_pretrained()
    model = mdan_fi(pretrained=True, progress=False)
    assert model.checkpoint_revision == warm.rev_fi and model.num_classes == (2, 8)
    bad = dataclasses.replace(entry, sha256="0" * 64)
    monkeypatch.setitem(registry._REGISTRY, "mdan_fi", bad)
    with pytest.raises(ChecksumError, match=r"expected 0{64} \(the registry\)"):
        mdan_fi(pretrained=True, progress=False)
    # Another revision than the pinned one is checked against its own config.json instead.
    assert mdan_fi(pretrained=True, revision="main", progress=False).num_classes == (2, 8)


# ------------------------------------------------------------------ CLI download, push
def test_cli_download_then_air_gapped_load(
    on_hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    carry = tmp_path / "carry"
    monkeypatch.setenv("TQDM_POSITION", "-1")  # bars would show without a terminal...
    assert (
        cli_main(["download", "hf-hub:org/fashion", "--cache-dir", str(carry), "--no-progress"])
        == 0
    )
    out = capsys.readouterr()
    assert out.err == "", "...but --no-progress draws none"
    folder = Path(out.out.strip())
    assert folder.name == on_hub.rev_b and (folder / "model.safetensors").is_file()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the air gap
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert same_state(mdan(weights="hf-hub:org/fashion", cache_dir=carry), on_hub.model_b)
    pinned = f"hf-hub:org/fashion@{on_hub.rev_b}"
    assert same_state(mdan(weights=pinned, cache_dir=carry), on_hub.model_b)
    assert cli_main(["download", "hf-hub:org/fashion", "--cache-dir", str(tmp_path / "empty")]) == 1
    assert "not in the Hub cache" in capsys.readouterr().err


class _RecordingApi:
    """Stands in for HfApi (olah serves repositories, it does not accept uploads)."""

    def __init__(self, copy_to: Path) -> None:
        self.calls: list[str] = []
        self.copy_to = copy_to

    def create_repo(self, repo_id: str, **kw: object) -> None:
        self.calls.append(f"create_repo {repo_id}")
        self.create_kw = kw

    def upload_folder(self, *, repo_id: str, folder_path: str, **kw: object) -> object:
        self.calls.append(f"upload_folder {repo_id}")
        self.upload_kw = kw
        shutil.copytree(folder_path, self.copy_to, dirs_exist_ok=True)
        return type("CommitInfo", (), {"oid": "f" * 40})()


def test_push_to_hub_uploads_a_loadable_checkpoint(tmp_path: Path) -> None:
    api = _RecordingApi(tmp_path / "uploaded")
    model = tiny_mdan(seed=5)
    assert push_to_hub(model, "me/my-mdan", metrics={"acc": 1.0}, api=api) == "f" * 40
    assert api.calls == ["create_repo me/my-mdan", "upload_folder me/my-mdan"]
    assert sorted(p.name for p in api.copy_to.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert same_state(MDAN.from_pretrained(api.copy_to), model)
    assert api.create_kw["private"] is None and api.upload_kw["revision"] is None
    # huggingface_hub's PyTorchModelHubMixin.push_to_hub arguments reach HfApi
    model.push_to_hub("me/my-mdan", branch="dev", create_pr=True, private=True, api=api)
    assert api.create_kw["private"] is True
    assert api.upload_kw["revision"] == "dev" and api.upload_kw["create_pr"] is True
    push_to_hub(model, "me/my-mdan", revision="old-name", delete_patterns="*.bin", api=api)
    assert api.upload_kw["revision"] == "old-name" and api.upload_kw["delete_patterns"] == "*.bin"
    with pytest.raises(ValueError, match="give one"):
        model.push_to_hub("me/my-mdan", branch="a", revision="b", api=api)


def test_from_pretrained_and_push_to_hub_take_the_mixins_arguments(tmp_path: Path) -> None:
    """Issue 12: the arguments huggingface_hub's PyTorchModelHubMixin names (the first one of
    from_pretrained included) exist with its defaults; 0.1.0's ``repo_or_dir=`` still works."""
    import inspect

    from huggingface_hub import PyTorchModelHubMixin

    for ours, theirs in (
        (MDAN.from_pretrained, PyTorchModelHubMixin.from_pretrained),
        (MDAN.push_to_hub, PyTorchModelHubMixin.push_to_hub),
    ):
        mine = inspect.signature(ours).parameters
        for name, param in inspect.signature(theirs).parameters.items():
            if name in ("self", "model_kwargs", "config", "model_card_kwargs", "commit_message"):
                continue  # config / card: mdan_zoo writes its own; the message names MDAN
            assert name in mine, name
            assert mine[name].kind == param.kind, name
            if name != "pretrained_model_name_or_path":  # ours defaults to None: 0.1.0's alias
                assert mine[name].default == param.default, name
    model = tiny_mdan(seed=3)
    folder = model.save_pretrained(tmp_path / "m")
    assert same_state(MDAN.from_pretrained(pretrained_model_name_or_path=folder), model)
    assert same_state(MDAN.from_pretrained(repo_or_dir=folder), model)
    with pytest.raises(TypeError, match="takes the checkpoint once"):
        MDAN.from_pretrained(folder, repo_or_dir=folder)


def test_the_push_command_passes_branch_and_pull_request_to_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mdan-zoo push RUN REPO --branch dev --create-pr` reaches HfApi.upload_folder as
    huggingface_hub names them; --branch and --revision that disagree are a usage error."""
    import huggingface_hub

    from mdan_zoo import TrainConfig
    from mdan_zoo.training._trainer import Trainer

    run = tmp_path / "run"
    Trainer(
        TrainConfig(
            name="tiny", taxonomy="fashion_mnist", dataset="fashion_mnist", subset_per_class=4,
            backbone="resnet18", model={"fpn_channels": 32}, input_size=32, resize_size=32,
            pretrained="none", epochs=1, batch_size=8, max_steps_per_epoch=1, workers=0,
            device="cpu", progress=False, eval_test=False, output_dir=str(run),
        )
    ).fit()  # fmt: skip
    api = _RecordingApi(tmp_path / "uploaded")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: api)
    assert cli_main(["push", str(run), "me/mdan", "--branch", "dev", "--create-pr"]) == 0
    assert capsys.readouterr().out == f"pushed me/mdan at commit {'f' * 40}\n"
    assert api.upload_kw["revision"] == "dev" and api.upload_kw["create_pr"] is True
    assert same_state(MDAN.from_pretrained(api.copy_to), MDAN.from_pretrained(run))
    assert cli_main(["push", str(run), "me/mdan", "--revision", "old"]) == 0
    assert api.upload_kw["revision"] == "old" and api.upload_kw["create_pr"] is None
    assert cli_main(["push", str(run), "me/mdan", "--branch", "a", "--revision", "b"]) == 1
    assert "give one" in capsys.readouterr().err


# ------------------------------------------------------------------ last: stops the server
def test_warm_cache_with_the_server_stopped_makes_no_network_call(
    warm: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache was filled from the server; now the server is gone and offline mode is on.
    A pinned commit needs no pre-check of our own: huggingface_hub's hf_hub_download returns it
    from the cache without a request (issue 12, item 8).
    (Kept last in the file: later tests would restart the session server.)"""
    warm.server.stop()
    with (
        pytest.raises(OSError),
        socket.create_connection(("127.0.0.1", warm.server.port), timeout=2),
    ):
        pass  # the server is really gone
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    # A pinned full commit in a warm cache makes no call, even without offline mode.
    assert same_state(mdan(weights=f"hf-hub:org/fashion@{warm.rev_a}"), warm.model_a)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert same_state(mdan(weights="hf-hub:org/fashion"), warm.model_b)  # main, from the cache
    assert same_state(MDAN.from_pretrained("org/fashion", revision=warm.rev_a), warm.model_a)
