"""What a failed or refused Hub request means, said as a :class:`WeightsError` with the fix.

huggingface_hub raises its own HTTP errors, and lets its HTTP client's connection errors
through on uploads; these become one error that names the repository, the server and what to
do (log in, go online, check the name), and never repeats the token. ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE`` are read at call time (huggingface_hub reads them once, at import).
"""

from __future__ import annotations

import contextlib
import importlib
import os

from ._checkpoint import WeightsError

__all__ = [
    "CONNECT_TIMEOUT",
    "Token",
    "endpoint",
    "hub_error",
    "network_errors",
    "offline_mode",
    "unreachable",
]

CONNECT_TIMEOUT = 3.0
"""Seconds the quick reachability probe waits for the Hub's TCP port (name lookup included)."""

_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

Token = str | bool | None
"""As huggingface_hub: a token string; ``None`` (or ``True``) for ``HF_TOKEN`` or the stored
``hf auth login``; ``False`` for none."""


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now rather than at import."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def unreachable(url: str | None = None, *, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the Hub at ``url`` (default: ``HF_ENDPOINT`` or huggingface.co) cannot be reached
    (``"connection refused"``, ``"no answer within 3 s"``, ...), or None when its port answers.

    One TCP connect, bounded by ``timeout`` even where the name lookup hangs, so a machine
    without network learns it in seconds instead of after huggingface_hub's five retries
    (23 s). Behind a proxy (``HTTPS_PROXY`` & co.) it says nothing: the proxy decides."""
    import socket
    import threading
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    parts = urlsplit(url or endpoint() or "https://huggingface.co")
    host = parts.hostname
    if not host:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    found: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            found.append(None)
        except OSError as err:
            found.append(err.strerror or type(err).__name__)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if not found:
        return f"no answer within {timeout:g} s"
    reason = found[0]
    return None if reason is None else reason.lower()


def network_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub lets through on a refused or failed request (HTTP errors, and the
    raw connection errors of whichever HTTP client this huggingface_hub uses)."""
    from huggingface_hub.errors import HfHubHTTPError

    found: list[type[BaseException]] = [HfHubHTTPError, ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):  # whichever client this huggingface_hub uses
        with contextlib.suppress(ImportError, AttributeError):
            found.append(importlib.import_module(module).HTTPError)
    try:
        from requests import RequestException

        found.append(RequestException)
    except ImportError:
        pass
    return tuple(found)


def _token_in_use(token: Token) -> bool:
    if isinstance(token, str):
        return True
    if token is False:
        return False
    from huggingface_hub import get_token

    return get_token() is not None


def hub_error(
    err: BaseException,
    *,
    repo_id: str,
    what: str,
    token: Token,
    revision: str | None = None,
    hint: str = "",
) -> WeightsError:
    """A :class:`WeightsError` for a failed Hub request: what failed, why, and the fix (log in
    for a refused token), never echoing the token."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = endpoint() or "huggingface.co"
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    login = (
        "log in with `hf auth login` (or set HF_TOKEN, or pass token=) using a token that may "
        f"access {repo_id}"
    )
    if isinstance(err, OfflineModeIsEnabled):
        message = (
            f"{what}: offline mode is on (HF_HUB_OFFLINE=1) and this needs the Hub at {where}; "
            "unset HF_HUB_OFFLINE on a connected machine"
        )
    elif isinstance(err, GatedRepoError):
        message = f"{repo_id} is gated at {where}: accept its conditions on its page, then {login}"
    elif isinstance(err, RepositoryNotFoundError):
        message = f"Hub repository {repo_id!r} not found at {where}" + (
            f" or the token in use may not read it: {login}"
            if _token_in_use(token)
            else f" (or it is private: {login})"
        )
        message += f"; check the name{hint}"
    elif isinstance(err, RevisionNotFoundError):
        message = (
            f"revision {revision!r} not found in Hub repository {repo_id!r}; list its commits "
            "with `HfApi().list_repo_commits(repo_id)`"
        )
    elif status in (401, 403):
        refused = "refused the token in use" if _token_in_use(token) else "needs a login"
        message = f"the Hub at {where} {refused} for {what} (HTTP {status}): {login}"
    elif isinstance(err, HfHubHTTPError):
        message = f"the Hub at {where} refused {what}: {str(err).splitlines()[0]}"
    else:
        message = (
            f"cannot reach the Hub at {where} for {what} ({type(err).__name__}); check the "
            "connection and HF_ENDPOINT"
        )
    if isinstance(token, str) and token:
        message = message.replace(token, "***")
    return WeightsError(message)
