"""``mdan-zoo demo``: the whole loop on real images, on a laptop CPU, in under a minute.

Fine-tunes MDAN (ResNet-18 backbone, small input) on a balanced, seeded subset of the real
Fashion-MNIST images under the three-level ``fashion_mnist`` taxonomy (2 -> 4 -> 10), selects the
epoch on a validation subset, evaluates it on held-out test images (Table-3 style: P_L, P_G and
P_O accuracy per level, hierarchy violations), saves it in the Hugging Face layout, reloads it with
``from_pretrained`` and checks the reloaded outputs equal the trained ones, predicts held-out
images from their raw pixels, and draws the attention maps and the confusion matrix.
Every number it prints is measured in that run; nothing touches the network.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import TensorDataset

from .._io import atomic_path, atomic_write_text, file_parts
from .._threads import thread_budget, using_threads
from ..config import LITE_FPN_CHANNELS, Preprocessing
from ..data.fashion_mnist import FashionMNIST
from ..evaluation import EvalReport, confusion_stem
from ..model import MDAN
from ..prediction.overlay import colour_legend, font
from ..taxonomy import get_taxonomy
from ._config import TrainConfig
from ._publish import run_metrics
from ._trainer import Trainer

__all__ = ["DemoResult", "DemoSize", "run_demo"]

logger = logging.getLogger(__name__)

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


@dataclass(frozen=True)
class DemoSize:
    """How much the demo trains; ``full`` takes about 40 s on 2 idle CPU cores."""

    input_size: int
    train_per_class: int
    val_per_class: int
    test_per_class: int
    epochs: int
    batch_size: int
    lr_step_epochs: int

    @classmethod
    def full(cls) -> DemoSize:
        return cls(48, 200, 20, 100, 3, 32, 2)

    @classmethod
    def quick(cls) -> DemoSize:
        return cls(32, 12, 4, 6, 1, 24, 1)


@dataclass
class DemoResult:
    """Where the demo wrote things and what it measured."""

    out_dir: Path
    model_dir: Path
    run_dir: Path
    report: EvalReport
    reload_max_abs_diff: float
    predictions: list[dict[str, Any]]
    attention_png: Path
    confusion_png: Path
    train_seconds: float


def _subsets(size: DemoSize, seed: int) -> dict[str, np.ndarray]:
    """Disjoint balanced index sets: train/val from the training file, test (+ images to
    predict) from the test file, which training never sees."""
    train_targets = FashionMNIST("train").targets
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in range(10):
        pick = rng.permutation(np.flatnonzero(train_targets == c))
        train_idx.append(pick[: size.train_per_class])
        val_idx.append(pick[size.train_per_class : size.train_per_class + size.val_per_class])
    test_targets = FashionMNIST("test").targets
    test_idx, predict_idx = [], []
    for c in range(10):
        pick = rng.permutation(np.flatnonzero(test_targets == c))
        test_idx.append(pick[: size.test_per_class])
        predict_idx.append(pick[size.test_per_class : size.test_per_class + 1])
    shuffle = np.random.default_rng(seed + 1)
    out = {
        "train": np.concatenate(train_idx),
        "val": np.concatenate(val_idx),
        "test": np.concatenate(test_idx),
        "predict": np.concatenate(predict_idx)[[0, 1, 3, 5, 7, 8]],  # one per group
    }
    for key in ("train", "val", "test"):
        shuffle.shuffle(out[key])
    return out


def _tensor_set(split: str, indices: np.ndarray, size: int) -> TensorDataset:
    x, y = FashionMNIST(split, indices=indices).tensors(size)
    return TensorDataset(x, y)


def _attention_png(
    model: MDAN, images: list[Image.Image], truth: list[int], path: Path, *, tile: int = 160
) -> Path:
    """One Fig. 8-style row per held-out image (the image, then the attention applied at every
    level, captioned with the classes it was built from and the consistent answer), under a
    caption naming the true class; one colour bar at the bottom."""
    tax = model.taxonomy
    rows = [maps.overlay(panel_size=tile, legend=False) for maps in model.attention_maps(images)]
    face = font(11)
    cap = 16
    width = max(r.width for r in rows)
    legend = colour_legend(width)
    grid = Image.new("RGB", (width, sum(r.height + cap for r in rows) + legend.height), "white")
    draw = ImageDraw.Draw(grid)
    y = 0
    for row, label in zip(rows, truth, strict=True):
        draw.text((8, y + 2), f"true: {tax.fine_labels[label]}", fill="black", font=face)
        grid.paste(row, (0, y + cap))
        y += row.height + cap
    grid.paste(legend, (0, y))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


def epoch_lines(history: list[dict[str, Any]], best_epoch: int) -> list[str]:
    """One line per epoch; only the epoch the run selected (and exports) is marked."""
    return [
        f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, "
        f"{row['train_images_per_s']:.0f} images/s, validation P_O mean accuracy "
        f"{100 * row['val/overall/mean']:.2f}%"
        + ("  <- selected" if row["epoch"] == best_epoch else "")
        for row in history
    ]


def run_demo(
    *,
    out_dir: str | os.PathLike[str] = "mdan-demo",
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    echo: Any = print,
    threads: int | None = None,
) -> DemoResult:
    """Run the demo, writing everything under ``out_dir`` (replaced if it holds an old demo).

    ``threads``: torch intra-op threads (None: the cores this process may use, never more
    than torch's default); the caller's count is put back afterwards."""
    with using_threads(thread_budget(threads, 0)[0]):
        return _run_demo(out_dir=out_dir, quick=quick, seed=seed, progress=progress, echo=echo)


def _run_demo(
    *, out_dir: str | os.PathLike[str], quick: bool, seed: int, progress: bool, echo: Any
) -> DemoResult:

    t_start = time.perf_counter()
    out = Path(out_dir)
    size = DemoSize.quick() if quick else DemoSize.full()
    tax = get_taxonomy("fashion_mnist")
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    echo(
        f"MDAN demo: Fashion-MNIST (real images) under a three-level taxonomy, on {_device_name()}"
    )
    echo(tax.describe())
    idx = _subsets(size, seed)
    datasets = {
        "train": _tensor_set("train", idx["train"], size.input_size),
        "val": _tensor_set("train", idx["val"], size.input_size),
        "test": _tensor_set("test", idx["test"], size.input_size),
    }
    echo(
        f"data: {len(idx['train'])} training, {len(idx['val'])} validation and {len(idx['test'])} "
        f"held-out test images ({size.input_size}x{size.input_size} px), balanced, seed {seed}"
    )
    config = TrainConfig(
        name="fashion_mnist_demo",
        description="MDAN demo on Fashion-MNIST (2 -> 4 -> 10), ResNet-18, CPU",
        taxonomy="fashion_mnist",
        dataset="fashion_mnist",
        backbone="resnet18",
        model={"fpn_channels": LITE_FPN_CHANNELS},  # MDANConfig.lite(): the demo's speed
        input_size=size.input_size,
        resize_size=size.input_size,
        pretrained="none",  # offline: the backbone learns from scratch
        epochs=size.epochs,
        batch_size=size.batch_size,
        # the backbone starts from random weights, so it gets the larger rate; at 0.02 the new
        # layers saturate the finest level's local softmax (P_L collapses to one class), 0.002
        # keeps them learning
        lr_backbone=0.02,
        lr_new=0.002,
        lr_step_epochs=size.lr_step_epochs,
        workers=0,
        threads=torch.get_num_threads(),
        seed=seed,
        output_dir=str(run_dir),
        progress=progress,
        eval_batch_size=100,
    )
    torch.manual_seed(seed)
    model = MDAN(
        tax,
        config.model_config(),
        preprocessing=Preprocessing(
            input_size=size.input_size,
            resize_size=size.input_size,
            mean=(FASHION_MEAN,) * 3,
            std=(FASHION_STD,) * 3,
            hflip=False,
        ),
    )
    trainer = Trainer(config, datasets=datasets, model=model)
    t0 = time.perf_counter()
    result = trainer.fit()
    train_seconds = time.perf_counter() - t0
    report: EvalReport = result.test_report
    for line in epoch_lines(result.history, result.best_epoch):
        echo(line)
    echo("")
    echo(
        report.table(
            f"Test set ({report.num_samples} held-out images), model of epoch {result.best_epoch} (selected on validation):"
        )
    )
    echo("")

    model = trainer.model.eval()
    model_dir = model.save_pretrained(
        out / "model",
        metrics=run_metrics(run_dir),
        training={k: v for k, v in config.to_dict().items() if k not in ("output_dir", "progress")},
    )
    reloaded = MDAN.from_pretrained(model_dir)
    x_test = datasets["test"].tensors[0]
    with torch.no_grad():
        a = model(x_test[:200])
        b = reloaded(x_test[:200])
    diff = max(float((p - q).abs().max()) for p, q in zip(a.probs, b.probs, strict=True))
    if diff > 1e-6:
        raise RuntimeError(f"the reloaded model differs from the trained one (max |diff| {diff})")
    echo(f"saved in Hugging Face layout: {model_dir}")
    echo(
        f"reloaded with MDAN.from_pretrained: outputs on {min(200, len(x_test))} test images "
        f"equal the trained model's (max |difference| {diff:.1e})"
    )

    test_set = FashionMNIST("test", indices=idx["predict"])
    images = [test_set.image(i) for i in range(len(test_set))]
    truth = [int(test_set.targets[j]) for j in idx["predict"]]
    results = reloaded.predict(images, top_k=3)
    echo(
        "\npredictions of the reloaded model on held-out images (model.predict: the "
        "hierarchy-consistent answer, P_O per level, coarse -> fine):"
    )
    predictions = []
    for t, res in zip(truth, results, strict=True):
        path = " > ".join(f"{c.label} {100 * c.prob:.1f}%" for c in res.consistent)
        hit = "ok  " if res.consistent[-1].label == tax.fine_labels[t] else "miss"
        echo(f"  [{hit}] true {tax.fine_labels[t]:<12} -> {path}")
        if not res.argmax_consistent:
            argmax = " > ".join(lv.label for lv in res.levels)
            echo(f"         (the per-level argmax, {argmax}, breaks the hierarchy)")
        predictions.append({"true": tax.fine_labels[t], **res.to_dict()})
    atomic_write_text(out / "predictions.json", json.dumps(predictions, indent=2) + "\n")
    attention = _attention_png(reloaded, images, truth, out / "attention.png")
    confusion = out / "confusion.png"
    stem = confusion_stem("P_O", file_parts(tax.level_names)[-1])
    shutil.copyfile(run_dir / "test" / f"{stem}.png", confusion)
    summary = {
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "size": dataclasses.asdict(size),
        "test": report.flat(),
        "reload_max_abs_diff": diff,
    }
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    echo("\nwritten:")
    for what, p in (
        ("model (Hub layout)", model_dir),
        ("test report (text / JSON)", run_dir / "test" / "report.txt"),
        ("confusion matrix P_O (Fig. 6 style)", confusion),
        ("all confusion matrices (CSV + PNG)", run_dir / "test"),
        ("attention maps (L-CAM)", attention),
        ("predictions", out / "predictions.json"),
        ("checkpoints and per-epoch log", run_dir),
    ):
        echo(f"  {what:<38} {p}")
    echo(
        f"training took {train_seconds:.0f} s, the whole demo {time.perf_counter() - t_start:.0f} s"
    )
    return DemoResult(
        out_dir=out,
        model_dir=Path(model_dir),
        run_dir=run_dir,
        report=report,
        reload_max_abs_diff=diff,
        predictions=predictions,
        attention_png=attention,
        confusion_png=confusion,
        train_seconds=train_seconds,
    )


def _device_name() -> str:
    return f"CPU ({torch.get_num_threads()} threads)"
