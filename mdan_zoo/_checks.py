"""Checks for data from outside (JSON files, config dicts): bounded reads, typed fields.

Everything here runs in time linear in the input and refuses oversized input before building
anything from it, so a hostile file costs at most its own (capped) size. Errors are raised as the
caller's error class (``TaxonomyError``, ``ConfigError``) and name the file or field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def short(value: Any) -> str:
    """A bounded repr for error messages (a 10^6-element list prints as a few elements)."""
    return _REPR.repr(value)


def kind(value: Any) -> str:
    """``str 'xy'``: the type and a short repr, for "expected X, got ..." messages."""
    return f"{type(value).__name__} {short(value)}"


def preview(items: Sequence[Any], limit: int = 20) -> str:
    """At most ``limit`` items of a list for a message, then how many were left out."""
    more = f", ... ({len(items) - limit:,} more)" if len(items) > limit else ""
    return "[" + ", ".join(short(x) for x in items[:limit]) + more + "]"


def unique_keys(error: type[Exception], where: str) -> Any:
    """A ``json.loads`` ``object_pairs_hook`` that refuses a key repeated in one object: JSON
    keeps the last silently, so ``"positive"`` twice would drop the first subtree."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise error(
                    f"{where}: the key {short(key)} appears twice in one object (JSON would keep "
                    "only the last and silently drop the first); merge the two or rename one"
                )
            out[key] = value
        return out

    return hook


def read_json_file(
    path: str | os.PathLike[str],
    *,
    error: type[Exception],
    what: str,
    max_bytes: int,
    max_strings: int | None = None,
) -> Any:
    """Parse a JSON file of at most ``max_bytes`` bytes; every failure is ``error`` naming it.

    Reads at most ``max_bytes + 1`` bytes (a huge file is refused without being read), refuses
    non-UTF-8 text, and, with ``max_strings``, a file holding more JSON strings than a valid one
    can (counted from the quotes, before ``json`` allocates one object per string).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder; give the JSON file inside it") from None
    except PermissionError:
        raise error(f"{what} {path}: permission denied") from None
    except OSError as err:
        raise error(f"{what} {path} cannot be read ({err.strerror or err})") from None
    if len(raw) > max_bytes:
        raise error(
            f"{what} {path} is larger than the limit of {max_bytes:,} bytes; a valid one is far "
            "smaller (is this the right file?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(
            f"{what} {path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None
    if max_strings is not None:
        strings = (text.count('"') - text.count('\\"')) // 2
        if strings > max_strings:
            raise error(
                f"{what} {path} holds about {strings:,} JSON strings, more than the "
                f"{max_strings:,} a file within the size limits can hold"
            )
    try:
        return json.loads(text, object_pairs_hook=unique_keys(error, f"{what} {path}"))
    except json.JSONDecodeError as err:
        raise error(f"{what} {path} is not valid JSON: {err}") from None
    except RecursionError:
        raise error(
            f"{what} {path} is nested too deeply to be parsed (arrays or objects inside each "
            "other thousands of times); a valid file is a few levels deep"
        ) from None


# ------------------------------------------------------------------ typed dataclass fields
def _describe(hint: Any) -> str:
    """A type hint in words, for "must be ..." messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is Literal:
        return f"one of {args!r}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list of {len(args)} values"
    if origin in (dict, Mapping) or hint is dict:
        return "an object (a JSON dict)"
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    words = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
    return words.get(hint, f"values ({_describe(hint)})")


class _Mismatch(Exception):
    """A value does not fit a type hint (internal; turned into the caller's error)."""


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` if it fits ``hint`` (JSON lists become tuples), else raise _Mismatch.

    Strict on purpose: ``"0.5"`` is not a number, ``true`` is not an integer, ``1`` is not a
    boolean, NaN and infinity are not numbers a config can hold.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Mismatch
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        return dict(value)
    if origin in (Union, types.UnionType):
        for option in args:
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # a hint this checker does not model: left to the class's own validation


def typed_fields(
    cls: type,
    data: Any,
    *,
    error: type[Exception],
    maxima: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The keyword arguments for ``cls(**...)`` from a JSON-like dict, type-checked per field.

    The expected type of each field is read from the dataclass's own annotations, so a new
    field is checked without changes here. ``maxima`` caps numeric fields (for tuple fields:
    every element) that size an allocation; lower bounds and other rules are left to the
    class. Unknown keys, a non-dict, a value of the wrong type or over its cap raise ``error``
    naming the field and what it must be.
    """
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise error(f"{name} must be a JSON object (a dict of fields), got {kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise error(
            f"unknown {name} field(s) {sorted(map(str, unknown))}; known fields: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        try:
            values[key] = _coerce(value, hint)
        except _Mismatch:
            raise error(
                f"{name}.{key} must be {_describe(hint)}, got {kind(value)}"
                + (" (NaN and infinity are not allowed)" if _non_finite(value) else "")
            ) from None
        high = (maxima or {}).get(key, math.inf)
        items = values[key] if isinstance(values[key], tuple) else (values[key],)
        if any(isinstance(item, (int, float)) and item > high for item in items):
            raise error(f"{name}.{key} must be at most {high:,}, got {short(value)}")
    return values


def _non_finite(value: Any) -> bool:
    items = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(v, float) and not math.isfinite(v) for v in items)
