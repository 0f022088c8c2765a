"""One Hub file into the Hub cache, through paths this module names, never ones a server names.

huggingface_hub's ``hf_hub_download`` builds cache paths from the server's ``ETag`` and
``X-Repo-Commit`` headers unchecked (``ETag: "../../x"`` writes outside the cache), waits on a
stalled server as long as it sends a byte per read timeout, and writes as many bytes as the
server sends. Here the metadata request is huggingface_hub's (redirects, errors, token), and
what it answers is validated before any path is built from it; the body is streamed by this
module under the deadlines and size cap of :class:`~._options.HubDeadlines`, into a temporary
file that is renamed into place only when complete. The cache layout (``blobs/``, ``snapshots/``, ``refs/``)
is huggingface_hub's, so offline loads, ``hf cache scan`` and ``hf_hub_download`` read it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import WeightsError
from ._options import HubDeadlines

__all__ = ["fetch", "server_of"]

logger = logging.getLogger(__name__)

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
# A cache file name: the Hub's git-blob SHA-1 / LFS SHA-256, or a proxy's "<hash>-<n>" tag.
_SAFE_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def server_of(endpoint: str | None) -> str:
    return endpoint or "https://huggingface.co"


def _httpx() -> Any:
    """The HTTP client module huggingface_hub uses (``httpx2`` in newer releases)."""
    import importlib

    try:
        return importlib.import_module("httpx2")
    except ImportError:
        return importlib.import_module("httpx")


def _timeout(deadlines: HubDeadlines, start: float) -> Any:
    left = deadlines.total - (time.monotonic() - start)
    if left <= 0:
        raise TimeoutError
    return _httpx().Timeout(left, connect=min(deadlines.connect, left))


def _deadline_error(
    err: BaseException, what: str, server: str, deadlines: HubDeadlines
) -> WeightsError:
    if isinstance(err, _httpx().ConnectTimeout):
        return WeightsError(
            f"the Hub at {server} did not accept a connection within {deadlines.connect:g} s "
            f"(fetching {what}): check the connection and HF_ENDPOINT, or allow longer with "
            f"{deadlines.knob('connect')}; offline, set HF_HUB_OFFLINE=1 to use the cache"
        )
    return WeightsError(
        f"the Hub at {server} did not send {what} within {deadlines.total:g} s (a stalled or "
        f"very slow server): try again later, or allow longer with {deadlines.knob('total')}"
    )


def _checked(value: str | None, pattern: re.Pattern[str], header: str, server: str) -> str:
    if value is None or not pattern.match(value):
        shown = "no value" if value is None else repr(value[:80])
        raise WeightsError(
            f"the Hub at {server} answered {header} with {shown}, which is not a valid "
            "identifier: refused before any file was written (check HF_ENDPOINT: is this a "
            "Hugging Face Hub server?)"
        )
    return value


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp)
    except OSError:  # no symlinks here (some Windows set-ups): a copy, as huggingface_hub does
        import shutil

        shutil.copyfile(blob, tmp)
    os.replace(tmp, pointer)


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = storage / "refs" / revision
    with contextlib.suppress(OSError):
        if ref.read_text() == commit:
            return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)


def fetch(
    repo_id: str,
    filename: str,
    *,
    revision: str,
    cache: Path,
    token: Any,
    endpoint: str | None,
    limit: int,
    limit_why: str,
    deadlines: HubDeadlines,
    force_download: bool = False,
    progress: bool = True,
) -> Path:
    """``repo_id/filename`` at ``revision``: its path in the Hub cache ``cache``, downloaded if
    needed. At most ``limit`` bytes are ever written (``limit_why`` says why, in messages)."""
    from filelock import Timeout
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock

    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    if not force_download and _HEX40.match(revision):
        pointer = storage / "snapshots" / revision / filename
        if pointer.is_file():  # a pinned commit already cached: no request at all
            return pointer
    server, what = server_of(endpoint), f"{repo_id}/{filename}"
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    start = time.monotonic()
    try:
        meta = get_hf_file_metadata(
            url,
            token=token,
            timeout=_timeout(deadlines, start),
            library_name="mdan_zoo",
            endpoint=endpoint,
        )
    except _timeouts() as err:
        raise _deadline_error(err, what, server, deadlines) from None
    commit = _checked(meta.commit_hash, _HEX40, "X-Repo-Commit", server)
    etag = _checked(meta.etag, _SAFE_TAG, "ETag", server)
    if meta.size is not None and meta.size > limit:  # a shorter file fails its checksum
        raise WeightsError(
            f"the Hub at {server} sends {what} as {meta.size:,} bytes, more than the "
            f"{limit:,} {limit_why}: refused before downloading (a wrong or tampered file; "
            "check HF_ENDPOINT, the repository and the revision)"
        )
    pointer = storage / "snapshots" / commit / filename
    blob = storage / "blobs" / etag
    if not force_download and pointer.is_file():
        _write_ref(storage, revision, commit)
        return pointer
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = cache / ".locks" / storage.name / f"{etag}.lock"  # huggingface_hub's lock too
    lock.parent.mkdir(parents=True, exist_ok=True)
    left = max(deadlines.total - (time.monotonic() - start), 0.01)
    try:
        with WeakFileLock(lock, timeout=left):
            for stale in blob.parent.glob(f"{etag}.*.incomplete"):  # killed downloads'
                stale.unlink(missing_ok=True)
            if force_download or not blob.is_file():
                job = _Download(meta.location, url, what, server, token, deadlines, start)
                job.run(blob, limit, limit_why, meta.size, progress)
            _link(blob, pointer)
    except Timeout:
        raise WeightsError(
            f"another process has been downloading {what} into {cache} for longer than the "
            f"{deadlines.total:g} s deadline: wait for it, or allow longer with "
            f"{deadlines.knob('total')}"
        ) from None
    _write_ref(storage, revision, commit)
    return pointer


def _timeouts() -> tuple[type[BaseException], ...]:
    return (_httpx().TimeoutException, TimeoutError)


_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "a read-only file system",
    errno.EACCES: "permission denied",
}


class _Download:
    """One GET of a file's body into the cache, under the deadlines."""

    def __init__(
        self,
        location: str,
        url: str,
        what: str,
        server: str,
        token: Any,
        deadlines: HubDeadlines,
        start: float,
    ) -> None:
        self.location, self.url, self.what, self.server = location, url, what, server
        self.token, self.deadlines, self.start = token, deadlines, start

    def run(self, blob: Path, limit: int, limit_why: str, size: int | None, progress: bool) -> None:
        """Stream into a temporary file beside ``blob`` (never more than ``limit`` bytes),
        then rename it to ``blob``; the temporary file goes whatever happens."""
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
        from huggingface_hub.utils import tqdm as hf_tqdm

        # the token goes to the Hub only, not to the storage host a file is redirected to
        same_host = urlparse(self.location).netloc == urlparse(self.url).netloc
        headers = build_hf_headers(
            token=self.token if same_host else False, library_name="mdan_zoo"
        )
        headers["Accept-Encoding"] = "identity"
        tmp = blob.with_name(f"{blob.name}.{uuid.uuid4().hex[:8]}.incomplete")
        written = 0
        try:
            with (
                get_session().stream(
                    "GET",
                    self.location,
                    headers=headers,
                    timeout=_timeout(self.deadlines, self.start),
                    follow_redirects=True,
                ) as response,
                open(tmp, "wb") as fh,
                hf_tqdm(
                    total=size, unit="B", unit_scale=True, desc=self.what, disable=not progress
                ) as bar,
            ):
                hf_raise_for_status(response)
                for chunk in response.iter_bytes():  # as it arrives: each read meets the clock
                    if written + len(chunk) > limit:
                        raise WeightsError(
                            f"the Hub at {self.server} sent more of {self.what} than the "
                            f"{limit:,} {limit_why}: stopped at {written:,} bytes and removed "
                            "(a wrong or hostile server; check HF_ENDPOINT and the repository)"
                        )
                    fh.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
                    if time.monotonic() - self.start > self.deadlines.total:
                        raise TimeoutError
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, blob)
        except _timeouts() as err:
            raise _deadline_error(err, self.what, self.server, self.deadlines) from None
        except OSError as err:
            if err.errno not in _STORAGE_ERRNOS:
                raise
            raise WeightsError(
                f"cannot download {self.what} into {blob.parent}: {_STORAGE_ERRNOS[err.errno]}; "
                "free some space there or use another cache (cache_dir=, --cache-dir or "
                "HF_HUB_CACHE), then run it again; nothing half-written was kept"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
