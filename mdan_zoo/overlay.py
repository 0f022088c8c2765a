"""Pictures of attention: the jet colour map, captions, and Fig. 8-style overlay sheets.

Plain Pillow and numpy, so no plotting library is needed; the demo, evaluation figures and
predict all draw with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["attention_filename", "font", "jet", "render_overlay"]


class _LevelMap(Protocol):
    """One panel's content (``mdan_zoo.prediction.LevelAttention`` has these fields)."""

    level: str
    label: str
    prob: float
    kind: str
    map: np.ndarray


def jet(values: np.ndarray) -> np.ndarray:
    """The classic 'jet' colour map (blue -> cyan -> yellow -> red) of CAM figures:
    ``[H, W]`` in [0, 1] -> ``uint8 [H, W, 3]``. Written out so no plotting library is needed."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # r, g, b peaks at 3/4, 1/2, 1/4 of the range
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(img: Image.Image, panel: int) -> Image.Image:
    w, h = img.size
    scale = panel / max(w, h)
    return img.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
    )


def render_overlay(
    image: Image.Image,
    levels: Sequence[_LevelMap],
    *,
    panel_size: int = 256,
    alpha: float = 0.5,
) -> Image.Image:
    """The photo then each level's heat map blended over it, side by side, each panel fitted
    into ``panel_size`` x ``panel_size`` with a two-line caption underneath (Fig. 8 layout)."""
    gap, caption = 8, max(30, panel_size // 7)
    face = font(max(10, caption // 2 - 2))
    photo = _fit(image.convert("RGB"), panel_size)
    pw, ph = photo.size
    panels = [(photo, "input", f"{image.size[0]}x{image.size[1]}")]
    base = np.asarray(photo, dtype=np.float32)
    for lv in levels:
        heat_small = Image.fromarray((np.clip(lv.map, 0, 1) * 255).astype(np.uint8)).resize(
            (pw, ph), Image.Resampling.BILINEAR
        )
        colour = jet(np.asarray(heat_small, dtype=np.float32) / 255.0).astype(np.float32)
        blend = ((1.0 - alpha) * base + alpha * colour).round().clip(0, 255).astype(np.uint8)
        panels.append(
            (Image.fromarray(blend), f"{lv.level} ({lv.kind})", f"{lv.label} {lv.prob:.2f}")
        )
    width = len(panels) * pw + (len(panels) + 1) * gap
    height = ph + caption + 2 * gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (panel, line1, line2) in enumerate(panels):
        x = gap + i * (pw + gap)
        sheet.paste(panel, (x, gap))
        draw.text((x, gap + ph + 2), line1, fill=(0, 0, 0), font=face)
        draw.text((x, gap + ph + 2 + caption // 2), line2, fill=(40, 40, 40), font=face)
    return sheet


def attention_filename(source: str, used: set[str]) -> str:
    """A file name for the overlay of ``source``, unique within ``used`` (which it updates)."""
    stem = Path(source).stem if not source.startswith("<") else source.strip("<>").replace(" ", "_")
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "image"
    name = f"{stem}_attention.png"
    n = 1
    while name in used:
        n += 1
        name = f"{stem}_{n}_attention.png"
    used.add(name)
    return name
