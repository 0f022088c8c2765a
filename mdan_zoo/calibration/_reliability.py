"""The reliability diagram of one level (Guo et al., 2017, Fig. 1), drawn with Pillow."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .._io import atomic_path
from ..prediction.overlay import font as overlay_font

__all__ = ["save_reliability_png"]


def save_reliability_png(
    bins: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> dict[str, Any]:
    """Draw a reliability diagram (Guo et al., 2017, Fig. 1): per equal-width bin a blue bar
    of the accuracy, a red box from it to the bin's mean confidence (the gap the ECE sums),
    the diagonal of perfect calibration, below the share of images per bin, and a legend
    naming the three.

    ``bins`` is :func:`~mdan_zoo.calibration.reliability_bins` output (``count``,
    ``confidence``, ``accuracy`` per bin). Returns the geometry (``x0``, ``y0``, ``size``, ``hist_top``, ``hist_height``) so that
    tests can find the bars in the picture.
    """
    count = np.asarray(bins["count"], dtype=np.int64)
    accuracy = np.asarray(bins["accuracy"], dtype=np.float64)
    confidence = np.asarray(bins["confidence"], dtype=np.float64)
    n_bins, total = count.size, int(count.sum())
    full = count > 0
    gaps = np.abs(accuracy[full] - confidence[full])
    ece = float((count[full] * gaps).sum() / total) if total else float("nan")
    size, x0, y0 = 300, 56, 44
    hist_top, hist_height = y0 + size + 40, 60
    width, height = x0 + size + 24, hist_top + hist_height + 54
    font = overlay_font(12)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    head = title or "reliability diagram"
    draw.text((8, 6), head, fill="black", font=font)
    draw.text(
        (8, 22), f"ECE {100 * ece:.2f}%  ({total} images, {n_bins} bins)", fill="black", font=font
    )
    cell = size / n_bins
    top = int(count.max()) if total else 1
    for m in range(n_bins):
        left, right = x0 + m * cell, x0 + (m + 1) * cell - 1
        if count[m]:
            acc, conf = float(accuracy[m]), float(confidence[m])
            y_acc, y_conf = y0 + size * (1 - acc), y0 + size * (1 - conf)
            draw.rectangle(
                (left, y_acc, right, y0 + size), fill=(66, 110, 200), outline=(30, 60, 140)
            )
            lo, hi = sorted((y_acc, y_conf))
            if hi - lo >= 1:
                draw.rectangle((left, lo, right, hi), fill=(240, 150, 150), outline=(200, 0, 0))
            bar = hist_height * count[m] / max(top, 1)
            draw.rectangle(
                (left, hist_top + hist_height - bar, right, hist_top + hist_height),
                fill=(120, 120, 120),
            )
    draw.rectangle((x0, y0, x0 + size, y0 + size), outline="black")
    for i in range(0, size, 6):  # dashed diagonal: perfect calibration
        draw.line([(x0 + i, y0 + size - i), (x0 + i + 3, y0 + size - i - 3)], fill=(90, 90, 90))
    draw.line([(x0, hist_top + hist_height), (x0 + size, hist_top + hist_height)], fill="black")
    for v in (0.0, 0.5, 1.0):
        draw.text((x0 + v * size - 8, y0 + size + 4), f"{v:g}", fill="black", font=font)
        draw.text((x0 - 28, y0 + size * (1 - v) - 7), f"{v:g}", fill="black", font=font)
    draw.text((x0 + size // 2 - 30, y0 + size + 20), "confidence", fill="black", font=font)
    draw.text((4, y0 + size // 2 - 20), "acc", fill="black", font=font)
    draw.text((x0, hist_top + hist_height + 6), "images per bin", fill="black", font=font)
    # the legend: what each mark means, so the picture reads without the docs
    key_y = hist_top + hist_height + 28
    x = 8
    for fill, outline, text in (
        ((66, 110, 200), (30, 60, 140), "accuracy"),
        ((240, 150, 150), (200, 0, 0), "gap to mean confidence"),
    ):
        draw.rectangle((x, key_y + 2, x + 10, key_y + 12), fill=fill, outline=outline)
        draw.text((x + 14, key_y), text, fill="black", font=font)
        x += 14 + int(draw.textlength(text, font=font)) + 12  # type: ignore[arg-type]
    for i in range(0, 18, 6):
        draw.line([(x + i, key_y + 7), (x + i + 3, key_y + 7)], fill=(90, 90, 90))
    draw.text((x + 20, key_y), "calibrated", fill="black", font=font)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return {"x0": x0, "y0": y0, "size": size, "hist_top": hist_top, "hist_height": hist_height}
