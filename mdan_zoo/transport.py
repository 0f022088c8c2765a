"""Hub transport: turn a reference (file, folder, ``hf-hub:org/name@rev``) into verified local files.

The download, cache layout and revision pinning are huggingface_hub's. ``HF_ENDPOINT``,
``HF_HUB_CACHE``/``HF_HOME`` and ``HF_HUB_OFFLINE`` are read at call time (huggingface_hub
reads them once at import), so a process can switch them, as tests and notebooks do.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from .checkpoint import (
    CONFIG_NAME,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    Checkpoint,
    WeightsError,
    header_config,
    read_json,
    refuse_pickle,
    verify,
)
from .registry import WeightsEntry

__all__ = [
    "default_cache_dir",
    "download",
    "endpoint",
    "is_hub_ref",
    "offline_mode",
    "parse_hub_ref",
    "read_checkpoint_config",
    "resolve",
]

logger = logging.getLogger(__name__)


_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now rather than at import."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def default_cache_dir() -> Path:
    """The Hub cache huggingface_hub would use, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _tqdm_class(progress: bool) -> Any:
    """A tqdm class for huggingface_hub: the normal bar, or one that never draws.

    Passed per call, so turning the bar off here never touches anyone else's bars.
    """
    from tqdm.auto import tqdm

    if progress:
        return None

    class _Silent(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Silent


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` (or ``"org/name@rev"``) -> ``("org/name", "rev" or None)``."""
    body = ref[len("hf-hub:") :] if ref.startswith("hf-hub:") else ref
    repo, _, rev = body.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")) or " " in repo:
        raise WeightsError(
            f"{ref!r} is not a Hub reference: write 'hf-hub:org/name' or 'hf-hub:org/name@revision'"
        )
    return repo, (rev or None)


def is_hub_ref(source: str | os.PathLike[str]) -> bool:
    if isinstance(source, os.PathLike):
        return False
    if source.startswith("hf-hub:"):
        return True
    if Path(source).exists() or source.startswith((".", "/", "~")) or "\\" in source:
        return False
    return source.count("/") == 1 and not source.endswith(".safetensors")


def resolve(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    force_download: bool = False,
    expected_sha256: str | None = None,
    filename: str = WEIGHTS_NAME,
) -> Checkpoint:
    """Find (and download if needed) the checkpoint ``source`` and verify it.

    ``source``: a ``.safetensors`` file, a folder in Hub layout, or ``hf-hub:org/name[@rev]``
    (``org/name`` works too). ``expected_sha256`` (from the registry) overrides the hash that
    config.json records.
    """
    if is_hub_ref(source):
        ckpt = _resolve_hub(
            str(source),
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            progress=progress,
            force_download=force_download,
            filename=filename,
        )
    else:
        if revision is not None:
            raise WeightsError(
                f"revision={revision!r} only applies to Hub repositories, but {source!r} is a local "
                "path: pin a local checkpoint by its path"
            )
        ckpt = _resolve_local(Path(source).expanduser())
    verify(ckpt, expected_sha256, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return ckpt


def _resolve_local(path: Path) -> Checkpoint:
    refuse_pickle(path.name)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
            if pickles:
                refuse_pickle(pickles[0])
            raise WeightsError(
                f"{path} has no {WEIGHTS_NAME}: a checkpoint folder holds model.safetensors and "
                "config.json, as written by `model.save_pretrained(dir)`"
            )
        cfg_path: Path | None = path / CONFIG_NAME
    elif path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsError(
                f"{path} is not a .safetensors file; pass a .safetensors file, a checkpoint folder "
                "or 'hf-hub:org/name@revision'"
            )
        weights = path
        # config.json describes the model.safetensors beside it, not any other file there.
        cfg_path = path.with_name(CONFIG_NAME) if path.name == WEIGHTS_NAME else None
    else:
        raise WeightsError(
            f"checkpoint {str(path)!r} not found: pass an existing .safetensors file, a folder "
            "written by save_pretrained, or 'hf-hub:org/name@revision'"
        )
    config = (
        read_json(cfg_path)
        if cfg_path is not None and cfg_path.is_file()
        else header_config(weights)
    )
    return Checkpoint(weights_path=weights, config=config, source=str(path))


def _resolve_hub(
    ref: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    progress: bool,
    force_download: bool,
    filename: str,
) -> Checkpoint:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    refuse_pickle(filename)
    repo_id, ref_rev = parse_hub_ref(ref)
    if ref_rev and revision and ref_rev != revision:
        raise WeightsError(
            f"two revisions given: {ref_rev!r} in {ref!r} and revision={revision!r}; give one"
        )
    revision = revision or ref_rev
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    offline = local_files_only or offline_mode()
    paths: dict[str, Path] = {}
    local = (  # "runs/fi" may be a mistyped local folder rather than a repo id
        ""
        if ref.startswith("hf-hub:")
        else f"; if you meant a local folder, {Path(ref).resolve()} does not exist"
    )
    for name in (CONFIG_NAME, filename):
        # A pinned commit already in the cache is returned without any network call.
        cached = (
            try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision)
            if revision and _HEX40.match(revision) and not force_download
            else None
        )
        if isinstance(cached, str):
            paths[name] = Path(cached)
            continue
        try:
            paths[name] = Path(
                hf_hub_download(
                    repo_id,
                    name,
                    revision=revision,
                    cache_dir=cache,
                    local_files_only=offline,
                    force_download=force_download,
                    endpoint=endpoint(),
                    tqdm_class=_tqdm_class(progress),
                    library_name="mdan_zoo",
                )
            )
        except RepositoryNotFoundError:
            if paths:  # config.json came from this repo, so the repo exists: the file is missing
                # (some mirrors, olah among them, answer a missing file as a missing repo)
                raise WeightsError(_missing_entry(name, repo_id, revision)) from None
            raise WeightsError(
                f"Hub repository {repo_id!r} not found at {endpoint() or 'huggingface.co'} (or it "
                f"is private: log in with `hf auth login`); check the name{local}"
            ) from None
        except RevisionNotFoundError:
            raise WeightsError(
                f"revision {revision!r} not found in Hub repository {repo_id!r}; list its commits "
                "with `HfApi().list_repo_commits(repo_id)`"
            ) from None
        # LocalEntryNotFoundError subclasses EntryNotFoundError: it must come first.
        except LocalEntryNotFoundError:
            if offline:
                why = (
                    "local_files_only=True"
                    if local_files_only
                    else "offline mode is on (HF_HUB_OFFLINE=1)"
                )
                raise WeightsError(
                    f"{repo_id}/{name} (revision {revision or 'main'}) is not in the Hub cache "
                    f"{cache} and {why} forbids downloading it. On a connected machine run "
                    f"`mdan-zoo download hf-hub:{repo_id}{'@' + revision if revision else ''} "
                    f"--cache-dir DIR` and copy DIR here (pass cache_dir= or set HF_HUB_CACHE)"
                ) from None
            raise WeightsError(
                f"cannot reach the Hub at {endpoint() or 'huggingface.co'} for {repo_id}/{name} "
                f"(revision {revision or 'main'}) and it is not in the cache {cache}; check the "
                f"connection, or pin a full commit revision that is already cached{local}"
            ) from None
        except EntryNotFoundError:
            raise WeightsError(_missing_entry(name, repo_id, revision)) from None
        except HfHubHTTPError as err:
            raise WeightsError(f"the Hub refused {repo_id}/{name}: {err}") from None
    commit = paths[filename].parent.name if _HEX40.match(paths[filename].parent.name) else None
    return Checkpoint(
        weights_path=paths[filename],
        config=read_json(paths[CONFIG_NAME]),
        source=f"hf-hub:{repo_id}@{revision or 'main'}",
        repo_id=repo_id,
        revision=commit,
    )


def _missing_entry(name: str, repo_id: str, revision: str | None) -> str:
    return (
        f"{name} not found in Hub repository {repo_id!r} at revision {revision or 'main'}: an "
        "mdan_zoo checkpoint holds model.safetensors and config.json (pickled .bin/.pt/.pth "
        "weights are never unpickled: convert them once with safetensors, see docs/hub.md)"
    )


def download(
    source: str | WeightsEntry,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    force_download: bool = False,
) -> Checkpoint:
    """Fetch and verify a checkpoint into the Hub cache without building a model.

    ``source``: a registry entry or ``hf-hub:org/name[@rev]``. For air-gapped machines: run it
    with ``cache_dir=DIR`` where the Hub is reachable, copy DIR, load with ``cache_dir=DIR``.
    """
    expected = None
    if isinstance(source, WeightsEntry):
        source.require_published()
        # The registry's sha256 belongs to its pinned commit; another revision is checked
        # against the sha256 its own config.json records.
        expected = source.sha256 if revision in (None, source.revision) else None
        revision = revision or source.revision
        source = f"hf-hub:{source.hub_repo}"
    return resolve(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        force_download=force_download,
        expected_sha256=expected,
    )


def read_checkpoint_config(source: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config a local checkpoint carries (config.json or safetensors header), or None."""
    return dict(resolve(source).config or {}) or None
