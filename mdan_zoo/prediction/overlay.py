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

from .._io import file_part

__all__ = ["attention_filename", "fit_text", "font", "jet", "render_overlay"]


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
    labels: Sequence[tuple[str, float]] | None = None,
) -> Image.Image:
    """The photo then each level's heat map blended over it, side by side, each panel fitted
    into ``panel_size`` x ``panel_size`` with a two-line caption underneath (Fig. 8 layout).

    ``labels``: the ``(label, P_O)`` to print under each level, coarse to fine (predictions pass
    the hierarchy-consistent answer, so picture and text agree); default: each map's own
    ``label`` and ``prob``. Captions are shortened with "..." to fit their panel.
    """
    if labels is not None and len(labels) != len(levels):
        raise ValueError(f"labels has {len(labels)} entries for {len(levels)} levels")
    gap, caption = 8, max(30, panel_size // 7)
    face = font(max(10, caption // 2 - 2))
    photo = _fit(image.convert("RGB"), panel_size)
    pw, ph = photo.size
    column = max(pw, panel_size // 2)  # a narrow (portrait) photo still leaves caption room
    panels = [(photo, "input", f"{image.size[0]}x{image.size[1]}")]
    base = np.asarray(photo, dtype=np.float32)
    for i, lv in enumerate(levels):
        heat_small = Image.fromarray((np.clip(lv.map, 0, 1) * 255).astype(np.uint8)).resize(
            (pw, ph), Image.Resampling.BILINEAR
        )
        colour = jet(np.asarray(heat_small, dtype=np.float32) / 255.0).astype(np.float32)
        blend = ((1.0 - alpha) * base + alpha * colour).round().clip(0, 255).astype(np.uint8)
        label, prob = labels[i] if labels is not None else (lv.label, lv.prob)
        panels.append((Image.fromarray(blend), f"{lv.level} ({lv.kind})", f"{label} {prob:.2f}"))
    width = len(panels) * column + (len(panels) + 1) * gap
    height = ph + caption + 2 * gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (panel, line1, line2) in enumerate(panels):
        x = gap + i * (column + gap)
        sheet.paste(panel, (x + (column - pw) // 2, gap))
        draw.text((x, gap + ph + 2), fit_text(draw, line1, face, column), fill=(0, 0, 0), font=face)
        draw.text(
            (x, gap + ph + 2 + caption // 2),
            fit_text(draw, line2, face, column),
            fill=(40, 40, 40),
            font=face,
        )
    return sheet


def fit_text(draw: ImageDraw.ImageDraw, text: str, face: object, width: int) -> str:
    """``text``, shortened with "..." until it is at most ``width`` pixels wide in ``face``."""
    if draw.textlength(text, font=face) <= width:  # type: ignore[arg-type]
        return text
    while text and draw.textlength(text + "...", font=face) > width:  # type: ignore[arg-type]
        text = text[:-1]
    return text.rstrip() + "..."


def attention_filename(source: str, used: set[str]) -> str:
    """A file name for the overlay of ``source``, unique within ``used`` (which it updates)."""
    stem = Path(source).stem if not source.startswith("<") else source.strip("<>").replace(" ", "_")
    stem = file_part(stem, fallback="image")  # the one sanitiser of names that become paths
    name = f"{stem}_attention.png"
    n = 1
    while name in used:
        n += 1
        name = f"{stem}_{n}_attention.png"
    used.add(name)
    return name
