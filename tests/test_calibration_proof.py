"""Proof on real Fashion-MNIST images (the demo tree, 2 -> 4 -> 10): a deliberately
over-confident MDAN (100 training images memorised over 30 epochs, no weight decay, the demo's
rates: 0.02 backbone, 0.002 new layers) has its
finest-level test ECE cut by at least half by temperature scaling fitted on validation only,
with the test accuracy within 0.5 points.

``python tests/test_calibration_proof.py OUT_DIR`` runs the same experiment and writes the
before / after reports and reliability diagrams that docs/evaluation.md shows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_helpers import fashion_sets  # noqa: E402

from mdan_zoo._threads import using_threads  # noqa: E402
from mdan_zoo.config import MDANConfig, Preprocessing  # noqa: E402
from mdan_zoo.evaluation import model_temperatures  # noqa: E402
from mdan_zoo.model import MDAN  # noqa: E402
from mdan_zoo.taxonomy import get_taxonomy  # noqa: E402
from mdan_zoo.training import calibrate_model  # noqa: E402

SIZE = 32
THREADS = 1  # pinned: the thread count changes every sum's order, and so what 30 epochs learn


def overconfident_run() -> tuple[MDAN, dict[str, Any]]:
    """Train the over-confident model (seeded) and calibrate it; returns it and the reports."""
    torch.manual_seed(0)
    sets = fashion_sets(train_per_class=10, val_per_class=30, test_per_class=100, size=SIZE)
    model = MDAN(
        get_taxonomy("fashion_mnist"),
        MDANConfig.lite(backbone="resnet18"),
        preprocessing=Preprocessing(input_size=SIZE, resize_size=SIZE),
    )
    groups = model.param_groups()  # the demo's rates: 0.02 on the new layers collapses P_L
    opt = torch.optim.SGD(
        [{"params": groups["backbone"], "lr": 0.02}, {"params": groups["new"], "lr": 0.002}],
        momentum=0.9,
        weight_decay=0.0,
    )
    x, y = sets["train"].tensors
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(30):  # long past fitting the 100 images: the softmaxes saturate
        for idx in torch.randperm(len(y), generator=gen).split(20):
            opt.zero_grad()
            model.loss(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    reports = calibrate_model(model, {"val": sets["val"], "test": sets["test"]}, batch_size=100)
    return model, reports


@pytest.mark.slow
def test_temperature_scaling_halves_the_finest_ece_on_real_images(
    fashion_mnist_dir: Path,
) -> None:
    with using_threads(THREADS):
        model, reports = overconfident_run()
    before, after = reports["test"]["before"], reports["test"]["after"]
    fine = model.taxonomy.level_names[-1]
    ece_before = before.calibration["overall"][fine]["ece"]
    ece_after = after.calibration["overall"][fine]["ece"]
    assert ece_before > 0.15, ece_before  # it really is over-confident
    assert ece_after <= 0.5 * ece_before, (ece_before, ece_after)
    acc_before, acc_after = before.accuracy["overall"][-1], after.accuracy["overall"][-1]
    # within 0.5 points, that bound included (5 of these 1,000 test images)
    assert abs(acc_after - acc_before) <= 0.005 + 1e-9, (acc_before, acc_after)
    assert acc_before > 0.3  # it learned something: chance is 0.1
    # over-confident at the finest level means softened there: its temperatures are above 1
    # (a coarse level may come out under-confident and be sharpened, T < 1)
    assert model.config.global_temperature > 1 and model.config.local_temperatures[-1] > 1
    # the fit never saw the test split: its NLL improves on validation by construction, and
    # on test as the consequence
    assert after.calibration["overall"][fine]["nll"] < before.calibration["overall"][fine]["nll"]


def main(out: Path) -> None:
    """Write the run's reports (before / after) for docs/evaluation.md, with the test's threads."""
    with using_threads(THREADS):
        model, reports = overconfident_run()
    reports["test"]["after"].temperatures = model_temperatures(model)
    for state in ("before", "after"):
        report = reports["test"][state]
        report.write(out / state, title=f"over-confident MDAN, test split, {state} scaling")
        print(report.table(f"test split, {state} temperature scaling"))
    print("temperatures:", model.config.local_temperatures, model.config.global_temperature)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
