"""Hub references (``hf-hub:org/name@revision``) checked before anything touches a network or disk.

huggingface_hub builds cache paths from the repo id and the revision (``refs/<revision>``), so an
unchecked ``@../../../x`` writes outside the cache. Every ref, ``revision=`` and push target
passes through here first: anything that is not a valid Hub name is a :class:`WeightsError`
that names it, and no request is sent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ._checkpoint import WeightsError

__all__ = ["check_repo_id", "check_revision", "is_hub_ref", "parse_hub_ref", "shown"]

MAX_REPO_ID = 96  # the Hub's limit (huggingface_hub.utils.validate_repo_id)
MAX_REVISION = 255  # a git ref name component limit on common file systems

_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
_REF_FORBIDDEN = set(" ~^:?*[\\")  # git check-ref-format, plus the space


def shown(text: object, limit: int = 80) -> str:
    """``repr`` of a user string cut to ``limit`` characters (a 10k-character ref stays short)."""
    if isinstance(text, str) and len(text) > limit:
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)


def check_repo_id(repo_id: object, *, ref: object = None, namespace_required: bool = True) -> str:
    """``repo_id`` if it is a valid Hub model id (``org/name``), else :class:`WeightsError`.

    The Hub's rules (as ``huggingface_hub.utils.validate_repo_id``, ASCII only): 1-96
    characters of ``A-Z a-z 0-9 - _ .``, no ``--`` or ``..``, not starting or ending with ``-``
    or ``.``, no ``.git`` suffix; ``org/name`` (``name`` alone only for pushes, where the Hub
    fills in your user name).
    """
    what = shown(ref if ref is not None else repo_id)
    form = "'org/name'" if namespace_required else "'name' or 'org/name'"
    if not isinstance(repo_id, str):
        raise WeightsError(f"{what} is not a Hub repository id: write {form}")
    parts = repo_id.split("/")
    problem = None
    if not repo_id:
        problem = "it is empty"
    elif len(repo_id) > MAX_REPO_ID:
        problem = f"it is longer than the Hub's {MAX_REPO_ID} characters"
    elif not repo_id.isascii() or not repo_id.isprintable():
        problem = "it holds characters the Hub does not allow (only A-Z a-z 0-9 - _ . and one /)"
    elif len(parts) > 2 or (namespace_required and len(parts) != 2):
        problem = f"it must have the form {form}"
    elif any(not p for p in parts):
        problem = "the organisation or the name is empty"
    elif not all(_REPO_PART.fullmatch(p) for p in parts):
        problem = "each part uses only A-Z a-z 0-9 - _ . and cannot start or end with '-' or '.'"
    elif "--" in repo_id or ".." in repo_id:
        problem = "'--' and '..' are not allowed"
    elif repo_id.endswith(".git"):
        problem = "it cannot end with '.git'"
    if problem:
        raise WeightsError(f"{what} is not a valid Hub repository id: {problem}; write {form}")
    return repo_id


def check_revision(revision: object, *, ref: object = None) -> str:
    """``revision`` if it is a safe git ref name (branch, tag, ``refs/pr/N``, commit), else
    :class:`WeightsError`: no ``..``, no leading ``/`` or ``-``, no empty or dot-led component,
    no control characters, spaces or ``~^:?*[\\``, no ``@{``, at most 255 ASCII characters."""
    what = shown(ref if ref is not None else revision)
    if not isinstance(revision, str):
        raise WeightsError(f"revision {what} must be a string (a branch, tag or commit)")
    problem = None
    parts = revision.split("/")
    if not revision:
        problem = "it is empty"
    elif len(revision) > MAX_REVISION:
        problem = f"it is longer than {MAX_REVISION} characters"
    elif not revision.isascii() or not revision.isprintable() or _REF_FORBIDDEN & set(revision):
        problem = "it holds control characters, spaces or one of ~^:?*[\\"
    elif ".." in revision or "@{" in revision:
        problem = "'..' and '@{' are not allowed"
    elif revision.startswith("-") or any(not p or p.startswith(".") for p in parts):
        problem = "it is an absolute path, or has an empty or dot-led part, or starts with '-'"
    elif revision.endswith((".", ".lock")):
        problem = "it cannot end with '.' or '.lock'"
    if problem:
        raise WeightsError(
            f"revision {what} is not a valid Hub revision: {problem}. Give a branch, a tag or "
            "(best) a full 40-hex commit"
        )
    return revision


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` (or ``"org/name@rev"``) -> ``("org/name", "rev" or None)``,
    both checked (:func:`check_repo_id`, :func:`check_revision`)."""
    if not isinstance(ref, str):
        raise WeightsError(f"{shown(ref)} is not a Hub reference: write 'hf-hub:org/name@revision'")
    body = ref[len("hf-hub:") :] if ref.startswith("hf-hub:") else ref
    repo, at, rev = body.partition("@")
    check_repo_id(repo, ref=ref)
    if at:
        check_revision(rev, ref=ref)
    return repo, (rev or None)


def is_hub_ref(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a Hub repository rather than a local path.

    ``hf-hub:...`` always does; ``org/name`` does unless such a path exists (the one file
    system look-up made before the ref is checked: a ``stat``, nothing is written).
    """
    if isinstance(source, os.PathLike):
        return False
    if source.startswith("hf-hub:"):
        return True
    if source.startswith((".", "/", "~")) or "\\" in source:
        return False
    if "\x00" in source or len(source) > 4 * MAX_REVISION:
        return True  # no such local path can exist; parse_hub_ref will say what is wrong
    if Path(source).exists():
        return False
    return source.partition("@")[0].count("/") == 1 and not source.endswith(".safetensors")
