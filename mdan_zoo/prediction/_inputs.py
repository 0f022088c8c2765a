"""What predict accepts, expanded lazily: files, folders, globs, images, arrays, tensors.

A million-file folder is walked as a stream: one directory's entry *names* are listed and sorted
at a time (no ``Path`` objects, no ``stat`` results are kept for the files), so memory does not
grow with the number of images. The order is that of ``sorted(folder.rglob("*"))``: each
directory's entries by name, depth first. Directory symlinks are followed, but every real
directory is entered once per spec (by device and inode), so a symlink loop is cut instead of
walked for ever. Globs (``"shots/**/*.jpg"``, quoted so the shell leaves them alone) are matched
by the same walker; Python's ``glob`` follows symlink loops until it runs out of path length.

A spec that matches nothing becomes a reported problem, not an exception, so one typo does not
stop a batch. A file reached by two specs (``photos/`` and ``photos/a.jpg``) is given once.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..imageio import IMAGE_EXTENSIONS, ImageReadError

__all__ = [
    "ImageLike",
    "expand_image_paths",
    "flatten_inputs",
    "iter_image_paths",
    "iter_inputs",
]

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor

_NO_IMAGES = f"folder has no image files ({', '.join(IMAGE_EXTENSIONS)})"


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _component_regex(part: str) -> str:
    """One glob component (no ``/``) -> a regex; ``*`` and ``?`` never match a leading dot."""
    out = [] if part.startswith(".") else [r"(?!\.)"]
    i = 0
    while i < len(part):
        c = part[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1 if part[i : i + 1] == "!" else i
            j = j + 1 if part[j : j + 1] == "]" else j
            end = part.find("]", j)
            if end < 0:
                out.append(r"\[")
                continue
            body = part[i:end]
            i = end + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            if body.startswith("^"):
                body = "\\" + body
            out.append(("[^" if negate else "[") + body + "]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _glob_matcher(parts: list[str]) -> re.Pattern[str]:
    """Components after the literal root -> a regex on the ``/``-joined relative path.

    ``**`` is zero or more directories (or, last, any file below), never hidden ones, as
    ``glob.glob(recursive=True)`` without ``include_hidden``."""
    pieces = []
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        if part == "**":
            pieces.append(r"(?:(?!\.)[^/]+/)*(?!\.)[^/]+" if last else r"(?:(?!\.)[^/]+/)*")
        else:
            pieces.append(_component_regex(part) + ("" if last else "/"))
    return re.compile("".join(pieces))


def _walk(root: str, *, descend: Callable[[str, int], bool]) -> Iterator[tuple[str, str]]:
    """Files below ``root`` as ``(path, path relative to root with '/')``, in sorted-path order.

    Only names are listed (``os.scandir``, sorted per directory); a directory is entered when
    ``descend(relative dir, depth)`` says so and it is not a real directory already entered
    (symlink loops end there)."""
    seen: set[tuple[int, int]] = set()

    def visit(folder: str, rel: str, depth: int) -> Iterator[tuple[str, str]]:
        try:
            st = os.stat(folder)
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted((e.name, e.is_dir()) for e in it)
        except OSError:
            return
        for name, is_dir in entries:
            sub = os.path.join(folder, name)
            sub_rel = f"{rel}/{name}" if rel else name
            if is_dir:
                if descend(sub_rel, depth + 1):
                    yield from visit(sub, sub_rel, depth + 1)
            else:
                yield sub, sub_rel

    yield from visit(root, "", 0)


def _iter_folder(folder: str) -> Iterator[str]:
    for path, _ in _walk(folder, descend=lambda rel, depth: True):
        if _is_image_name(path):
            yield path


def _split_glob(spec: str) -> tuple[str, list[str]]:
    """``"a/b/*/c*.png"`` -> literal root ``"a/b"`` and pattern components ``["*", "c*.png"]``."""
    parts = spec.split("/")
    cut = next(k for k, p in enumerate(parts) if glob.has_magic(p))
    root = "/".join(parts[:cut]) or ("/" if spec.startswith("/") else "")
    return root, [p for p in parts[cut:] if p not in ("", ".")]


def _iter_glob(spec: str) -> tuple[Iterator[str], Callable[[str], bool]]:
    """Files matching ``spec`` (lazily, sorted-path order) and a test of coverage by it."""
    root, parts = _split_glob(spec)
    matcher = _glob_matcher(parts)
    recursive = "**" in parts
    # directories above the first "**" (or above the file name) must match their component
    dir_parts = parts[: parts.index("**")] if recursive else parts[:-1]
    dir_res = [re.compile(_component_regex(p)) for p in dir_parts]
    dot_ok = any(p.startswith(".") for p in parts)

    def descend(rel: str, depth: int) -> bool:
        name = rel.rsplit("/", 1)[-1]
        if depth <= len(dir_res):
            return dir_res[depth - 1].fullmatch(name) is not None
        return recursive and (dot_ok or not name.startswith("."))

    def files() -> Iterator[str]:
        for path, rel in _walk(root or ".", descend=descend):
            if matcher.fullmatch(rel):
                yield path if root else rel

    base = os.path.abspath(root or ".")

    def covers(abs_path: str) -> bool:
        return abs_path.startswith(base.rstrip("/") + "/") and bool(
            matcher.fullmatch(abs_path[len(base.rstrip("/")) + 1 :])
        )

    return files(), covers


def _folder_covers(folder: str) -> Callable[[str], bool]:
    base = folder.rstrip("/") + "/"
    return lambda path: path.startswith(base) and _is_image_name(path)


def iter_image_paths(specs: Iterable[str | os.PathLike[str]]) -> Iterator[Path | ImageReadError]:
    """Files, folders (searched recursively for image extensions) and globs -> image paths, lazily.

    Yields each path in order (a folder or glob expands in place, sorted) and, in place of a spec
    that matches nothing, an :class:`~mdan_zoo.imageio.ImageReadError` whose ``path`` is the spec
    and ``reason`` says why. Explicitly named files are kept whatever their extension (reading
    them says whether they are images). A file reached by an earlier spec is not repeated.
    """
    explicit: set[str] = set()  # files named one by one: as many as the arguments
    earlier: list[Callable[[str], bool]] = []  # folders / globs: "does this spec cover a path?"

    def fresh(path: str) -> bool:
        key = os.path.abspath(path)
        return key not in explicit and not any(cover(key) for cover in earlier)

    for spec in specs:
        text = os.fspath(spec)
        if os.path.isdir(text):
            found = False
            for path in _iter_folder(text):
                found = True
                if fresh(path):
                    yield Path(path)
            if not found:
                yield ImageReadError(text, _NO_IMAGES)
            earlier.append(_folder_covers(os.path.abspath(text)))
        elif os.path.lexists(text):
            if fresh(text):
                yield Path(text)
            explicit.add(os.path.abspath(text))
        elif glob.has_magic(text):
            files, covers = _iter_glob(text)
            found = False
            for path in files:
                if os.path.isfile(path):
                    found = True
                    if fresh(path):
                        yield Path(path)
            if not found:
                yield ImageReadError(text, "the pattern matches no files")
            earlier.append(covers)
        else:
            yield ImageReadError(text, "no such file or folder")


def expand_image_paths(
    specs: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """:func:`iter_image_paths` as lists: ``(paths, problems)``, a problem being
    ``(spec, reason)`` for a spec that matches nothing."""
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in iter_image_paths(specs):
        if isinstance(item, ImageReadError):
            problems.append((item.path, item.reason))
        else:
            paths.append(item)
    return paths, problems


def iter_inputs(inputs: Any) -> Iterator[tuple[str, Any]]:
    """Inputs -> ``(source name, item)`` pairs, lazily; folders and globs expand to their files.

    ``inputs`` is one input or a list / any iterable of them (a generator is consumed as it
    goes). Files keep the name they were given; in-memory images are named ``<image N>``,
    ``<array N>``, ``<tensor N>`` (N counting each kind from 0)."""
    if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray)) or (
        isinstance(inputs, torch.Tensor) and inputs.ndim in (2, 3)
    ):
        inputs = [inputs]
    elif isinstance(inputs, torch.Tensor):
        if inputs.ndim != 4:
            raise ValueError(
                f"a tensor input must be one image [C, H, W] or a batch [B, C, H, W], "
                f"got shape {tuple(inputs.shape)}"
            )
        inputs = inputs.unbind(0)
    elif not isinstance(inputs, (Sequence, Iterator)) or isinstance(inputs, bytes):
        raise TypeError(
            "inputs must be a path, PIL image, array, tensor or a list of them, "
            f"got {type(inputs).__name__}"
        )
    counters = {"image": 0, "array": 0, "tensor": 0}
    for item in inputs:
        if isinstance(item, ImageReadError):  # a spec that matched nothing, reported in place
            yield item.path, item
        elif isinstance(item, (str, os.PathLike)):
            text = os.fspath(item)
            if os.path.isdir(text) or (not os.path.lexists(text) and glob.has_magic(text)):
                for found in iter_image_paths([text]):
                    name = found.path if isinstance(found, ImageReadError) else str(found)
                    yield name, found
            else:
                yield str(item), Path(item)
        else:
            kind = (
                "image"
                if isinstance(item, Image.Image)
                else "tensor"
                if isinstance(item, torch.Tensor)
                else "array"
            )
            yield f"<{kind} {counters[kind]}>", item
            counters[kind] += 1


def flatten_inputs(inputs: Any) -> list[tuple[str, Any]]:
    """:func:`iter_inputs` as a list."""
    return list(iter_inputs(inputs))
