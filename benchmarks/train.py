"""Training throughput of MDAN (ResNet-101) vs a plain ResNet-101 classifier, and data loading
vs model throughput, side by side in one process.

* Model: one optimizer step (forward, Eq. 3 loss / cross-entropy, backward, SGD with the paper's
  momentum and weight decay) at 448 x 448 for the paper-size ``mdan_fi()`` and ``mdan_webemo()``
  networks (and, unless ``--no-lite``, ``MDANConfig.lite()``) and a ResNet-101 classifier,
  interleaved (A, B, C, A, B, C, ...) so that load from other processes hits all alike; median
  images/s (wall) and CPU seconds per step (``time.process_time``), the time ratio to ResNet-101
  and that ratio divided by the ratio of their multiply-accumulates per training step (forward +
  backward, counted with ``FlopCounterMode`` on the ``meta`` device). Goal (issue 8): per-MAC
  ratio <= 1.15 for the paper-size networks.
* Data: the paper's train transform (resize 512, random 448 crop, flip, normalise) on real
  photos (scikit-image's sample images written as JPEG files) through a DataLoader with
  ``--workers`` processes, in images/s, against MDAN's training images/s: how many loader
  workers keep the model fed.

Runs unchanged on a GPU (device auto, bf16 autocast there, larger default batch):

    PYTHONPATH=$PWD python benchmarks/train.py [--batch 2] [--steps 5] [--workers 0 2]
    PYTHONPATH=$PWD python benchmarks/train.py --quick    # 64 px, no lite, loader at 64 px

CPU time comes first (``OMP_WAIT_POLICY=PASSIVE``, set by ``benchmarks/_common.py``); "ratio"
is what a user pays, "per MAC" that divided by the ratio of MACs. The loader is measured in
steady state: persistent workers, a warm-up of a few batches per worker (start-up, first
prefetch), then ``--loader-batches`` (at least 20) timed batches; images/s per worker.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, Preprocessing, get_taxonomy
from mdan_zoo.imageio import read_image

GOAL = 1.15
BASE = "ResNet-101 classifier"


class _Photos(Dataset):
    def __init__(self, paths: list[Path], n: int, transform: object) -> None:
        self.paths, self.n, self.transform = paths, n, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_image(self.paths[i % len(self.paths)])), i % 25  # type: ignore[operator]


def _photos(folder: Path) -> list[Path]:
    import skimage.data as sk

    paths = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "motorcycle_left",
    ):
        try:
            arr = getattr(sk, name)()
        except Exception:  # noqa: BLE001 - a sample missing from this scikit-image
            continue
        if arr.ndim == 3 and arr.shape[2] == 3:
            p = folder / f"{name}.jpg"
            Image.fromarray(arr).save(p, quality=90)
            paths.append(p)
    return paths


def _step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    amp: torch.dtype | None,
) -> None:
    ctx = (
        torch.autocast(x.device.type, dtype=amp)
        if amp
        else torch.autocast(x.device.type, enabled=False)
    )
    with ctx:
        loss = _loss(model, model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _loss(model: torch.nn.Module, out: object, y: torch.Tensor) -> torch.Tensor:
    if isinstance(model, MDAN):
        return model.loss(out, y)  # type: ignore[arg-type]
    return torch.nn.functional.cross_entropy(out, y)  # type: ignore[arg-type]


def train_gmacs(make: object, size: int) -> float:
    """Multiply-accumulates (G) of forward + backward for one [1, 3, size, size] image."""
    with torch.device("meta"):
        model = make()  # type: ignore[operator]
    model.to("meta").train()  # MDAN builds its index buffers on the CPU
    x = torch.zeros(1, 3, size, size, device="meta")
    y = torch.zeros(1, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        _loss(model, model(x), y).backward()
    return counter.get_total_flops() / 2e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=0, help="default: 2 on CPU, 32 on GPU")
    parser.add_argument(
        "--steps", type=int, default=0, help="timed steps per model (default 5 CPU, 20 GPU)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try"
    )
    parser.add_argument(
        "--loader-batches", type=int, default=20, help="timed batches per loader run (>= 20)"
    )
    parser.add_argument("--quick", action="store_true", help="64 px, FI only, no lite, 5 steps")
    parser.add_argument("--no-lite", action="store_true", help="leave out MDANConfig.lite()")
    parser.add_argument("--no-loader", action="store_true", help="skip the data-loading part")
    parser.add_argument(
        "--loader-only", action="store_true", help="only the data-loading part (no model)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.no_lite, args.workers = 64, True, [0, 1]
    if args.loader_batches < 20:
        parser.error("--loader-batches: at least 20 (a rate over fewer says little)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    batch = args.batch or (32 if gpu else 2)
    steps = max(args.steps or (20 if gpu else 5), _common.MIN_ROUNDS)
    amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if gpu else None
    if amp is torch.float16:
        amp = None  # keep the comparison simple: fp16 would need a GradScaler
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device: {name}; input {args.size}x{args.size}, batch {batch}, {steps} timed steps per model, amp {amp}"
    )

    torch.manual_seed(0)
    makers: dict[str, object] = {
        BASE: lambda: torchvision.models.resnet101(num_classes=25),
    }
    variants = [("paper", MDANConfig())] + (
        [("lite", MDANConfig.lite())] if not args.no_lite else []
    )
    for variant, cfg in variants:
        for name in ("fi",) if args.quick else ("fi", "webemo"):
            tax = get_taxonomy(name)
            k = "/".join(map(str, tax.num_classes))
            makers[f"MDAN {name} {k}, {variant} ({cfg.fpn_channels})"] = lambda tax=tax, cfg=cfg: (
                MDAN(tax, cfg)
            )
    if args.loader_only:
        makers = {}
    macs = {k: train_gmacs(make, args.size) for k, make in makers.items()}
    models = {k: make() for k, make in makers.items()}  # type: ignore[operator]
    opts = {}
    for key, m in models.items():
        m.to(device).train()
        opts[key] = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-3)
    x = torch.randn(batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)  # a valid fine class for every tree here
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
    for i in range(steps + 1):  # the first round warms up
        for key, m in models.items():
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            _step(m, opts[key], x, y, amp)
            _sync(device)
            if i:
                times[key].append((time.perf_counter() - t, time.process_time() - c))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    print("\ntraining step (median over steps):")
    print(
        "| model | GMACs/img (fwd+bwd) | CPU s/step | CPU ratio | per MAC | images/s (wall) "
        "| wall ratio | per MAC |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in models:
        mr = macs[k] / macs[BASE]
        w, c = wall[k] / wall[BASE], cpu[k] / cpu[BASE]
        print(
            f"| {k} | {macs[k]:.1f} | {cpu[k]:.2f} | {c:.3f} | {c / mr:.3f} "
            f"| {batch / wall[k]:.2f} | {w:.3f} | {w / mr:.3f} |"
        )
    print(
        f"per MAC = (MDAN time / ResNet-101 time) / (MDAN MACs / ResNet-101 MACs); goal <= {GOAL}"
    )
    if args.no_loader:
        return
    mdan_key = next((k for k in models if k != BASE), "")  # the paper-size FI network
    speed = {mdan_key: batch / wall[mdan_key] if mdan_key else float("nan")}

    pre = Preprocessing(input_size=args.size, resize_size=max(args.size, int(args.size * 8 / 7)))
    print(
        f"\ndata loading, steady state (paper train transform, real JPEG photos, batch {batch}, "
        f"{args.loader_batches} timed batches after a warm-up):"
    )
    print("\n| workers | images/s | images/s per worker | vs MDAN's training rate |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _photos(Path(tmp))
        for w in args.workers:
            rate = loader_rate(paths, pre, batch, w, args.loader_batches, gpu)
            vs = f"{rate / speed[mdan_key]:.1f}x" if mdan_key else "-"
            print(f"| {w} | {rate:.1f} | {rate / max(w, 1):.1f} | {vs} |")
    print("(0 workers: the main process decodes between steps; its rate is per process)")


def loader_rate(
    paths: list[Path], pre: Preprocessing, batch: int, workers: int, timed: int, gpu: bool
) -> float:
    """Images/s of a DataLoader in steady state: persistent workers, ``2 + 2 x workers``
    batches of warm-up (start-up and the first prefetch), then ``timed`` batches."""
    warm = 2 + 2 * workers
    ds = _Photos(paths, (warm + timed) * batch, pre.train_transform())
    loader = DataLoader(
        ds, batch_size=batch, num_workers=workers, pin_memory=gpu, persistent_workers=workers > 0
    )
    it = iter(loader)
    for _ in range(warm):
        next(it)
    start, count = time.perf_counter(), 0
    for _ in range(timed):
        count += len(next(it)[0])
    rate = count / (time.perf_counter() - start)
    del it, loader
    return rate


if __name__ == "__main__":
    main()
