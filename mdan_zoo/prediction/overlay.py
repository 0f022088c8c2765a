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

__all__ = ["attention_filename", "colour_legend", "fit_text", "font", "jet", "render_overlay"]


class _LevelMap(Protocol):
    """One panel's content (``mdan_zoo.prediction.LevelAttention`` has these fields)."""

    level: str
    label: str
    prob: float
    kind: str
    map: np.ndarray

    def built_from(self) -> str: ...


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
    legend: bool = True,
) -> Image.Image:
    """The photo then each level's heat map blended over it, side by side, each panel fitted
    into ``panel_size`` x ``panel_size`` with a three-line caption underneath (Fig. 8 layout):
    the level and map kind; what the map was built from (``built_from()``: the classes whose
    CAMs it fused); and ``answer: <label> <P_O>``, the hierarchy-consistent answer at that
    level. A strip at the bottom holds the colour bar (jet, low to high) and says what
    ``answer`` means.

    ``labels``: the ``(label, P_O)`` of the consistent answer, coarse to fine (predictions pass
    it); without it the third line gives each level's own argmax, marked ``argmax:``.
    Captions are shortened with "..." to fit their panel. ``legend=False`` leaves the strip
    out (a sheet of several rows draws one, :func:`colour_legend`).
    """
    if labels is not None and len(labels) != len(levels):
        raise ValueError(f"labels has {len(labels)} entries for {len(levels)} levels")
    gap, line = 8, max(15, panel_size // 14)
    caption = 3 * line + 4
    photo = _fit(image.convert("RGB"), panel_size)
    pw, ph = photo.size
    face = font(max(9, min(line - 3, max(pw, panel_size // 2) // 11)))
    column = max(pw, panel_size // 2)  # a narrow (portrait) photo still leaves caption room
    panels = [(photo, "input", f"{image.size[0]}x{image.size[1]}", "")]
    base = np.asarray(photo, dtype=np.float32)
    for i, lv in enumerate(levels):
        heat_small = Image.fromarray((np.clip(lv.map, 0, 1) * 255).astype(np.uint8)).resize(
            (pw, ph), Image.Resampling.BILINEAR
        )
        colour = jet(np.asarray(heat_small, dtype=np.float32) / 255.0).astype(np.float32)
        blend = ((1.0 - alpha) * base + alpha * colour).round().clip(0, 255).astype(np.uint8)
        if labels is not None:
            answer = f"answer: {labels[i][0]} {labels[i][1]:.2f}"
        else:
            answer = f"argmax: {lv.label} {lv.prob:.2f}"
        built = lv.built_from() if hasattr(lv, "built_from") else f"{lv.label} {lv.prob:.2f}"
        panels.append((Image.fromarray(blend), f"{lv.level} ({lv.kind})", built, answer))
    width = len(panels) * column + (len(panels) + 1) * gap
    strip = line + 10 if legend else 0
    height = ph + caption + 2 * gap + strip
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    shades = ((0, 0, 0), (40, 40, 40), (0, 0, 150))
    for i, (panel, *lines) in enumerate(panels):
        x = gap + i * (column + gap)
        sheet.paste(panel, (x + (column - pw) // 2, gap))
        for j, text in enumerate(lines):
            draw.text(
                (x, gap + ph + 2 + j * line),
                fit_text(draw, text, face, column),
                fill=shades[j],
                font=face,
            )
    if legend:
        _colour_bar(
            sheet, draw, face, top=ph + caption + 2 * gap, height=line, answer=labels is not None
        )
    return sheet


def colour_legend(width: int, *, answer: bool = True, size: int = 15) -> Image.Image:
    """The strip :func:`render_overlay` ends with, alone (``width`` pixels wide): the jet colour
    bar from low to high attention, and what a caption's ``answer:`` line means."""
    strip = Image.new("RGB", (width, size + 10), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    _colour_bar(strip, draw, font(max(9, size - 3)), top=2, height=size, answer=answer)
    return strip


def _colour_bar(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    face: object,
    *,
    top: int,
    height: int,
    answer: bool,
) -> None:
    """The jet scale from low to high attention, and what the captions' last line means."""
    x0 = 8
    low = "low"
    draw.text((x0, top), low, fill=(0, 0, 0), font=face)  # type: ignore[arg-type]
    bx = x0 + int(draw.textlength(low, font=face)) + 4  # type: ignore[arg-type]
    bar_w = max(40, min(160, sheet.width // 4))
    ramp = jet(np.tile(np.linspace(0.0, 1.0, bar_w, dtype=np.float32), (max(4, height - 4), 1)))
    sheet.paste(Image.fromarray(ramp), (bx, top + 2))
    note = "high attention (each map scaled to its own min-max)"
    note += "; answer: the hierarchy-consistent prediction, P_O" if answer else ""
    text_x = bx + bar_w + 4
    draw.text(
        (text_x, top),
        fit_text(draw, note, face, max(10, sheet.width - text_x - 4)),
        fill=(0, 0, 0),
        font=face,  # type: ignore[arg-type]
    )


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
