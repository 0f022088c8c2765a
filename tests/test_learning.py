"""MDAN learns a real three-level hierarchy: Fashion-MNIST 2 -> 4 -> 10 (real images).

A small but complete MDAN (resnet18, MHCCA, UpsampleAdd, L-CAM mean + max, both branches, the
loss of Eq. 3) is trained from scratch on a seeded, class-balanced subset of the training split
and scored on held-out images of the *test* split. Chance is 0.5 / 0.25 / 0.1.
"""

from __future__ import annotations

import time

import pytest
import torch

from mdan_zoo import MDAN, MDANConfig, get_taxonomy
from mdan_zoo._threads import using_threads
from mdan_zoo.data.fashion_mnist import FashionMNIST

SIZE = 28  # native resolution: C2..C5 are 7, 4, 2, 1 pixels wide
TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 100
EPOCHS = 3
BATCH = 64
BARS = {"family": 0.90, "group": 0.80, "item": 0.55}  # measured 0.99 / 0.94 / 0.60 (1 thread)
# One intra-op thread, whatever the machine or an earlier test left: the thread count changes
# the order of every sum, and three epochs from scratch carry that far (item accuracy 0.600
# with one thread, 0.536 with two, 2026-12-02); with it pinned the run is the same everywhere.
THREADS = 1


@pytest.mark.slow
def test_mdan_learns_fashion_mnist_hierarchy(fashion_mnist_dir) -> None:
    with using_threads(THREADS):
        _learn_and_check(fashion_mnist_dir)


def _learn_and_check(fashion_mnist_dir) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    start = time.perf_counter()
    tax = get_taxonomy("fashion_mnist")
    train = FashionMNIST("train", root=fashion_mnist_dir)
    idx = FashionMNIST.balanced_indices(train.targets, TRAIN_PER_CLASS, seed=0)
    x_train, y_train = FashionMNIST("train", root=fashion_mnist_dir, indices=idx).tensors(SIZE)
    test = FashionMNIST("test", root=fashion_mnist_dir)
    tidx = FashionMNIST.balanced_indices(test.targets, TEST_PER_CLASS, seed=1)
    x_test, y_test = FashionMNIST("test", root=fashion_mnist_dir, indices=tidx).tensors(SIZE)

    model = MDAN(tax, MDANConfig(backbone="resnet18", fpn_channels=64))
    steps = EPOCHS * -(-len(x_train) // BATCH)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    first_loss = last_loss = float("nan")
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(x_train), BATCH):
            b = order[i : i + BATCH]
            loss = model.loss(model(x_train[b]), y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            first_loss = loss.item() if first_loss != first_loss else first_loss
            last_loss = loss.item()

    model.eval()
    with torch.inference_mode():
        out = model(x_test)
    targets = model.targets_from_fine(y_test)
    acc = {
        lv.name: float((lv.probs.argmax(1) == t).float().mean())
        for lv, t in zip(out, targets, strict=True)
    }
    acc_local = {
        lv.name: float((lv.local_probs.argmax(1) == t).float().mean())
        for lv, t in zip(out, targets, strict=True)
    }
    viol_o = tax.violation_rate([lv.probs.argmax(1) for lv in out])
    viol_l = tax.violation_rate([lv.local_probs.argmax(1) for lv in out])
    viol_g = tax.violation_rate([lv.global_probs.argmax(1) for lv in out])
    print(
        f"\nFashion-MNIST test accuracy P_O {acc}, P_L {acc_local}; hierarchy violations "
        f"P_O {viol_o:.3f}, P_L {viol_l:.3f}, P_G {viol_g:.3f}; loss {first_loss:.2f} -> "
        f"{last_loss:.2f}; {time.perf_counter() - start:.0f} s"
    )
    assert last_loss < 0.5 * first_loss
    for name, bar in BARS.items():
        assert acc[name] >= bar, f"{name}: accuracy {acc[name]:.3f} below {bar} (P_O)"
    # Per-level argmaxes of P_O may break the tree (Eq. 2 makes P_G's *distributions*
    # consistent, not its per-level argmaxes); trained, they rarely do. Measured: P_O 0.013,
    # P_L 0.009, P_G 0.017; independent uniform guesses would break it for 87.5% of images.
    assert 0.0 <= viol_o <= 0.05
