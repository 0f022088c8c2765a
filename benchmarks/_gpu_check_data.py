"""Photos for the GPU check, written on the spot: FI's layout (``root/<emotion>/<emotion>_N.jpg``)
with pictures of natural-image statistics (noise summed over scales, amplitude growing with
the scale, as in photos: 1/f spectra), so that decoding costs what it costs on photos.

A few files take the paths around nvJPEG: EXIF-rotated, greyscale and CMYK JPEGs and a PNG.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

FI_LABELS = (
    "amusement",
    "anger",
    "awe",
    "contentment",
    "disgust",
    "excitement",
    "fear",
    "sadness",
)


def picture(seed: int, width: int, height: int) -> Image.Image:
    """An RGB picture with a photo-like spectrum (and a colour cast per seed)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), dtype=np.float32)
    for scale, amp in ((128, 60.0), (32, 30.0), (8, 14.0), (2, 6.0)):
        h, w = max(2, height // scale), max(2, width // scale)
        small = rng.normal(0.0, amp, size=(h, w, 3)).astype(np.float32)
        layer = Image.fromarray(small[..., 0]).resize((width, height), Image.Resampling.BICUBIC)
        rgb = [np.asarray(layer)]
        for c in (1, 2):
            img = Image.fromarray(small[..., c]).resize((width, height), Image.Resampling.BICUBIC)
            rgb.append(np.asarray(img))
        out += np.stack(rgb, axis=-1)
    out += rng.uniform(60, 190, size=3).astype(np.float32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _write(args: tuple[int, str, int, int]) -> None:
    seed, path, width, height = args
    img = picture(seed, width, height)
    kind = seed % 50
    if kind == 1:  # an EXIF orientation: the picture must come out upright on both paths
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(path, quality=90, exif=exif)
    elif kind == 2:
        img.convert("L").save(path, quality=90)
    elif kind == 3:
        img.convert("CMYK").save(path, quality=90)
    else:
        img.save(path, quality=90)


def write_photos(root: Path, *, files: int, unique: int, seed: int = 0) -> list[Path]:
    """``files`` JPEGs under ``root`` in FI's layout (``unique`` pictures, the rest hard links
    to them under new names; one PNG among them). Idempotent: an existing complete set stays."""
    done = root / ".complete"
    if done.is_file() and done.read_text() == f"{files} {unique} {seed}":
        return sorted(root.rglob("*_*.*"))
    rng = np.random.default_rng(seed)
    for label in FI_LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
    jobs = []
    for i in range(unique):
        label = FI_LABELS[i % len(FI_LABELS)]
        suffix = ".png" if i == 4 else ".jpg"
        width, height = int(rng.integers(400, 801)), int(rng.integers(300, 601))
        jobs.append(
            (seed * 1_000_003 + i, str(root / label / f"{label}_{i}{suffix}"), width, height)
        )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cpus > 2 and unique > 16:
        with ProcessPoolExecutor(min(cpus, 16)) as pool:
            list(pool.map(_write, jobs, chunksize=8))
    else:
        for job in jobs:
            _write(job)
    paths = [Path(j[1]) for j in jobs]
    for i in range(unique, files):
        src = paths[i % unique]
        label = FI_LABELS[i % len(FI_LABELS)]
        dst = root / label / f"{label}_{i}{src.suffix}"
        if not dst.exists():
            os.link(src, dst)
        paths.append(dst)
    done.write_text(f"{files} {unique} {seed}")
    return paths
