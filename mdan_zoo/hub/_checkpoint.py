"""The checkpoint format: what a saved MDAN is on disk, and reading it back without trusting it.

A checkpoint is a folder in Hub layout::

    model.safetensors   the weights (safetensors only: nothing is ever unpickled)
    config.json         architecture (MDANConfig), taxonomy, preprocessing, metrics, training,
                        the sha256 of model.safetensors, the mdan_zoo version
    README.md           the model card

``config.json`` alone rebuilds the exact model, and ``model.safetensors`` carries the same
description in its header, so a lone ``.safetensors`` file written here loads too. This module
knows files, not networks: :mod:`mdan_zoo.hub._download` finds them, :mod:`mdan_zoo.hub._integrity`
checks their sha256, :mod:`mdan_zoo.hub._mixin` builds models from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .._checks import unique_keys
from .._io import atomic_path, atomic_write_text
from ..config import ConfigError, MDANConfig, Preprocessing
from ..errors import ChecksumError, WeightsError
from ..taxonomy import Taxonomy, TaxonomyError
from ._tensors import (
    HashedReader,
    hashed_reader,
    read_hashed_state_dict,
    read_state_dict,
    sort_header_metadata,
    stat_key,
    unreadable,
)

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "MAX_CONFIG_BYTES",
    "READ_VERSIONS",
    "TIMM_ARCHITECTURE",
    "read_torch_state_dict",
    "WEIGHTS_NAME",
    "Checkpoint",
    "ChecksumError",
    "PendingState",
    "WeightsError",
    "check_config",
    "config_section",
    "parse_config",
    "read_json",
    "read_hashed_state_dict",
    "read_state_dict",
    "refuse_pickle",
    "sha256_file",
    "sort_header_metadata",
    "stat_key",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)


WEIGHTS_NAME = "model.safetensors"


CONFIG_NAME = "config.json"


CARD_NAME = "README.md"


FORMAT_VERSION = 2
"""The config.json layout written. 2: the architecture (``MDANConfig``) is ``model_config`` and
``architecture`` names timm's entrypoint (``"mdan"``), beside timm's ``pretrained_cfg``, so
``timm.create_model("hf-hub:org/name")`` reads the file; 1 (read still): ``architecture`` held
the ``MDANConfig``."""

READ_VERSIONS = (1, 2)

TIMM_ARCHITECTURE = "mdan"
"""What config.json's ``architecture`` says: the timm entrypoint that rebuilds any MDAN."""


def config_section(version: int) -> str:
    """The config.json key holding ``MDANConfig.to_dict()`` in layout ``version``."""
    return "architecture" if version == 1 else "model_config"


META_KEY = "mdan_zoo"  # safetensors header key holding the config (without the file hash)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")


def refuse_pickle(name: str) -> None:
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise WeightsError(
            f"refusing to load {name!r}: {Path(name).suffix} files are pickles, and unpickling "
            "can run arbitrary code. mdan_zoo loads .safetensors only. Convert a file you trust "
            "once, in a separate step: `sd = torch.load(path, weights_only=True); "
            "safetensors.torch.save_file(sd, 'model.safetensors')`, or re-save the model with "
            "`model.save_pretrained(dir)`."
        )


MAX_CONFIG_BYTES = 64 * 1024 * 1024
"""Largest config.json (or safetensors header description) read: a valid one holds a taxonomy
within the taxonomy module's limits and is far smaller; a larger one is refused unread."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint resolved to local files (downloaded when it came from the Hub).

    Attributes:
        weights_path: the ``.safetensors`` file.
        config: the parsed ``config.json`` (or the safetensors header copy), its checkpoint-level
            fields type-checked, or None when the file carries no description (then the caller
            must know the architecture).
        source: what the user asked for, for messages.
        repo_id / revision: where it came from on the Hub (None for local files); ``revision``
            is the resolved commit when known.
        config_origin: the file the config was read from, for messages.
        verified_stat: the :func:`stat_key` of the weights when their sha256 was checked (None:
            nothing to check against); :meth:`state_dict` refuses a file changed since.
        check_on_read: set when the sha256 is to be checked as the tensors are read (one pass
            over the file instead of two): called by :meth:`state_dict` with the digest of
            the bytes read and the file's :func:`stat_key` before reading; raises
            :class:`ChecksumError` on a mismatch (:func:`mdan_zoo.hub._integrity.verify` sets it).
    """

    weights_path: Path
    config: Mapping[str, Any] | None
    source: str
    repo_id: str | None = None
    revision: str | None = None
    config_origin: str | None = None
    verified_stat: str | None = None
    check_on_read: Callable[[str, str], None] | None = None

    def pending_state(self) -> PendingState:
        """The tensors, read in two steps (:class:`PendingState`): the header first, so that
        the model is built before any tensor is read, then the tensors."""
        return PendingState(self)

    def describe(self) -> tuple[MDANConfig, Taxonomy, Preprocessing]:
        """The architecture, taxonomy and preprocessing this checkpoint was saved with."""
        if self.config is None:
            raise WeightsError(
                f"{self.source} carries no mdan_zoo config (no config.json beside it and none in "
                "its safetensors header): load it through a factory that knows the architecture, "
                "e.g. `mdan_fi(weights=...)` or `mdan(taxonomy=..., weights=...)`"
            )
        return parse_config(self.config, source=self.config_origin or self.source)

    def state_dict(
        self, *, on_header: Callable[[dict[str, tuple[int, ...]]], None] | None = None
    ) -> dict[str, Tensor]:
        """The weights, in memory the caller owns (see :func:`read_state_dict`), refused when
        the file changed after its sha256 was checked, or hashed as they are read (and refused
        on a mismatch) when the check was left to this read. ``on_header`` receives every
        tensor's shape once the header is read (before the tensors, when they are hashed)."""
        if self.check_on_read is None:
            state = read_state_dict(self.weights_path, unchanged_since=self.verified_stat)
            if on_header is not None:
                on_header({k: tuple(v.shape) for k, v in state.items()})
            return state
        pending = PendingState(self)
        try:
            shapes = pending.shapes()
            if on_header is not None:
                on_header(shapes)
            return pending.result()
        finally:
            pending.close()


class PendingState:
    """The tensors of a checkpoint, read in the caller's thread in two steps: :meth:`shapes`
    reads the file's header alone (the model is built from it, before any tensor is read),
    :meth:`result` the tensors, hashed as they are read when the checkpoint's sha256 is
    checked on read, and refused before anything sees them on a mismatch.

    (The tensors used to be read on a background thread while the model was built: on a
    two-core machine that thread cost more CPU time than the build it overlapped, reading
    into memory freshly mapped by its own malloc arena, and the wall time did not drop.)"""

    def __init__(self, ckpt: Checkpoint) -> None:
        self._ckpt = ckpt
        self._shapes: dict[str, tuple[int, ...]] | None = None
        self._state: dict[str, Tensor] | None = None
        self._reader: HashedReader | None = None
        self._before = ""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's shape, from the file's header (raises what reading it raises)."""
        if self._shapes is None:
            ckpt = self._ckpt
            if ckpt.check_on_read is None:  # verified before (or nothing to verify)
                self._state = ckpt.state_dict()
                self._shapes = {k: tuple(v.shape) for k, v in self._state.items()}
            else:
                try:
                    self._before = stat_key(ckpt.weights_path)
                except OSError as err:
                    raise unreadable(ckpt.weights_path, err) from None
                self._reader = hashed_reader(ckpt.weights_path)
                self._shapes = self._step(self._reader)
        return self._shapes

    def result(self) -> dict[str, Tensor]:
        """The tensors, verified (raises :class:`WeightsError` / :class:`ChecksumError`)."""
        self.shapes()
        if self._state is None:
            assert self._reader is not None and self._ckpt.check_on_read is not None
            state, digest = self._step(self._reader)
            self._ckpt.check_on_read(digest, self._before)  # nothing unhashed is returned
            self._state = state
        return self._state

    def close(self) -> None:
        """Stop reading (a load that failed before it needed the tensors)."""
        if self._reader is not None:
            self._reader.close()

    def _step(self, reader: HashedReader) -> Any:
        """The reader's next step: the shapes, then ``(state, digest)``. A damaged file is a
        :class:`ChecksumError` when its bytes do not match (the clearer thing to say), else the
        :class:`WeightsError` reading it raised."""
        try:
            return next(reader)
        except StopIteration as done:
            return done.value
        except WeightsError:
            check = self._ckpt.check_on_read
            assert check is not None
            try:
                digest = sha256_file(self._ckpt.weights_path)
            except OSError:
                digest = ""
            check(digest, self._before)
            raise


def _kind(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SECTIONS = ("taxonomy",)
_OPTIONAL_OBJECTS = ("preprocessing", "metrics", "training", "pretrained_cfg")
_SHA256_CHARS = frozenset("0123456789abcdef")


def check_config(data: Any, *, source: str) -> dict[str, Any]:
    """``data`` if its checkpoint-level fields have the types mdan_zoo writes, else
    :class:`WeightsError` naming ``source`` and the field (the sections themselves are checked
    by :func:`parse_config`)."""

    def bad(field: str, want: str, value: Any) -> WeightsError:
        return WeightsError(
            f"{source}: field {field!r} must be {want}, got {_kind(value)}; the file is damaged "
            "or was not written by mdan_zoo: save or download the checkpoint again"
        )

    if not isinstance(data, dict):
        raise WeightsError(f"{source} is not a JSON object (got {type(data).__name__})")
    version = data.get("format_version")
    if not _is_int(version):
        raise bad("format_version", f"the integer {FORMAT_VERSION}", version)
    if version not in READ_VERSIONS:
        raise WeightsError(
            f"{source}: format_version {version!r} is not one this mdan_zoo reads "
            f"{READ_VERSIONS}; upgrade mdan_zoo (`pip install -U mdan-zoo`) or re-save the model"
        )
    if version >= 2 and not isinstance(data.get("architecture"), str):
        raise bad("architecture", "a string (timm's entrypoint name)", data.get("architecture"))
    for name in (config_section(version), *_SECTIONS):
        if name not in data:
            raise WeightsError(
                f"{source}: missing field {name!r}; the file is not an mdan_zoo config"
            )
        if not isinstance(data[name], dict):
            raise bad(name, "an object", data[name])
    for name in _OPTIONAL_OBJECTS:
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise bad(name, "an object or null", data[name])
    for name in ("library", "mdan_zoo_version"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise bad(name, "a string", data[name])
    for name in ("num_params", "num_features"):
        if data.get(name) is not None and not _is_int(data[name]):
            raise bad(name, "an integer", data[name])
    counts = data.get("num_classes")
    if counts is not None and not (isinstance(counts, list) and all(map(_is_int, counts))):
        raise bad("num_classes", "a list of integers", counts)
    weights = data.get("weights")
    if weights is not None:
        if not isinstance(weights, dict):
            raise bad("weights", "an object {file, sha256, size}", weights)
        digest = weights.get("sha256")
        if digest is not None and not (
            isinstance(digest, str) and len(digest) == 64 and set(digest) <= _SHA256_CHARS
        ):
            raise bad("weights.sha256", "64 lower-case hex digits", digest)
        if weights.get("file") is not None and not isinstance(weights["file"], str):
            raise bad("weights.file", "a file name", weights["file"])
        size = weights.get("size")
        if size is not None and not (_is_int(size) and size >= 0):
            raise bad("weights.size", "a non-negative integer", size)
    return data


def parse_config(
    data: Mapping[str, Any], *, source: str = "config.json"
) -> tuple[MDANConfig, Taxonomy, Preprocessing]:
    """(architecture, taxonomy, preprocessing) from a checkpoint config dict.

    The taxonomy is parsed first (its size limits hold before anything is built from it); any
    problem is a :class:`WeightsError` naming ``source`` and the field.
    """
    check_config(data, source=source)
    parsed: dict[str, Any] = {}
    section = config_section(data["format_version"])
    readers = (
        ("taxonomy", Taxonomy.from_dict),
        (section, MDANConfig.from_dict),
        ("preprocessing", Preprocessing.from_dict),
    )
    for name, read in readers:
        try:
            parsed[name] = read(data.get(name) or {})
        except (
            ConfigError,
            TaxonomyError,
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            RecursionError,
        ) as err:
            raise WeightsError(
                f"{source}: field {name!r}: {err}; the file is damaged or was not written by "
                "mdan_zoo: save or download the checkpoint again"
            ) from None
    return parsed[section], parsed["taxonomy"], parsed["preprocessing"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def jsonable(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): {err}"
        ) from None


def _parse_json(raw: bytes | str, origin: str) -> Any:
    fix = "delete it and download or save the checkpoint again"
    if len(raw) > MAX_CONFIG_BYTES:
        raise WeightsError(
            f"{origin} is larger than {MAX_CONFIG_BYTES:,} bytes, far more than any checkpoint "
            f"description; it is not an mdan_zoo config: {fix}"
        )
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as err:
        raise WeightsError(
            f"{origin} is not UTF-8 text (byte {err.start}: {err.reason}): {fix}"
        ) from None
    try:
        return json.loads(text, object_pairs_hook=unique_keys(WeightsError, origin))
    except WeightsError:
        raise
    except RecursionError:
        raise WeightsError(
            f"{origin} is nested too deeply to be an mdan_zoo config: {fix}"
        ) from None
    except ValueError as err:
        raise WeightsError(f"{origin} is not valid JSON ({err}): {fix}") from None


def read_torch_state_dict(path: str | os.PathLike[str], *, what: str) -> Any:
    """A torchvision-style ``.pth`` state dict, read with ``torch.load(weights_only=True)``; a
    file that holds other pickled objects is refused with a message that never advises
    unpickling it (torch's own does, and unpickling runs whatever code the file carries)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            f"{what} {path} holds pickled Python objects besides tensors: loading them could "
            "run code the file carries, so mdan_zoo never does. Use a plain state dict of "
            "tensors or a .safetensors file (a torchvision weights name such as IMAGENET1K_V1 "
            "works too); a file you made yourself can be re-saved as `torch.save("
            "model.state_dict(), path)`"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise WeightsError(
            f"{what} {path} is not a readable torch state dict ({type(err).__name__}); pass a "
            ".safetensors file or a torchvision .pth state dict"
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    """A checkpoint's config.json, bounded in size, its checkpoint-level fields type-checked."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise WeightsError(
            f"cannot read {path}: {err.strerror or err}; delete it and download or save again"
        ) from None
    return check_config(_parse_json(raw, str(path)), source=str(path))


def header_config(weights: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise unreadable(weights, err) from None
    if META_KEY not in meta:
        return None
    origin = f"the {META_KEY!r} header entry of {weights}"
    return check_config(_parse_json(meta[META_KEY], origin), source=origin)


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
        sort_header_metadata(tmp)
        digest = sha256_file(tmp)
        size = tmp.stat().st_size
    config = dict(description)
    config["weights"] = {"file": WEIGHTS_NAME, "sha256": digest, "size": size}
    atomic_write_text(out / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / CARD_NAME, card(config))
    return out
