"""Hub transport: turn a reference (file, folder, ``hf-hub:org/name@rev``) into verified local files.

The cache layout and revision pinning are huggingface_hub's; a download goes through
:mod:`._fetch` (paths this package names, never ones a server does; deadlines; a size cap).
``HF_ENDPOINT``,
``HF_HUB_CACHE``/``HF_HOME`` and ``HF_HUB_OFFLINE`` are read at call time (huggingface_hub
reads them once at import), so a process can switch them, as tests and notebooks do.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from .._hints import docs_url
from ..registry import WeightsEntry
from . import _checkpoint
from ._checkpoint import (
    CONFIG_NAME,
    FORMAT_VERSION,
    PICKLE_SUFFIXES,
    TIMM_ARCHITECTURE,
    WEIGHTS_NAME,
    Checkpoint,
    WeightsError,
    check_config,
    header_config,
    read_json,
    refuse_pickle,
)
from ._fetch import fetch
from ._integrity import verify
from ._network import Token, endpoint, hub_error, network_errors, offline_mode, unreachable
from ._options import MAX_BYTES_ENV, FetchOptions, HubDeadlines
from ._refs import check_revision, is_hub_ref, parse_hub_ref, shown
from .run_folder import RunFolderError, is_run_folder, protocol_runs, selected_checkpoint

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


_OFFLINE_ENV = "offline mode is on (HF_HUB_OFFLINE=1)"


def default_cache_dir() -> Path:
    """The Hub cache huggingface_hub would use, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve(
    source: str | os.PathLike[str],
    options: FetchOptions | None = None,
    *,
    filename: str = WEIGHTS_NAME,
    hash_on_read: bool = False,
) -> Checkpoint:
    """Find (and download if needed) the checkpoint ``source`` and verify it.

    ``source``: a ``.safetensors`` file, a folder in Hub layout, a training run's output_dir
    or one of its epoch folders (:mod:`mdan_zoo.hub.run_folder`), or ``hf-hub:org/name[@rev]``
    (``org/name`` works too). ``options`` say how (:class:`FetchOptions`: revision, cache,
    offline, token, progress, the expected sha256 that overrides the one config.json records).
    A Hub ref and its revision are checked before any request or file write.
    ``hash_on_read``: leave the sha256 check to ``Checkpoint.state_dict()``, which hashes the
    bytes as it reads them (for callers that read the tensors next: one pass over the file).
    """
    opts = options or FetchOptions()
    if opts.revision is not None:
        check_revision(opts.revision)
    if is_hub_ref(source):
        ckpt = _resolve_hub(str(source), opts, filename=filename)
    else:
        if opts.revision is not None:
            raise WeightsError(
                f"revision={opts.revision!r} only applies to Hub repositories, but {source!r} is "
                "a local path: pin a local checkpoint by its path"
            )
        try:
            ckpt = _resolve_local(Path(source).expanduser())
        except (OSError, ValueError) as err:  # a name too long, a NUL, no permission
            raise WeightsError(
                f"cannot read the checkpoint path {shown(str(source))}: {err}; pass an existing "
                ".safetensors file, a folder written by save_pretrained, or "
                "'hf-hub:org/name@revision'"
            ) from None
    return verify(ckpt, opts.expected_sha256, on_read=hash_on_read)


def _resolve_local(path: Path) -> Checkpoint:
    refuse_pickle(path.name)
    hub_layout = (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()
    if path.is_dir() and not hub_layout and is_run_folder(path):
        return _resolve_run(path)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
            if pickles:
                refuse_pickle(pickles[0])
            runs = [p.name for p in protocol_runs(path)]
            if runs:
                raise WeightsError(
                    f"{path} holds training runs ({', '.join(runs)}), not one run: load "
                    f"one of them (e.g. {path / runs[0]}), or export the one with the best "
                    f"validation score with `mdan-zoo export {path} OUT_DIR` and load OUT_DIR"
                )
            raise WeightsError(
                f"{path} has no {WEIGHTS_NAME}: a checkpoint folder holds model.safetensors and "
                "config.json, as written by `model.save_pretrained(dir)` or `mdan-zoo export "
                "RUN_DIR OUT_DIR`; a training run's output_dir (with checkpoints/) loads as it is"
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
    config: dict[str, Any] | None
    if cfg_path is not None and cfg_path.is_file():
        config, origin = read_json(cfg_path), str(cfg_path)
    else:
        config, origin = header_config(weights), str(weights)
    return Checkpoint(weights_path=weights, config=config, source=str(path), config_origin=origin)


def _resolve_run(path: Path) -> Checkpoint:
    """A training run's validation-selected checkpoint (or a checkpoint folder of a run), as
    the trainer wrote it: weights verified against the SHA-256 its state.json records, and the
    taxonomy, architecture and preprocessing it was trained with."""
    try:
        folder, state = selected_checkpoint(path, hash_files=False)  # hashed as it is read
    except (RunFolderError, FileNotFoundError) as err:
        raise WeightsError(str(err)) from None
    if folder != path:
        logger.info(
            "%s: loading its validation-selected checkpoint %s (epoch %d)",
            path,
            folder.name,
            state["epoch"],
        )
    files = state.get("files") or {}
    config: dict[str, Any] = {
        "library": "mdan_zoo",
        "format_version": FORMAT_VERSION,
        "architecture": TIMM_ARCHITECTURE,
        "model_config": state["model_config"],
        "taxonomy": state["taxonomy"],
        "preprocessing": state["preprocessing"],
        "training": {"run": str(path), "checkpoint": str(folder), "epoch": state["epoch"]},
    }
    digest = (files.get(WEIGHTS_NAME) or {}).get("sha256")
    if digest is not None:
        config["weights"] = {"file": WEIGHTS_NAME, "sha256": digest}
    origin = str(folder / "state.json")
    return Checkpoint(
        weights_path=folder / WEIGHTS_NAME,
        config=check_config(config, source=origin),
        source=str(folder),
        config_origin=origin,
    )


def _resolve_hub(ref: str, opts: FetchOptions, *, filename: str) -> Checkpoint:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    refuse_pickle(filename)
    repo_id, ref_rev = parse_hub_ref(ref)  # raises before any request or write
    if ref_rev and opts.revision and ref_rev != opts.revision:
        raise WeightsError(
            f"two revisions given: {ref_rev!r} in {ref!r} and revision={opts.revision!r}; give one"
        )
    revision = opts.revision or ref_rev
    token = opts.token
    cache = Path(opts.cache_dir) if opts.cache_dir is not None else default_cache_dir()
    offline_by = "local_files_only=True" if opts.local_files_only else None
    offline_by = offline_by or (_OFFLINE_ENV if offline_mode() else None)
    offline = offline_by is not None
    pinned_and_cached = (
        revision is not None
        and _HEX40.match(revision) is not None
        and all(_cached(repo_id, n, cache, revision) for n in (CONFIG_NAME, filename))
    )  # huggingface_hub answers those from the cache without a request: nothing to probe
    deadlines = opts.deadlines or HubDeadlines.from_env()
    down = None if offline or pinned_and_cached else unreachable(timeout=deadlines.connect)
    if down is not None and "timeout" in down.lower():
        down = f"it did not accept a connection within {deadlines.connect:g} s"
    if down is not None:  # the cached copy, if any, without huggingface_hub's 23 s of retries
        logger.info("the Hub at %s is unreachable (%s): using the cache", endpoint(), down)
        offline = True
    paths: dict[str, Path] = {}
    local = (  # "runs/fi" may be a mistyped local folder rather than a repo id
        ""
        if ref.startswith("hf-hub:")
        else f"; if you meant a local folder, {Path(ref).resolve()} does not exist"
    )
    config: dict[str, Any] = {}
    for name in (CONFIG_NAME, filename):
        try:
            if offline:  # the cache only: huggingface_hub reads its refs, nothing is asked
                paths[name] = Path(
                    hf_hub_download(
                        repo_id,
                        name,
                        revision=revision,
                        cache_dir=cache,
                        local_files_only=True,
                        token=token,
                        endpoint=endpoint(),
                    )
                )
            else:  # through paths this package names (_fetch), under the deadlines
                paths[name] = _fetch_or_cached(
                    repo_id,
                    name,
                    revision=revision,
                    cache=cache,
                    token=token,
                    cap=_cap(config, name, deadlines),
                    deadlines=deadlines,
                    force_download=opts.force_download,
                    progress=opts.progress,
                )
        except RepositoryNotFoundError as err:
            if paths:  # config.json came from this repo, so the repo exists: the file is missing
                # (some mirrors, olah among them, answer a missing file as a missing repo)
                raise WeightsError(_missing_entry(name, repo_id, revision)) from None
            raise hub_error(
                err, repo_id=repo_id, what=f"{repo_id}/{name}", token=token, hint=local
            ) from None
        # LocalEntryNotFoundError subclasses EntryNotFoundError: it must come first.
        except LocalEntryNotFoundError:
            if down is not None:
                raise WeightsError(
                    f"cannot reach the Hub at {endpoint() or 'huggingface.co'} ({down}) for "
                    f"{repo_id}/{name} (revision {revision or 'main'}), and it is not in the "
                    f"cache {cache}. Check the connection or HF_ENDPOINT; on a machine without "
                    "network set HF_HUB_OFFLINE=1 to use the cache only (copy a cache made "
                    f"with `mdan-zoo download hf-hub:{repo_id} --cache-dir DIR` and set "
                    f"HF_HUB_CACHE=DIR); for a slow server raise the connect deadline "
                    f"({deadlines.knob('connect')}){local}"
                ) from None
            if offline:
                raise WeightsError(
                    f"{repo_id}/{name} (revision {revision or 'main'}) is not in the Hub cache "
                    f"{cache} and {offline_by} forbids downloading it. On a connected machine run "
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
        except network_errors() as err:
            raise hub_error(
                err, repo_id=repo_id, what=f"{repo_id}/{name}", token=token, revision=revision
            ) from None
        if name == CONFIG_NAME:  # checked before the (large) weights are fetched
            commit = _commit_of(paths[name])
            origin = f"{CONFIG_NAME} of hf-hub:{repo_id}@{commit or revision or 'main'}"
            config = _read_cached_json(paths[name], origin)
    return Checkpoint(
        weights_path=paths[filename],
        config=config,
        source=f"hf-hub:{repo_id}@{revision or 'main'}",
        repo_id=repo_id,
        revision=_commit_of(paths[filename]),
        config_origin=origin,
    )


def _cap(config: dict[str, Any], name: str, deadlines: HubDeadlines) -> tuple[int, str]:
    """The most bytes a download of ``name`` may write, and why: config.json's own limit; the
    size config.json records for the weights; else the documented cap."""
    if name == CONFIG_NAME:
        return _checkpoint.MAX_CONFIG_BYTES, "bytes a checkpoint's config.json may hold"
    weights = config.get("weights")
    size = weights.get("size") if isinstance(weights, dict) else None
    recorded = isinstance(weights, dict) and (weights.get("file") or WEIGHTS_NAME) == name
    if recorded and isinstance(size, int) and not isinstance(size, bool):
        return size, "bytes the checkpoint's config.json records for it"
    why = f"bytes a file may have when config.json records no size ({MAX_BYTES_ENV})"
    return deadlines.max_bytes, why


def _fetch_or_cached(
    repo_id: str,
    name: str,
    *,
    revision: str | None,
    cache: Path,
    token: Token,
    cap: tuple[int, str],
    deadlines: HubDeadlines,
    force_download: bool,
    progress: bool,
) -> Path:
    """:func:`fetch`; when the Hub cannot be reached at all, the cached copy of the revision
    (as huggingface_hub falls back), else ``LocalEntryNotFoundError``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return fetch(
            repo_id,
            name,
            revision=revision or "main",
            cache=cache,
            token=token,
            endpoint=endpoint(),
            limit=cap[0],
            limit_why=cap[1],
            deadlines=deadlines,
            force_download=force_download,
            progress=progress,
        )
    except network_errors() as err:
        if isinstance(err, HfHubHTTPError):  # the server answered: its answer stands
            raise
        try:
            found = hf_hub_download(
                repo_id, name, revision=revision, cache_dir=cache, local_files_only=True
            )
        except LocalEntryNotFoundError:
            raise LocalEntryNotFoundError(str(err)) from None
        logger.warning(
            "cannot reach the Hub at %s (%s): using the cached %s/%s",
            endpoint() or "huggingface.co",
            type(err).__name__,
            repo_id,
            name,
        )
        return Path(found)


def _cached(repo_id: str, name: str, cache: Path, revision: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision)
    return isinstance(found, str)


def _commit_of(path: Path) -> str | None:
    return path.parent.name if _HEX40.match(path.parent.name) else None


def _read_cached_json(path: Path, origin: str) -> dict[str, Any]:
    """read_json, its messages naming the repo file and the cached copy."""
    try:
        return read_json(path)
    except WeightsError as err:
        raise WeightsError(f"{origin}: {err}") from None


def _missing_entry(name: str, repo_id: str, revision: str | None) -> str:
    return (
        f"{name} not found in Hub repository {repo_id!r} at revision {revision or 'main'}: an "
        "mdan_zoo checkpoint holds model.safetensors and config.json (pickled .bin/.pt/.pth "
        f"weights are never unpickled: convert them once with safetensors, see {docs_url('hub.md')})"
    )


def download(
    source: str | WeightsEntry,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    force_download: bool = False,
    token: Token = None,
) -> Checkpoint:
    """Fetch and verify a checkpoint into the Hub cache without building a model.

    ``source``: a registry entry or ``hf-hub:org/name[@rev]``. For air-gapped machines: run it
    with ``cache_dir=DIR`` where the Hub is reachable, copy DIR, load with ``cache_dir=DIR``.
    The keywords are those of :class:`FetchOptions`.
    """
    options = FetchOptions(
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        force_download=force_download,
        token=token,
    )
    if isinstance(source, WeightsEntry):
        source, pinned, expected = source.download_source(revision)
        options = options.replace(revision=pinned, expected_sha256=expected)
    return resolve(source, options)


def read_checkpoint_config(source: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config a local checkpoint carries (config.json or safetensors header), or None."""
    return dict(resolve(source).config or {}) or None
