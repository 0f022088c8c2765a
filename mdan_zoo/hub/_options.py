"""How a checkpoint is fetched, as one value: built once where a user asks, passed down as is."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["FetchOptions"]


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
    """

    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    local_files_only: bool = False
    force_download: bool = False
    token: str | bool | None = None
    progress: bool = True
    expected_sha256: str | None = None

    def replace(self, **changes: Any) -> FetchOptions:
        """A copy with ``changes`` (field names as keywords)."""
        return dataclasses.replace(self, **changes)
