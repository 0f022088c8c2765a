"""Peak memory of reading one image the way predict does (read_image + the eval transform).

Thin strips are the danger: the transform scales the *shorter* side up to ``resize_size``, so a
tiny 1 x N file becomes a 512 x 512·N picture. Each image is measured in a fresh child process
(peak RSS above its resting RSS, from /proc/self/status after resetting VmHWM), side by side
with real photos, under an address-space cap so that a blow-up stops at the cap instead of
eating the machine. ``--max-aspect-ratio 0`` turns the strip guard off, to see what it prevents.

    PYTHONPATH=$PWD python benchmarks/image_memory.py [--max-aspect-ratio 50] [--cap-gb 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = textwrap.dedent(
    """
    import resource, sys
    from mdan_zoo.config import Preprocessing
    from mdan_zoo.imageio import ImageReadError, read_image

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    path, ratio, cap = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    transform = Preprocessing().eval_transform()  # loads torch before the cap
    resource.setrlimit(
        resource.RLIMIT_AS, (status("VmSize:") + int(cap * 2**30), resource.RLIM_INFINITY)
    )
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := current RSS
    rest = status("VmRSS:")
    try:
        transform(read_image(path, max_aspect_ratio=ratio or None))
        outcome = "read"
    except ImageReadError:
        outcome = "refused"
    except MemoryError:
        outcome = f"MemoryError at the {cap:g} GB cap"
    except RuntimeError as err:  # torch's allocator says the same in its own words
        if "can't allocate memory" not in str(err):
            raise
        outcome = f"out of memory at the {cap:g} GB cap"
    print(outcome, (status("VmHWM:") - rest) / 2**20)
    """
)


def _images(folder: Path) -> dict[str, Path]:
    """Strips, a panorama at the limit, and two photos (a real one from scikit-image)."""
    import skimage.data

    out = {}
    for w, h in ((8000, 1), (2000, 1), (500, 10), (20000, 400)):
        out[f"{w} x {h} ({max(w, h) // min(w, h)}:1)"] = path = folder / f"{w}x{h}.png"
        Image.new("RGB", (w, h), (200, 100, 50)).save(path)
    photo = Image.fromarray(skimage.data.astronaut())
    out["512 x 512 photo (JPEG)"] = folder / "photo.jpg"
    photo.save(out["512 x 512 photo (JPEG)"], quality=90)
    big = Image.fromarray(np.asarray(photo.resize((4000, 3000))))
    out["4000 x 3000 photo (JPEG)"] = folder / "photo_4000.jpg"
    big.save(out["4000 x 3000 photo (JPEG)"], quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-aspect-ratio", type=float, default=50.0, help="0: no guard")
    parser.add_argument("--cap-gb", type=float, default=3.0, help="address space per child")
    parser.add_argument("--quick", action="store_true", help="the photo only (one child process)")
    parser.add_argument("--threads", type=int, default=1, help="threads per child (1)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = _images(Path(tmp))
        if args.quick:
            images = {k: v for k, v in images.items() if k.startswith("512 x 512")}
        for name, path in images.items():
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(path),
                    str(args.max_aspect_ratio),
                    str(args.cap_gb),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            outcome, mb = proc.stdout.split()[:-1], float(proc.stdout.split()[-1])
            rows.append((name, path.stat().st_size, " ".join(outcome), mb))
    photo_mb = next(mb for name, _, _, mb in rows if name.startswith("512 x 512"))
    print(f"max_aspect_ratio={args.max_aspect_ratio:g} (0 = off), default Preprocessing()")
    print("\n| image | file bytes | outcome | peak MB | vs photo |\n|---|---:|---|---:|---:|")
    for name, size, outcome, mb in rows:
        print(f"| {name} | {size:,} | {outcome} | {mb:.1f} | {mb / photo_mb:.1f}x |")


if __name__ == "__main__":
    main()
