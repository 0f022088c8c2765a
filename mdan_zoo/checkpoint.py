"""The checkpoint format and its verification: what a saved MDAN is on disk, and proof it is intact.

A checkpoint is a folder in Hub layout::

    model.safetensors   the weights (safetensors only: nothing is ever unpickled)
    config.json         architecture (MDANConfig), taxonomy, preprocessing, metrics, training,
                        the sha256 of model.safetensors, the mdan_zoo version
    README.md           the model card

``config.json`` alone rebuilds the exact model, and ``model.safetensors`` carries the same
description in its header, so a lone ``.safetensors`` file written here loads too. This module
knows files, not networks: :mod:`mdan_zoo.transport` finds them, :mod:`mdan_zoo.pretrained`
builds models from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ._io import atomic_path, atomic_write_text
from .config import ConfigError, MDANConfig, Preprocessing
from .taxonomy import Taxonomy, TaxonomyError

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "Checkpoint",
    "ChecksumError",
    "WeightsError",
    "parse_config",
    "read_json",
    "read_state_dict",
    "refuse_pickle",
    "sha256_file",
    "verify",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)


WEIGHTS_NAME = "model.safetensors"


CONFIG_NAME = "config.json"


CARD_NAME = "README.md"


FORMAT_VERSION = 1


META_KEY = "mdan_zoo"  # safetensors header key holding the config (without the file hash)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")


class WeightsError(RuntimeError):
    """A checkpoint cannot be found, read or matched to the model; the message says why and
    what to do."""


class ChecksumError(WeightsError):
    """A weights file does not have the sha256 it should; the message names the file."""


def refuse_pickle(name: str) -> None:
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise WeightsError(
            f"refusing to load {name!r}: {Path(name).suffix} files are pickles, and unpickling "
            "can run arbitrary code. mdan_zoo loads .safetensors only. Convert a file you trust "
            "once, in a separate step: `sd = torch.load(path, weights_only=True); "
            "safetensors.torch.save_file(sd, 'model.safetensors')`, or re-save the model with "
            "`model.save_pretrained(dir)`."
        )


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


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonable(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): {err}"
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(
            f"cannot read {path}: {err}; delete it and download or save again"
        ) from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} is not a JSON object")
    return data


def header_config(weights: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise unreadable(weights, err) from None
    if META_KEY not in meta:
        return None
    return json.loads(meta[META_KEY])


def unreadable(path: Path, err: BaseException) -> WeightsError:
    return WeightsError(
        f"{path} is not a readable safetensors file ({err}); it is probably truncated or "
        f"corrupted (an interrupted download or copy). Delete it (`rm '{path}'`) and download or "
        "save it again"
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """All tensors of a safetensors file on the CPU; a damaged file raises :class:`WeightsError`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as err:
        raise unreadable(path, err) from None


def verify(ckpt: Checkpoint, expected: str | None, cache: Path) -> None:
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


def write_checkpoint(
    out: Path,
    state: Mapping[str, Tensor],
    description: Mapping[str, Any],
    *,
    card: Any,
) -> Path:
    """Write ``state`` and ``description`` as a Hub-layout folder; ``card(config) -> str``.

    Each file is written atomically, weights first; config.json records the weights' sha256,
    so a folder left half-rewritten by a crash fails loudly on load instead of pairing an old
    config with new weights.
    """
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    header = {"format": "pt", META_KEY: json.dumps(description, sort_keys=True)}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(dict(state), str(tmp), metadata=header)
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
    config = dict(description)
    config["weights"] = {"file": WEIGHTS_NAME, "sha256": digest, "size": size}
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=False) + "\n")
    atomic_write_text(out / CARD_NAME, card(config))
    return out
