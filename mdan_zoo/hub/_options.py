"""How a checkpoint is fetched, as one value: built once where a user asks, passed down as is.

The Hub's deadlines and download cap live here too (:class:`HubDeadlines`), read from the
environment at call time; the CLI's ``--connect-timeout`` / ``--hub-timeout`` set them for one
command.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from ..errors import WeightsError

__all__ = [
    "CONNECT_TIMEOUT_ENV",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_BYTES_ENV",
    "TIMEOUT_ENV",
    "FetchOptions",
    "HubDeadlines",
]

CONNECT_TIMEOUT_ENV = "MDAN_ZOO_HUB_CONNECT_TIMEOUT"
TIMEOUT_ENV = "MDAN_ZOO_HUB_TIMEOUT"
MAX_BYTES_ENV = "MDAN_ZOO_HUB_MAX_BYTES"
DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to the Hub (a dead or unreachable server fails fast)."""
DEFAULT_TIMEOUT = 600.0
"""Seconds one whole Hub request may take: the headers and the body of a download."""
DEFAULT_MAX_BYTES = 8 << 30
"""Bytes a downloaded file may have when the checkpoint's config.json records no size."""

_FLAGS = {CONNECT_TIMEOUT_ENV: "--connect-timeout", TIMEOUT_ENV: "--hub-timeout"}


def _setting(name: str, default: float, *, whole: bool = False) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        kind = "a positive whole number of bytes" if whole else "a positive number of seconds"
        flag = f" (or the {_FLAGS[name]} flag)" if name in _FLAGS else ""
        raise WeightsError(f"{name}={text!r} is not {kind}: set {name}{flag} to e.g. {default:g}")
    return value


@dataclass(frozen=True)
class HubDeadlines:
    """How long a Hub request may take, and how many bytes a download may write.

    Every request has a ``connect`` deadline (opening the connection) and a ``total`` one (the
    whole request, so a server that never answers or drips a byte at a time is cut off); a
    download writes at most the size the checkpoint's config.json records, or ``max_bytes``
    when it records none. :meth:`from_env` reads ``MDAN_ZOO_HUB_CONNECT_TIMEOUT`` (default
    5 s), ``MDAN_ZOO_HUB_TIMEOUT`` (600 s) and ``MDAN_ZOO_HUB_MAX_BYTES`` (8 GiB).
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    total: float = DEFAULT_TIMEOUT
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls) -> HubDeadlines:
        """The deadlines the environment sets now (a bad value is a :class:`WeightsError`)."""
        return cls(
            connect=_setting(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT),
            total=_setting(TIMEOUT_ENV, DEFAULT_TIMEOUT),
            max_bytes=int(_setting(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, whole=True)),
        )

    def knob(self, which: str) -> str:
        """How a message tells the user to change the ``connect`` or ``total`` deadline."""
        env = CONNECT_TIMEOUT_ENV if which == "connect" else TIMEOUT_ENV
        return f"{_FLAGS[env]} SECONDS or {env}=SECONDS"


@dataclass(frozen=True)
class FetchOptions:
    """Options for finding, downloading and verifying a checkpoint.

    Attributes:
        revision: Hub branch, tag or (best) full commit; a pinned commit already in the cache
            loads without a network call.
        cache_dir: the Hub cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME``).
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE=1``).
        force_download: fetch again even when the cache holds the files.
        token: for private Hub repos, as huggingface_hub (default: ``HF_TOKEN`` or the login
            stored by ``hf auth login``; ``False``: none).
        progress: show download bars.
        expected_sha256: the sha256 the weights must have (a registry entry's); overrides the
            one config.json records.
        deadlines: the Hub's connect and total deadlines and the download cap
            (:class:`HubDeadlines`; default: from the environment, read at each fetch).
    """

    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    local_files_only: bool = False
    force_download: bool = False
    token: str | bool | None = None
    progress: bool = True
    expected_sha256: str | None = None
    deadlines: HubDeadlines | None = None

    def replace(self, **changes: Any) -> FetchOptions:
        """A copy with ``changes`` (field names as keywords)."""
        return dataclasses.replace(self, **changes)
