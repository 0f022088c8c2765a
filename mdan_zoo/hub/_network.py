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

__all__ = ["Token", "endpoint", "hub_error", "network_errors", "offline_mode"]

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
