"""What predict accepts, expanded to a flat list: files, folders, globs, images, arrays, tensors.

A spec that matches nothing becomes a reported problem, not an exception, so one typo does not
stop a batch.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .imageio import IMAGE_EXTENSIONS, ImageReadError

__all__ = ["ImageLike", "expand_image_paths", "flatten_inputs"]

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


def expand_image_paths(
    specs: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (searched recursively for image extensions) and globs -> image paths.

    Returns ``(paths, problems)``: a spec that matches nothing is a problem ``(spec, reason)``,
    not an exception, so one typo does not stop a batch. Explicitly named files are kept
    whatever their extension (reading them says whether they are images).
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for spec in specs:
        spec_path = Path(spec)
        if spec_path.is_dir():
            found = sorted(
                p
                for p in spec_path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                problems.append(
                    (str(spec), f"folder has no image files ({', '.join(IMAGE_EXTENSIONS)})")
                )
            for p in found:
                add(p)
        elif spec_path.exists() or spec_path.is_symlink():
            add(spec_path)
        elif glob.has_magic(str(spec)):
            matches = sorted(glob.glob(str(spec), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                problems.append((str(spec), "the pattern matches no files"))
            for p in files:
                add(p)
        else:
            problems.append((str(spec), "no such file or folder"))
    return paths, problems


def flatten_inputs(inputs: Any) -> list[tuple[str, Any]]:
    """Inputs -> ``[(source name, item)]``; folders and globs expand to their files."""
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
        inputs = list(inputs.unbind(0))
    elif not isinstance(inputs, Sequence):
        raise TypeError(
            f"inputs must be a path, PIL image, array, tensor or a list of them, got {type(inputs).__name__}"
        )
    items: list[tuple[str, Any]] = []
    counters = {"image": 0, "array": 0, "tensor": 0}
    for item in inputs:
        if isinstance(item, ImageReadError):  # a spec that matched nothing, reported in place
            items.append((item.path, item))
            continue
        if isinstance(item, (str, os.PathLike)):
            p = Path(item)
            if p.is_dir() or (not p.exists() and glob.has_magic(str(item))):
                files, problems = expand_image_paths([item])
                items.extend((str(f), f) for f in files)
                items.extend((spec, ImageReadError(spec, why)) for spec, why in problems)
            else:
                items.append((str(item), p))
            continue
        kind = (
            "image"
            if isinstance(item, Image.Image)
            else "tensor"
            if isinstance(item, torch.Tensor)
            else "array"
        )
        items.append((f"<{kind} {counters[kind]}>", item))
        counters[kind] += 1
    return items
