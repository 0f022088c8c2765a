"""Reading images from the wild into RGB PIL images, with a clear error per bad file.

Datasets and prediction both read images through :func:`read_image`, so they agree on what a
valid image is. Every awkward case is either read correctly or refused with an
:class:`ImageReadError` naming the file, the problem and the fix:

* EXIF orientation is applied (the picture comes out upright, as a viewer shows it);
* greyscale, bilevel, palette, CMYK and YCbCr images are converted to RGB;
* transparency (RGBA, LA, palette with a transparent colour) is composited on white, the way a
  browser shows it on a white page (a raw RGB conversion would show hidden colours instead);
* 16-bit greyscale (``I;16``, ``I``) is scaled from 0..65535 to 0..255 (Pillow's own conversion
  clips it, turning most photos white); float images are read as 0..1;
* animated images (GIF, WebP, APNG) give their first frame;
* truncated files are refused unless ``allow_truncated=True`` (then Pillow fills the missing
  part with grey);
* empty files, non-images, unreadable files and decompression bombs (more than
  ``max_pixels`` pixels, by default Pillow's ``Image.MAX_IMAGE_PIXELS``) are refused;
* strips longer than ``max_aspect_ratio`` times their width (default
  :data:`MAX_ASPECT_RATIO`) are refused: the model's transform scales the *shorter* side up to
  its input size, so a tiny 1 x 20000 file would become a 512 x 10,240,000 picture (15 GB).
  Checked from the header, before decoding, for files and in-memory images alike.

Pillow's switches for the last two cases are module globals; they are changed only for the one
call that asks, under a lock, and always restored.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageReadError

__all__ = ["IMAGE_EXTENSIONS", "MAX_ASPECT_RATIO", "ImageReadError", "read_image", "to_pil_image"]

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".pbm",
    ".jfif",
)
"""File name endings (case ignored) picked up when a folder is walked: by ``predict``, the CLI
and the folder-walking dataset adapters; other files are ignored."""

MAX_ASPECT_RATIO = 50.0
"""Default bound on long side / short side. Phone and stitched panoramas run 2:1 to about 10:1;
at 50:1 the eval transform's resize (shorter side to ``resize_size``, 512 by default) makes at
most a 512 x 25,600 picture (39 MB), whatever the file."""

_PILLOW_LOCK = threading.Lock()
_WHITE = (255, 255, 255)


@contextlib.contextmanager
def _pillow_limits(*, allow_truncated: bool, limit: int | None) -> Iterator[None]:
    """Pillow's truncation / bomb switches for one call only (they are module globals)."""
    pillow_max = Image.MAX_IMAGE_PIXELS
    raise_limit = limit is not None and pillow_max is not None and limit > pillow_max
    if not allow_truncated and not raise_limit:
        yield
        return
    with _PILLOW_LOCK:
        old_truncated, old_max = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
        try:
            if allow_truncated:
                ImageFile.LOAD_TRUNCATED_IMAGES = True
            if raise_limit:
                Image.MAX_IMAGE_PIXELS = limit
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated
            Image.MAX_IMAGE_PIXELS = old_max


def _bomb_reason(pixels: int, limit: int) -> str:
    return (
        f"decompression bomb guard: {pixels:,} pixels is more than the limit of {limit:,} "
        "(a small file that would expand to a huge image); if you trust this file, raise the "
        "limit for this call with max_pixels= (CLI: --max-pixels)"
    )


def _check_strip(
    source: str | os.PathLike[str], size: tuple[int, int], limit: float | None
) -> None:
    """Refuse an image of ``size`` (W, H) whose long side exceeds ``limit`` times its short side."""
    w, h = size
    short_side, long_side = min(w, h), max(w, h)
    if limit is None or (short_side > 0 and long_side <= limit * short_side):
        return
    ratio = long_side / short_side if short_side else float("inf")
    resized = f"512 x {math.ceil(512 * ratio):,}" if short_side else "an unbounded"
    raise ImageReadError(
        source,
        f"{w} x {h} pixels is a strip with aspect ratio {ratio:,.0f}:1, more than the limit "
        f"of {limit:g}:1: the model's transform scales the shorter side to its input size "
        f"(512 by default), which would make this {resized} pixels; crop it, or pass a larger "
        "max_aspect_ratio= (None turns the check off) if you trust it",
    )


def read_image(
    path: str | os.PathLike[str],
    *,
    allow_truncated: bool = False,
    max_pixels: int | None = None,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
) -> Image.Image:
    """Open ``path`` as an upright RGB image; raise :class:`ImageReadError` with the reason.

    Args:
        path: an image file.
        allow_truncated: decode a truncated file anyway (the missing part is grey) instead of
            refusing it.
        max_pixels: refuse images with more pixels than this (default: Pillow's
            ``Image.MAX_IMAGE_PIXELS``); a larger value lets a trusted huge image through.
        max_aspect_ratio: refuse images whose long side is more than this many times the
            short side (default :data:`MAX_ASPECT_RATIO`, 50): resizing the shorter side to
            the model's input size makes memory grow with this ratio, so it bounds what the
            transform allocates after the decode (``resize_size**2 * max_aspect_ratio``
            pixels). ``None`` turns the check off.
    """
    if max_aspect_ratio is not None and not max_aspect_ratio >= 1:
        raise ValueError(f"max_aspect_ratio must be >= 1 or None, got {max_aspect_ratio!r}")
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageReadError(path, f"cannot access the file ({err.strerror or err})") from None
    if size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    try:
        with (
            _pillow_limits(allow_truncated=allow_truncated, limit=limit),
            warnings.catch_warnings(),
        ):
            # We refuse over-limit images ourselves below, so Pillow's warning is only noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                pixels = img.size[0] * img.size[1]
                if limit is not None and pixels > limit:
                    raise ImageReadError(path, _bomb_reason(pixels, limit))
                _check_strip(path, img.size, max_aspect_ratio)
                img.seek(0)  # first frame of an animation
                img.load()
                return _to_rgb(img, path)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        w_h = _header_size(path)
        pixels = w_h[0] * w_h[1] if w_h else -1
        raise ImageReadError(path, _bomb_reason(pixels, limit or 0)) from None
    except UnidentifiedImageError:
        raise ImageReadError(
            path, "not an image file Pillow can identify (wrong extension or not an image?)"
        ) from None
    except PermissionError as err:
        raise ImageReadError(path, f"permission denied ({err.strerror})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        message = str(err)
        if "truncated" in message.lower() or isinstance(err, EOFError):
            raise ImageReadError(
                path,
                f"corrupt or truncated image: the file ends early ({message or 'end of data'}); "
                "it may still be downloading or was cut off - re-download it, or pass "
                "allow_truncated=True (CLI: --allow-truncated) to decode what is there",
            ) from None
        raise ImageReadError(path, f"corrupt or truncated image ({message})") from None


def _header_size(path: Path) -> tuple[int, int] | None:
    """The size in the file's header, read with Pillow's guard off (nothing is decoded)."""
    with _PILLOW_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as img:
                return img.size
        except Exception:  # noqa: BLE001 - only used to word an error message
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image, source: str | os.PathLike[str]) -> Image.Image:
    """Any Pillow mode -> upright RGB (see the module docstring for each case)."""
    try:
        upright = ImageOps.exif_transpose(img)
    except MemoryError:  # the machine, not the file: never reported as a broken EXIF block
        raise
    except Exception as err:  # noqa: BLE001 - a broken EXIF block should not lose the picture
        raise ImageReadError(source, f"unreadable EXIF orientation ({err})") from None
    img = upright if upright is not None else img
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img.copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode != "I" or arr.max(initial=0) > 255 else 255.0
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise ImageReadError(
                source,
                f"32-bit integer image with values outside 0..65535 (mode {mode}); "
                "save it as 8- or 16-bit",
            )
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        return _composite_on_white(img)
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageReadError(
            source, f"cannot convert image mode {mode!r} to RGB ({err}); save it as RGB"
        ) from None


def to_pil_image(
    image: Any, *, name: str = "<array>", max_aspect_ratio: float | None = MAX_ASPECT_RATIO
) -> Image.Image:
    """A PIL image, numpy array or tensor -> upright RGB PIL image.

    Arrays are ``[H, W]``, ``[H, W, C]`` (numpy layout) with C = 1, 3 or 4; tensors are
    ``[C, H, W]`` (torchvision layout). uint8 values are 0..255, uint16 0..65535, floats 0..1
    (not normalised: pass the photo, the model applies its own normalisation). Four channels
    are RGBA and are composited on white. Strips beyond ``max_aspect_ratio`` are refused as in
    :func:`read_image`.
    """
    if isinstance(image, Image.Image):
        _check_strip(name, image.size, max_aspect_ratio)
        image.load()
        return _to_rgb(image, name)
    chw = False
    if type(image).__module__.startswith("torch"):
        import torch

        if not isinstance(image, torch.Tensor):
            raise ImageReadError(name, f"unsupported input type {type(image).__name__}")
        if image.ndim == 3:
            chw = True
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ImageReadError(
            name,
            f"unsupported input type {type(image).__name__}: pass a file path, a PIL image, "
            "a numpy array [H, W(, C)] or a tensor [C, H, W]",
        )
    arr = image
    if chw:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        layout = "[C, H, W]" if chw else "[H, W] or [H, W, C]"
        raise ImageReadError(
            name,
            f"an image array must be {layout} with 1, 3 or 4 channels, got shape {image.shape}",
        )
    if arr.size == 0:
        raise ImageReadError(name, f"the image is empty (shape {image.shape})")
    _check_strip(name, (arr.shape[1], arr.shape[0]), max_aspect_ratio)
    if arr.dtype == np.uint8:
        data = arr
    elif arr.dtype == np.uint16:
        data = np.rint(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    elif arr.dtype == np.bool_:
        data = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr).all()
        lo, hi = (float(arr.min()), float(arr.max())) if finite else (0.0, 0.0)
        if not finite or lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ImageReadError(
                name,
                f"float image values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]"
                + (" (NaN or inf)" if not finite else "")
                + ": pass the un-normalised photo (the model applies its own normalisation), "
                "or uint8 values 0..255",
            )
        data = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ImageReadError(
            name, f"unsupported array dtype {arr.dtype}: use uint8, uint16 or float in [0, 1]"
        )
    return _to_rgb(Image.fromarray(np.ascontiguousarray(data)), name)
