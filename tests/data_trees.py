"""Real photos laid out as the public emotion datasets are, for the dataset tests.

The images are real: foolbox 3.3.4's data folder (CIFAR-10/100, ImageNet, MNIST, Fashion-MNIST
samples, label in the file name) and scikit-image's sample photos. Nothing is committed: they
are read from the installed packages and re-encoded as JPEG into pytest's tmp_path under the
file names each public dataset uses.
"""

from __future__ import annotations

import importlib.util
import io
from functools import lru_cache
from pathlib import Path

import pytest
from PIL import Image

FOOLBOX_HINT = "pip install --no-deps foolbox==3.3.4"

MIKELS = [
    "amusement",
    "anger",
    "awe",
    "contentment",
    "disgust",
    "excitement",
    "fear",
    "sadness",
]

# category.txt of WEBEmo in the released order, typos included
WEBEMO_CATEGORIES = [
    "affection", "cheerfullness", "confusion", "contentment", "disappointment", "disgust",
    "enthrallment", "envy", "exasperation", "gratitude", "horror", "irritabilty", "lust",
    "neglect", "nervousness", "optimism", "pride", "rage", "relief", "sadness", "shame",
    "suffering", "surprise", "sympathy", "zest",
]  # fmt: skip


def foolbox_dir() -> Path:
    spec = importlib.util.find_spec("foolbox")  # found without importing (needs eagerpy)
    if spec is None or spec.origin is None:
        pytest.fail(f"the dataset tests need foolbox's real sample images: {FOOLBOX_HINT}")
    path = Path(spec.origin).parent / "data"
    if not path.is_dir() or len(list(path.glob("imagenet_*.jpg"))) < 20:
        pytest.fail(f"foolbox's data folder {path} is incomplete: {FOOLBOX_HINT}")
    return path


def skimage_photos() -> list[Path]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.fail("the dataset tests need scikit-image's sample photos: pip install scikit-image")
    data = Path(spec.origin).parent / "data"
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"]
    return [data / n for n in names]


@lru_cache(maxsize=1)
def _jpeg_bytes() -> tuple[tuple[str, bytes], ...]:
    """(source name, JPEG bytes) of every real image: the foolbox photos, then skimage's."""
    out = []
    sources = sorted(foolbox_dir().glob("*_*_*.*")) + skimage_photos()
    for path in sources:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            if max(rgb.size) > 256:
                rgb.thumbnail((256, 256))
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=90)
        out.append((path.stem, buf.getvalue()))
    return tuple(out)


def real_images(n: int, *, start: int = 0) -> list[bytes]:
    """``n`` distinct real JPEG images (cycling through the pool if n is larger)."""
    pool = _jpeg_bytes()
    return [pool[(start + i) % len(pool)][1] for i in range(n)]


def fashion_images() -> list[tuple[int, bytes]]:
    """foolbox's 20 real Fashion-MNIST images with their class index (0-9) from the name."""
    out = []
    for path in sorted(foolbox_dir().glob("fashionMNIST_*_*.png")):
        label = int(path.stem.rsplit("_", 1)[1])
        with Image.open(path) as img:
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
        out.append((label, buf.getvalue()))
    return out


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_fi(root: Path, per_class: dict[str, int]) -> dict[str, int]:
    """FI: ``root/<Folder>/<emotion>_<id>.jpg``; keys are the folder names as written."""
    k = 0
    for folder, n in per_class.items():
        for i, data in enumerate(real_images(n, start=k)):
            write(root / folder / f"{folder.lower()}_{1000 + i}.jpg", data)
        k += n
    return per_class


def make_artphoto(root: Path, per_prefix: dict[str, int]) -> None:
    k = 0
    for prefix, n in per_prefix.items():
        for i, data in enumerate(real_images(n, start=k)):
            write(root / f"{prefix}_{i:04d}.jpg", data)
        k += n


def make_webemo(
    root: Path, train: list[tuple[str, int]], test: list[tuple[str, int]], *, categories=None
) -> None:
    """WEBEmo list files with ``<url> <index>`` lines and the images at
    ``<split>/<category name>/<basename>``; ``train``/``test`` are (basename, index) pairs."""
    cats = categories or WEBEMO_CATEGORIES
    (root).mkdir(parents=True, exist_ok=True)
    (root / "category.txt").write_text("\n".join(cats) + "\n")
    k = 0
    for split, items in (("train", train), ("test", test)):
        lines = []
        for (name, idx), data in zip(items, real_images(len(items), start=k), strict=True):
            lines.append(f"https://farm1.example.org/photos/{idx}/{name}?size=large {idx}")
            write(root / split / cats[idx] / name, data)
        k += len(items)
        (root / f"{split}25.txt").write_text("\n".join(lines) + "\n")
