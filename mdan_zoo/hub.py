"""Checkpoints on disk and on the Hugging Face Hub: save, download, verify, load, push.

A checkpoint is a folder in Hub layout::

    model.safetensors   the weights (safetensors only: nothing is ever unpickled)
    config.json         architecture (MDANConfig), taxonomy, preprocessing, metrics, training,
                        the sha256 of model.safetensors, the mdan_zoo version
    README.md           the model card

``config.json`` alone rebuilds the exact model, and ``model.safetensors`` carries the same
description in its header, so a lone ``.safetensors`` file written here loads too. Loading
builds the network on the ``meta`` device (no throw-away random initialisation) and assigns
the tensors read from the file (``load_state_dict(assign=True)``).

The download, cache layout and revision pinning are huggingface_hub's. ``HF_ENDPOINT``,
``HF_HUB_CACHE``/``HF_HOME`` and ``HF_HUB_OFFLINE`` are read at call time (huggingface_hub
reads them once at import), so a process can switch them, as tests and notebooks do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._io import atomic_path, atomic_write_text
from .config import ConfigError, MDANConfig, Preprocessing
from .registry import CITATION, WeightsEntry
from .taxonomy import Taxonomy, TaxonomyError

if TYPE_CHECKING:
    from .model import MDAN

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "ChecksumError",
    "Checkpoint",
    "TransferReport",
    "WeightsError",
    "download",
    "load_pretrained",
    "from_pretrained",
    "parse_hub_ref",
    "push_to_hub",
    "read_checkpoint_config",
    "save_pretrained",
]

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
_META_KEY = "mdan_zoo"  # safetensors header key holding the config (without the file hash)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


class WeightsError(RuntimeError):
    """A checkpoint cannot be found, read or matched to the model; the message says why and
    what to do."""


class ChecksumError(WeightsError):
    """A weights file does not have the sha256 it should; the message names the file."""


# ---------------------------------------------------------------------------- environment
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


def _endpoint() -> str | None:
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


# ---------------------------------------------------------------------------- references
def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` (or ``"org/name@rev"``) -> ``("org/name", "rev" or None)``."""
    body = ref[len("hf-hub:") :] if ref.startswith("hf-hub:") else ref
    repo, _, rev = body.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")) or " " in repo:
        raise WeightsError(
            f"{ref!r} is not a Hub reference: write 'hf-hub:org/name' or 'hf-hub:org/name@revision'"
        )
    return repo, (rev or None)


def _refuse_pickle(name: str) -> None:
    if name.lower().endswith(_PICKLE_SUFFIXES):
        raise WeightsError(
            f"refusing to load {name!r}: {Path(name).suffix} files are pickles, and unpickling "
            "can run arbitrary code. mdan_zoo loads .safetensors only. Convert a file you trust "
            "once, in a separate step: `sd = torch.load(path, weights_only=True); "
            "safetensors.torch.save_file(sd, 'model.safetensors')`, or re-save the model with "
            "`model.save_pretrained(dir)`."
        )


# ---------------------------------------------------------------------------- the checkpoint
@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint resolved to local files (downloaded when it came from the Hub).

    Attributes:
        weights_path: the ``.safetensors`` file.
        config: the parsed ``config.json`` (or the safetensors header copy), or None when the
            file carries no description (then the caller must know the architecture).
        source: what the user asked for, for messages.
        repo_id / revision: where it came from on the Hub (None for local files); ``revision``
            is the resolved commit when known.
    """

    weights_path: Path
    config: Mapping[str, Any] | None
    source: str
    repo_id: str | None = None
    revision: str | None = None

    def describe(self) -> tuple[MDANConfig, Taxonomy, Preprocessing]:
        """The architecture, taxonomy and preprocessing this checkpoint was saved with."""
        if self.config is None:
            raise WeightsError(
                f"{self.source} carries no mdan_zoo config (no config.json beside it and none in "
                "its safetensors header): load it through a factory that knows the architecture, "
                "e.g. `mdan_fi(weights=...)` or `mdan(taxonomy=..., weights=...)`"
            )
        return parse_config(self.config, source=self.source)


def parse_config(
    data: Mapping[str, Any], *, source: str = "config.json"
) -> tuple[MDANConfig, Taxonomy, Preprocessing]:
    """(architecture, taxonomy, preprocessing) from a checkpoint config dict."""
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{source}: format_version {version!r} is not one this mdan_zoo reads "
            f"({FORMAT_VERSION}); upgrade mdan_zoo (`pip install -U mdan-zoo`) or re-save the model"
        )
    try:
        config = MDANConfig.from_dict(data["architecture"])
        taxonomy = Taxonomy.from_dict(data["taxonomy"])
        pre = Preprocessing.from_dict(data.get("preprocessing") or {})
    except KeyError as err:
        raise WeightsError(
            f"{source}: missing field {err}; the file is not an mdan_zoo config"
        ) from None
    except (ConfigError, TaxonomyError, TypeError) as err:
        raise WeightsError(f"{source}: invalid config: {err}") from None
    return config, taxonomy, pre


def _model_description(model: MDAN) -> dict[str, Any]:
    from . import __version__

    return {
        "library": "mdan_zoo",
        "mdan_zoo_version": __version__,
        "format_version": FORMAT_VERSION,
        "architecture": model.config.to_dict(),
        "taxonomy": model.taxonomy.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        "num_classes": list(model.taxonomy.num_classes),
        "num_params": sum(p.numel() for p in model.parameters()),
    }


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- save
def save_pretrained(
    model: MDAN,
    save_directory: str | os.PathLike[str],
    *,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a Hub-layout folder: model.safetensors, config.json, README.md.

    ``metrics`` (e.g. ``{"accuracy_O": {"2": 91.1, "8": 76.0}}``) and ``training`` (recipe, data,
    seed) go into config.json and the model card. Each file is written atomically, weights
    first; config.json records the weights' sha256, so a folder left half-rewritten by a crash
    fails loudly on load instead of pairing old config with new weights. Returns the folder.
    """
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    description = _model_description(model)
    description["metrics"] = _jsonable(metrics, "metrics")
    description["training"] = _jsonable(training, "training")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if any(t.device.type == "meta" for t in state.values()):
        raise WeightsError("the model still has meta tensors: load its weights before saving")
    from safetensors.torch import save_file

    header = {"format": "pt", _META_KEY: json.dumps(description, sort_keys=True)}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata=header)
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
    config = dict(description)
    config["weights"] = {"file": WEIGHTS_NAME, "sha256": digest, "size": size}
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=False) + "\n")
    atomic_write_text(out / CARD_NAME, model_card(config))
    logger.info("saved %s (%s classes) to %s", model.taxonomy.name, model.num_classes, out)
    return out


def _jsonable(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): {err}"
        ) from None


def model_card(config: Mapping[str, Any]) -> str:
    """The README.md model card for a checkpoint config (YAML header for the Hub)."""
    arch = config["architecture"]
    tax = Taxonomy.from_dict(config["taxonomy"])
    pre = config["preprocessing"]
    metrics = config.get("metrics") or {}
    training = config.get("training") or {}
    counts = " -> ".join(str(n) for n in tax.num_classes)
    lines = [
        "---",
        "library_name: mdan_zoo",
        "license: mit",
        "pipeline_tag: image-classification",
        "tags:",
        "- visual-emotion-analysis",
        "- mdan",
        "- hierarchical-classification",
        "- safetensors",
        "---",
        "",
        f"# MDAN on the `{tax.name}` taxonomy ({arch['backbone']})",
        "",
        "MDAN, the Multi-level Dependent Attention Network for visual emotion analysis "
        "(Xu et al., CVPR 2022), saved with mdan_zoo "
        f"{config.get('mdan_zoo_version', '')}. It predicts one label per level of the "
        f"taxonomy below ({counts} classes, coarse to fine).",
        "",
        "```python",
        "from mdan_zoo import MDAN",
        "model = MDAN.from_pretrained('path/or/org-name')  # add revision='<commit>' to pin",
        "transform = model.eval_transform()",
        "```",
        "",
        "## Taxonomy",
        "",
        "```",
        tax.describe(),
        "```",
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        for key, value in _flatten(metrics):
            lines.append(f"| {key} | {value} |")
    else:
        lines.append("No metrics were recorded with this checkpoint.")
    lines += [
        "",
        "## Preprocessing",
        "",
        f"Resize the shorter side to {pre['resize_size']} ({pre['interpolation']}), centre-crop "
        f"{pre['input_size']} x {pre['input_size']}, scale to [0, 1], normalise with mean "
        f"{pre['mean']} and std {pre['std']} (`model.eval_transform()` does all of it).",
        "",
        "## Training",
        "",
    ]
    if training:
        lines += [f"- {k}: {v}" for k, v in _flatten(training)]
    else:
        lines.append("Not recorded.")
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Research on visual emotion analysis: the emotion an image is likely to evoke in viewers, "
        "as labelled in the training data. Emotion labels are subjective and culturally "
        "dependent, and the benchmark datasets are small, web-sourced and skewed; do not use the "
        "predictions to make decisions about people, and measure accuracy on your own data before "
        "relying on it. Images from the benchmark datasets are licensed for non-commercial research.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flatten(value, prefix=f"{name}.")
        else:
            out.append((name, value))
    return out


# ---------------------------------------------------------------------------- resolve
def _is_hub_ref(source: str | os.PathLike[str]) -> bool:
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
    if _is_hub_ref(source):
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
    _verify(
        ckpt, expected_sha256, Path(cache_dir) if cache_dir is not None else default_cache_dir()
    )
    return ckpt


def _resolve_local(path: Path) -> Checkpoint:
    _refuse_pickle(path.name)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in path.iterdir() if p.name.endswith(_PICKLE_SUFFIXES))
            if pickles:
                _refuse_pickle(pickles[0])
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
        _read_json(cfg_path)
        if cfg_path is not None and cfg_path.is_file()
        else _header_config(weights)
    )
    return Checkpoint(weights_path=weights, config=config, source=str(path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(
            f"cannot read {path}: {err}; delete it and download or save again"
        ) from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} is not a JSON object")
    return data


def _header_config(weights: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise _unreadable(weights, err) from None
    if _META_KEY not in meta:
        return None
    return json.loads(meta[_META_KEY])


def _unreadable(path: Path, err: BaseException) -> WeightsError:
    return WeightsError(
        f"{path} is not a readable safetensors file ({err}); it is probably truncated or "
        f"corrupted (an interrupted download or copy). Delete it (`rm '{path}'`) and download or "
        "save it again"
    )


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

    _refuse_pickle(filename)
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
                    endpoint=_endpoint(),
                    tqdm_class=_tqdm_class(progress),
                    library_name="mdan_zoo",
                )
            )
        except RepositoryNotFoundError:
            if paths:  # config.json came from this repo, so the repo exists: the file is missing
                # (some mirrors, olah among them, answer a missing file as a missing repo)
                raise WeightsError(_missing_entry(name, repo_id, revision)) from None
            raise WeightsError(
                f"Hub repository {repo_id!r} not found at {_endpoint() or 'huggingface.co'} (or it "
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
                f"cannot reach the Hub at {_endpoint() or 'huggingface.co'} for {repo_id}/{name} "
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
        config=_read_json(paths[CONFIG_NAME]),
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


# ---------------------------------------------------------------------------- verify
def _verify(ckpt: Checkpoint, expected: str | None, cache: Path) -> None:
    """Check the weights' sha256 against the registry or config.json; raise on mismatch.

    A file already verified is not hashed again while its size, mtime and inode stay the same
    (a stat record under ``<cache>/.mdan_zoo_verified``): any edit of the file changes its mtime
    and triggers a fresh hash.
    """
    recorded = None
    if ckpt.config is not None:
        recorded = (ckpt.config.get("weights") or {}).get("sha256")
    want = expected or recorded
    if not want:
        return
    path = ckpt.weights_path
    if _stat_record_matches(cache, path, want):
        return
    got = sha256_file(path)
    if got != want:
        real = Path(os.path.realpath(path))
        where = "the registry" if expected else "its config.json"
        fix = (
            f"delete it (`rm '{real}'`, or `hf cache delete` / remove the repository folder from "
            "the Hub cache) and download again (`mdan-zoo download NAME --force`)"
            if ckpt.repo_id
            else "save or copy the checkpoint again"
        )
        raise ChecksumError(
            f"sha256 mismatch for {real} (from {ckpt.source}): expected {want} ({where}), got "
            f"{got}. The file is corrupted or was replaced; {fix}"
        )
    _write_stat_record(cache, path, want)


def _stat_key(path: Path) -> str:
    st = os.stat(path)
    return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _record_path(cache: Path, digest: str) -> Path:
    return cache / ".mdan_zoo_verified" / digest


def _stat_record_matches(cache: Path, path: Path, digest: str) -> bool:
    try:
        return _record_path(cache, digest).read_text(encoding="utf-8") == _stat_key(path)
    except OSError:
        return False


def _write_stat_record(cache: Path, path: Path, digest: str) -> None:
    try:
        atomic_write_text(_record_path(cache, digest), _stat_key(path))
    except OSError:  # a read-only cache only costs a re-hash next time
        logger.debug("cannot record verification of %s", path)


# ---------------------------------------------------------------------------- load
@dataclass(frozen=True)
class TransferReport:
    """What fine-tuning transfer did when weights met a different taxonomy.

    Attributes:
        source_taxonomy / target_taxonomy: names of the two trees.
        transferred: module groups loaded unchanged (``backbone``, ``f5``, ``laterals.0``, ...,
            and every classifier head whose classes did not change).
        reinitialised: modules freshly initialised (heads whose classes changed, attention of
            levels the source had not).
        copied_rows: per reinitialised head, the labels whose rows were copied from the source
            (same name and same ancestors).
        dropped: source module groups the target has no place for (levels it lacks).
    """

    source_taxonomy: str
    target_taxonomy: str
    transferred: tuple[str, ...]
    reinitialised: tuple[str, ...]
    copied_rows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()

    def summary(self) -> str:
        rows = sum(len(v) for v in self.copied_rows.values())
        return (
            f"transfer {self.source_taxonomy} -> {self.target_taxonomy}: kept "
            f"{', '.join(self.transferred)}; re-initialised {', '.join(self.reinitialised) or 'nothing'}"
            f"; copied {rows} classifier rows"
            + (f"; dropped {', '.join(self.dropped)}" if self.dropped else "")
        )

    def __str__(self) -> str:
        return self.summary()


def _group(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] in ("laterals", "local_heads") else parts[0]


def _build_meta(config: MDANConfig, taxonomy: Taxonomy, pre: Preprocessing) -> MDAN:
    from .model import MDAN

    with torch.device("meta"):
        return MDAN(taxonomy, config, preprocessing=pre)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """All tensors of a safetensors file on the CPU; a damaged file raises :class:`WeightsError`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as err:
        raise _unreadable(path, err) from None


def _assign(model: MDAN, state: Mapping[str, Tensor], *, source: str) -> None:
    """Strict, shape-checked ``load_state_dict(assign=True)`` onto a meta-built model."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        width = state["f5.weight"].shape[0] if "f5.weight" in state else None
        if width is not None and width != model.config.fpn_channels:  # e.g. a zoo 0.1.0 file
            wrong.insert(
                0,
                f"top-down width {width} (model: {model.config.fpn_channels}; pass "
                f"config=MDANConfig(fpn_channels={width}), MDANConfig.lite() for 256)",
            )
        raise WeightsError(
            f"weights from {source} do not fit this MDAN ({model.config.backbone}, taxonomy "
            f"{model.taxonomy.name} {model.num_classes}): missing {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
            f"{'...' if len(unexpected) > 6 else ''}, shape mismatches {wrong[:4]}. Load the "
            "checkpoint with the architecture it was saved with (MDAN.from_pretrained reads it "
            "from config.json), or pass taxonomy= to fine-tune to another label tree"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model._init_taxonomy_buffers()
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise WeightsError(f"weights from {source} left tensors uninitialised: {left[:6]}")


def _label_paths(tax: Taxonomy, depth: int) -> list[tuple[str, ...]]:
    """Lower-cased names from the root down to every label of ``depth``."""
    out = []
    for j in range(tax.num_classes[depth]):
        path = [j]
        for d in range(depth, 0, -1):
            path.append(tax.parents[d][path[-1]])
        idx = list(reversed(path))
        out.append(tuple(tax.labels[d][i].lower() for d, i in enumerate(idx)))
    return out


def _canonical_paths(source: Taxonomy, target: Taxonomy, depth: int) -> list[tuple[str, ...]]:
    """Target label paths spelled as the source spells them (aliases followed, case ignored)."""

    def spell(name: str) -> str:
        try:
            return source.canonical(name).lower()
        except KeyError:
            return name.lower()

    return [tuple(spell(n) for n in p) for p in _label_paths(target, depth)]


def _transfer_state(
    target: MDAN, state: Mapping[str, Tensor], source_tax: Taxonomy, *, source: str
) -> tuple[dict[str, Tensor], TransferReport]:
    """Map a state dict of ``source_tax`` onto the meta-built ``target`` (another taxonomy)."""
    tax = target.taxonomy
    n_src, n_tgt = source_tax.num_levels, tax.num_levels

    heads: dict[str, tuple[int, int]] = {}  # group -> (target depth, source depth)
    for d in range(n_tgt):
        if d < n_src:
            heads[f"local_heads.{d}"] = (d, d)
    heads["global_head"] = (n_tgt - 1, n_src - 1)

    reinit: list[str] = []
    copied: dict[str, tuple[str, ...]] = {}
    new_state: dict[str, Tensor] = {}
    fresh_modules: dict[str, nn.Module] = {}
    for group, (dt, ds) in heads.items():
        tgt_paths = _canonical_paths(source_tax, tax, dt)
        src_paths = _label_paths(source_tax, ds)
        if tgt_paths == src_paths:
            continue  # same classes, same ancestry: the head transfers unchanged
        reinit.append(group)
        fresh = nn.Linear(
            target.config.fpn_channels if group != "global_head" else target.channels["c5"],
            len(tgt_paths),
        )
        rows = []
        with torch.no_grad():
            w_src, b_src = state[f"{group}.weight"], state[f"{group}.bias"]
            for j, p in enumerate(tgt_paths):
                if p in src_paths:
                    i = src_paths.index(p)
                    if w_src.shape[1] == fresh.weight.shape[1]:
                        fresh.weight[j] = w_src[i]
                        fresh.bias[j] = b_src[i]
                        rows.append(tax.labels[dt][j])
        if rows:
            copied[group] = tuple(rows)
        fresh_modules[group] = fresh
    for d in range(n_src, n_tgt):  # attention of levels the source had not
        reinit.append(f"laterals.{d}")
        fresh_modules[f"laterals.{d}"] = target._make_lateral(d).to("cpu")
        reinit.append(f"local_heads.{d}")
        fresh_modules[f"local_heads.{d}"] = nn.Linear(
            target.config.fpn_channels, tax.num_classes[d]
        )
    for group, module in fresh_modules.items():
        for k, v in module.state_dict().items():
            new_state[f"{group}.{k}"] = v

    expected = target.state_dict()
    for key in expected:
        if key in new_state:
            continue
        if key not in state:
            raise WeightsError(
                f"weights from {source} lack {key!r}, which no taxonomy change explains (the "
                f"architecture differs: checkpoint saved for {source_tax.name}); load it with the "
                "config it was saved with"
            )
        new_state[key] = state[key]
    dropped = sorted({_group(k) for k in state if k not in expected})
    bad = [g for g in dropped if not g.startswith(("laterals.", "local_heads."))]
    if bad:
        raise WeightsError(
            f"weights from {source} hold {bad}, which this model has no place for and no taxonomy "
            "change explains; load the checkpoint with the config it was saved with"
        )
    kept = sorted({_group(k) for k in expected} - set(reinit), key=_group_order)
    report = TransferReport(
        source_taxonomy=source_tax.name,
        target_taxonomy=tax.name,
        transferred=tuple(kept),
        reinitialised=tuple(sorted(reinit, key=_group_order)),
        copied_rows=copied,
        dropped=tuple(dropped),
    )
    return new_state, report


def _group_order(group: str) -> tuple[int, str]:
    order = ["backbone", "f5", "laterals", "local_heads", "global_head"]
    head = group.split(".")[0]
    return (order.index(head) if head in order else len(order), group)


def load_pretrained(
    repo_or_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    progress: bool = True,
    force_download: bool = False,
    taxonomy: Taxonomy | str | None = None,
    config: MDANConfig | None = None,
    expected_sha256: str | None = None,
) -> MDAN:
    """Rebuild the exact saved model from a checkpoint folder, file or Hub repo, in eval mode.

    ``revision`` pins a Hub commit (a full 40-hex commit in a warm cache makes no network call).
    ``taxonomy`` different from the checkpoint's fine-tunes: backbone, FPN and attention are
    kept, changed classifier heads are re-initialised with rows copied for labels whose name
    and ancestors match; the :class:`TransferReport` is ``model.transfer_report`` (None when
    nothing changed). ``config`` (for checkpoints without one) gives the architecture; it must
    agree with a config the checkpoint carries.
    """
    ckpt = resolve(
        repo_or_dir,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        progress=progress,
        force_download=force_download,
        expected_sha256=expected_sha256,
    )
    if ckpt.config is None:
        if config is None or taxonomy is None:
            ckpt.describe()  # raises the explanation
        assert config is not None and taxonomy is not None
        target_tax = _as_taxonomy(taxonomy)
        return build_from_state(
            read_state_dict(ckpt.weights_path),
            config=config,
            taxonomy=target_tax,
            source_taxonomy=target_tax,
            preprocessing=Preprocessing(),
            source=ckpt.source,
            revision=ckpt.revision,
        )
    saved_config, saved_tax, pre = ckpt.describe()
    if config is not None and config != saved_config:
        raise WeightsError(
            f"{ckpt.source} was saved with config {saved_config} but config={config} was given; "
            "drop config= to use the checkpoint's own, or train a model with the new config"
        )
    target_tax = saved_tax if taxonomy is None else _as_taxonomy(taxonomy)
    return build_from_state(
        read_state_dict(ckpt.weights_path),
        config=saved_config,
        taxonomy=target_tax,
        source_taxonomy=saved_tax,
        preprocessing=pre,
        source=ckpt.source,
        revision=ckpt.revision,
    )


from_pretrained = load_pretrained


def _as_taxonomy(taxonomy: Taxonomy | str) -> Taxonomy:
    if isinstance(taxonomy, Taxonomy):
        return taxonomy
    from .taxonomy import get_taxonomy

    if isinstance(taxonomy, str) and not taxonomy.endswith(".json"):
        return get_taxonomy(taxonomy)
    return Taxonomy.from_json(taxonomy)


def build_from_state(
    state: Mapping[str, Tensor],
    *,
    config: MDANConfig,
    taxonomy: Taxonomy,
    source_taxonomy: Taxonomy,
    preprocessing: Preprocessing,
    source: str,
    revision: str | None = None,
) -> MDAN:
    """An MDAN for ``taxonomy`` holding ``state`` (saved for ``source_taxonomy``), in eval mode.

    Built on the meta device and filled with the tensors themselves (no copy, no random init);
    a different taxonomy goes through fine-tuning transfer. ``source`` and ``revision`` are
    recorded as ``model.checkpoint_source`` / ``model.checkpoint_revision``.
    """
    model = _build_meta(config, taxonomy, preprocessing)
    report: TransferReport | None = None
    if not taxonomy.same_tree(source_taxonomy):
        state, report = _transfer_state(model, state, source_taxonomy, source=source)
        logger.info("%s", report.summary())
    _assign(model, state, source=source)
    model.transfer_report = report  # type: ignore[assignment]
    model.checkpoint_source = source  # type: ignore[assignment]
    model.checkpoint_revision = revision  # type: ignore[assignment]
    return model.eval()


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


# ---------------------------------------------------------------------------- push
def push_to_hub(
    model: MDAN,
    repo_id: str,
    *,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    commit_message: str = "Upload MDAN checkpoint (mdan_zoo)",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api: Any = None,
) -> str:
    """Save ``model`` with :func:`save_pretrained` and upload the folder to ``repo_id``.

    Returns the commit id; pin it in your registry entry or ``revision=``. ``api`` takes an
    ``HfApi`` (default: one for ``HF_ENDPOINT``).
    """
    from huggingface_hub import HfApi

    api = api or HfApi(endpoint=_endpoint(), token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mdan_zoo_push_") as tmp:
        folder = save_pretrained(model, Path(tmp) / "ckpt", metrics=metrics, training=training)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
    commit = getattr(info, "oid", None) or str(info)
    logger.info("pushed %s to %s at commit %s", model.taxonomy.name, repo_id, commit)
    return commit
