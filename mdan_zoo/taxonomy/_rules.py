"""The rules every label tree obeys, and the limits that keep hostile files cheap to refuse.

Trees come from files and checkpoints made by others, so every builder of
:class:`~mdan_zoo.taxonomy.Taxonomy` checks each field's type and these size limits *before* it
copies anything, in time linear in the input (``docs/taxonomy.md``, "Limits").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._checks import kind, short
from ..errors import TaxonomyError

__all__ = [
    "MAX_ALIASES",
    "MAX_CLASSES_PER_LEVEL",
    "MAX_LABELS",
    "MAX_LEVELS",
    "MAX_NAME_LENGTH",
    "MAX_TAXONOMY_FILE_BYTES",
    "TaxonomyError",
]

MAX_LEVELS = 3
"""Mapping (e) of the paper (l_s = 5 - l_a) has feature maps for three affective levels only."""
MAX_CLASSES_PER_LEVEL = 30_000
"""Labels on one level (WEBEmo's finest has 25; ImageNet-21k has 21,841 classes)."""
MAX_LABELS = 60_000
"""Labels on all levels together."""
MAX_ALIASES = 60_000
"""Alias spellings of one taxonomy."""
MAX_NAME_LENGTH = 256
"""Characters of a label, an alias, a level name or a taxonomy name."""
MAX_TAXONOMY_FILE_BYTES = 16 * 1024 * 1024
"""Bytes of a taxonomy JSON file (60,000 labels and 30,000 aliases of 30 characters: 5.7 MiB)."""
MAX_JSON_STRINGS = 2 * MAX_LABELS + 2 * MAX_ALIASES + 2 * MAX_LEVELS + 16
"""Strings a file within the limits can hold: labels, parents, alias pairs, names and keys."""


def default_level_names(n: int) -> list[str]:
    return [f"level{i + 1}" for i in range(n)]


def check_depth(n: int) -> None:
    if n < 1:
        raise TaxonomyError("a taxonomy needs at least one level")
    if n > MAX_LEVELS:
        raise TaxonomyError(
            f"{n} levels: MDAN supports at most {MAX_LEVELS} (mapping (e), l_s = 5 - l_a, has "
            f"feature maps F4, F3, F2 only; paper Sec. 3.1)"
        )


def check_list(value: Any, what: str, expected: str) -> Any:
    """``value`` if it is a list or tuple (a string is not a list of labels), else an error."""
    if not isinstance(value, (list, tuple)):
        raise TaxonomyError(f"{what} must be {expected}, got {kind(value)}")
    return value


def check_counts(depth: int, on_level: int, total: int) -> None:
    if on_level > MAX_CLASSES_PER_LEVEL:
        raise TaxonomyError(
            f"level {depth} has {on_level:,} labels, more than the limit of "
            f"MAX_CLASSES_PER_LEVEL = {MAX_CLASSES_PER_LEVEL:,}"
        )
    if total > MAX_LABELS:
        raise TaxonomyError(
            f"the taxonomy has {total:,} labels, more than the limit of MAX_LABELS = {MAX_LABELS:,}"
        )


def check_sizes(levels: Sequence[Sequence[Any]]) -> None:
    """Label counts per level and in all, before any level is copied or scanned."""
    total = 0
    for depth, level in enumerate(levels):
        total += len(level)
        check_counts(depth, len(level), total)


# C0/C1 controls (ESC starts terminal escapes, NL forges lines), line and paragraph separators,
# and the bidirectional embeddings, overrides, isolates and marks that reorder printed text.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def check_name(value: Any, what: str) -> str:
    """A label, alias, level or taxonomy name: a non-empty string of bounded length, free of
    control characters (names reach terminals, CSV files and file names)."""
    if not isinstance(value, str):
        raise TaxonomyError(f"{what} must be a string, got {kind(value)}")
    if not value.strip():
        raise TaxonomyError(f"{what} is {value!r}: names must be non-empty strings")
    if len(value) > MAX_NAME_LENGTH:
        raise TaxonomyError(
            f"{what} {short(value)} is {len(value):,} characters long, more than the limit of "
            f"MAX_NAME_LENGTH = {MAX_NAME_LENGTH}"
        )
    bad = _CONTROL.search(value)
    if bad is not None:
        raise TaxonomyError(
            f"{what} {short(value)} holds the control character U+{ord(bad.group()):04X}: names "
            "are printed in terminals and written to files, where control characters and "
            "text-direction overrides forge or reorder text; remove it"
        )
    return value


def check_labels(labels: Sequence[str], depth: int, level_names: Sequence[str] | None) -> None:
    where = f"level {depth}" + (
        f" ({level_names[depth]!r})" if level_names and depth < len(level_names) else ""
    )
    check_list(labels, where, "a list of label strings")
    if len(labels) == 0:
        raise TaxonomyError(f"{where} is empty: every level needs at least 2 classes")
    check_counts(depth, len(labels), 0)
    seen: set[str] = set()
    for label in labels:
        check_name(label, f"{where}: label")
        if label.lower() in seen:
            raise TaxonomyError(
                f"duplicate label {label!r} at {where}: names must be unique within a level "
                f"(case is ignored)"
            )
        seen.add(label.lower())
    if len(labels) < 2:
        raise TaxonomyError(
            f"{where} has {len(labels)} class ({labels[0]!r}): every level needs at least 2 classes"
        )


def check_parent(parent: Any, label: str, depth: int) -> str:
    if parent is None or parent == "":
        raise TaxonomyError(
            f"label {label!r} at level {depth} has no parent: every label below the first "
            f"level needs exactly one parent"
        )
    if not isinstance(parent, str):
        raise TaxonomyError(
            f"the parent of label {label!r} at level {depth} must be a string naming a label "
            f"of level {depth - 1}, got {kind(parent)}"
        )
    return parent


def checked_aliases(aliases: Any) -> dict[str, str]:
    """``aliases`` as a lower-cased dict of strings, or an error naming the bad entry."""
    if not isinstance(aliases, Mapping):
        raise TaxonomyError(
            "'aliases' must be an object mapping an alias to a label name "
            f'({{"sad": "sadness"}}), got {kind(aliases)}'
        )
    if len(aliases) > MAX_ALIASES:
        raise TaxonomyError(
            f"{len(aliases):,} aliases, more than the limit of MAX_ALIASES = {MAX_ALIASES:,}"
        )
    out: dict[str, str] = {}
    for alias, target in aliases.items():
        check_name(alias, "an alias")
        check_name(target, f"the target of alias {alias!r}")
        out[alias.lower()] = target
    return out


def tolist(values: Any) -> list[Any]:
    if hasattr(values, "tolist"):
        return list(values.tolist())
    return list(values)
