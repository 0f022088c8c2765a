"""Temperature scaling for MDAN (Guo et al., 2017), fitted on the validation split only.

One temperature per branch: ``T_L^l`` for the local classifier of every level and ``T_G`` for
the global classifier, so that ``P_O^l = alpha softmax(z_L^l / T_L^l) + (1 - alpha)
Eq2(softmax(z_G / T_G))^l``. They minimise the mean over levels of the NLL of P_O (Eq. 3's
loss) on the raw validation logits, in log space (temperatures stay positive) with L-BFGS.
Dividing logits by a positive number never changes a softmax's argmax, so P_L and P_G keep
their predictions; P_O's can move (it mixes two branches), which the report measures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import MAX_TEMPERATURE, MIN_TEMPERATURE

__all__ = ["RawLogits", "branch_probs", "collect_logits", "fit_temperatures", "scaled_probs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawLogits:
    """Uncalibrated logits of a set of images: ``local`` one ``[n, K_l]`` per level (coarse to
    fine), ``global_`` ``[n, K_fine]``, and ``fine_to`` the ancestor index at every level of
    each fine class (``[K_fine, levels]``, Eq. 2's sums)."""

    local: tuple[Tensor, ...]
    global_: Tensor
    fine_to: Tensor


def branch_probs(
    logits: RawLogits, local_t: Any, global_t: Any, alpha: float
) -> dict[str, list[Tensor]]:
    """``{"local", "global", "overall": [probabilities per level]}`` under the temperatures
    (differentiable in them): what the network reports with them stored."""
    p_g = torch.softmax(logits.global_ / global_t, dim=1)
    out: dict[str, list[Tensor]] = {"local": [], "global": [], "overall": []}
    for depth, z in enumerate(logits.local):
        index = logits.fine_to[:, depth]
        p_g_level = p_g.new_zeros(p_g.shape[0], z.shape[1]).index_add(1, index, p_g)
        p_l = torch.softmax(z / local_t[depth], dim=1)
        out["local"].append(p_l)
        out["global"].append(p_g_level)
        out["overall"].append(alpha * p_l + (1 - alpha) * p_g_level)
    return out


def scaled_probs(logits: RawLogits, local_t: Any, global_t: Any, alpha: float) -> list[Tensor]:
    """P_O of every level under the temperatures."""
    return branch_probs(logits, local_t, global_t, alpha)["overall"]


def _objective(logits: RawLogits, targets: Sequence[Tensor], log_t: Tensor, alpha: float) -> Tensor:
    levels = len(logits.local)
    t = log_t.exp()
    probs = scaled_probs(logits, t[:levels], t[levels], alpha)
    losses = [
        F.nll_loss(torch.log(p.clamp_min(1e-12)), y) for p, y in zip(probs, targets, strict=True)
    ]
    return torch.stack(losses).mean()


def _grid_start(
    logits: RawLogits, targets: Sequence[Tensor], log_t: Tensor, alpha: float, sweeps: int = 2
) -> None:
    """Coordinate descent over a log-spaced grid of temperatures, in place: a saturated softmax
    has almost no gradient in its temperature at T = 1, so L-BFGS alone can stay there."""
    grid = torch.linspace(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE), 49)
    for _ in range(sweeps):
        for i in range(log_t.numel()):
            best, best_value = float(log_t[i]), float(_objective(logits, targets, log_t, alpha))
            for value in grid.tolist():
                log_t[i] = value
                loss = float(_objective(logits, targets, log_t, alpha))
                if loss < best_value:
                    best, best_value = value, loss
            log_t[i] = best


def fit_temperatures(
    logits: RawLogits, fine_targets: Tensor, *, alpha: float
) -> tuple[tuple[float, ...], float, float, float]:
    """``(local temperatures per level, global temperature, NLL before, NLL after)``.

    Minimises the mean over levels of ``-log P_O[y]`` on these (validation) logits: a
    coordinate search over a log-spaced grid from T = 1 (the raw model), then L-BFGS. The NLL
    never ends above where it began: a fit that would is refused for temperatures of 1.
    """
    levels = len(logits.local)
    targets = [logits.fine_to[fine_targets, d] for d in range(levels)]
    with torch.no_grad():
        local = tuple(z.double() for z in logits.local)
        data = RawLogits(local, logits.global_.double(), logits.fine_to)
    log_t = torch.zeros(levels + 1, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        before = float(_objective(data, targets, log_t, alpha))
        _grid_start(data, targets, log_t, alpha)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = _objective(data, targets, log_t, alpha)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    with torch.no_grad():
        log_t.clamp_(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))
        after = float(_objective(data, targets, log_t, alpha))
    if not math.isfinite(after) or after > before:
        logger.warning("temperature fit did not lower the validation NLL: keeping T = 1")
        return (1.0,) * levels, 1.0, before, before
    t = [float(v) for v in log_t.detach().exp()]
    return tuple(t[:levels]), t[levels], before, after


@torch.no_grad()
def collect_logits(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
) -> tuple[Tensor, RawLogits]:
    """The raw (uncalibrated) logits of ``model`` over a dataset of ``(image, fine_index)``,
    in dataset order: ``(fine targets, RawLogits)``."""
    from torch.utils.data import DataLoader

    device = torch.device(device)
    loader: Any = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="logits", leave=False)
    was_training = model.training
    model.eval()
    targets, local, glob = [], [], []
    try:
        for images, y in loader:
            out = model(images.to(device), calibration=False)
            targets.append(torch.as_tensor(y))
            local.append([lv.local_logits.float().cpu() for lv in out])
            glob.append(out[-1].global_logits.float().cpu())
    finally:
        model.train(was_training)
    tax = model.taxonomy
    fine_to = torch.tensor([tax.ancestor_indices(k) for k in range(tax.num_classes[-1])])
    levels = tuple(torch.cat([b[d] for b in local]) for d in range(tax.num_levels))
    return torch.cat(targets), RawLogits(levels, torch.cat(glob), fine_to)
