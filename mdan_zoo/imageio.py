"""Reading images from the wild into RGB PIL images, with a clear error per bad file.

The predict issue extends this module with every awkward case (EXIF rotation, CMYK, 16-bit,
animated, truncated, bombs); datasets and prediction both read images through
:func:`read_image` so they agree on what a valid image is.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageReadError", "read_image"]


class ImageReadError(OSError):
    """An image file could not be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open ``path`` as an RGB image, upright per its EXIF orientation; raise ImageReadError."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image file Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"corrupt or truncated image ({err})") from None
