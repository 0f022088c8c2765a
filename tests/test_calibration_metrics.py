"""Every calibration and selective-prediction metric against a case worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdan_zoo.calibration import (
    accuracy_at_coverage,
    adaptive_calibration_error,
    binary_brier,
    binary_nll,
    binary_roc_auc,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage,
    roc_auc_ovr,
)

# five claims: two at 0.95 (one right), two at 0.62 (both right), one at 0.3 (wrong)
CONF = [0.95, 0.95, 0.62, 0.62, 0.3]
RIGHT = [True, False, True, True, False]


def test_ece_equal_width_bins_by_hand() -> None:
    # bins of width 1/15: 0.95 -> bin 14, 0.62 -> bin 9, 0.3 -> bin 4
    # ECE = 2/5 |0.5 - 0.95| + 2/5 |1 - 0.62| + 1/5 |0 - 0.3| = 0.18 + 0.152 + 0.06
    assert expected_calibration_error(CONF, RIGHT) == pytest.approx(0.392)
    bins = reliability_bins(CONF, RIGHT)
    assert bins["count"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2]
    assert bins["accuracy"][14] == 0.5 and bins["confidence"][9] == pytest.approx(0.62)
    assert math.isnan(bins["accuracy"][0])
    # one bin: |accuracy - mean confidence| = |0.6 - 0.688|
    assert expected_calibration_error(CONF, RIGHT, n_bins=1) == pytest.approx(0.088)
    # a perfectly calibrated set: 0.75 claimed, 3 of 4 right
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)


def test_adaptive_ece_equal_mass_bins_by_hand() -> None:
    # sorted: 0.3(x) 0.62(v) 0.62(v) | 0.95(v) 0.95(x)
    # = 3/5 |2/3 - 1.54/3| + 2/5 |0.5 - 0.95| = (0.46 + 0.9) / 5
    assert adaptive_calibration_error(CONF, RIGHT, n_bins=2) == pytest.approx(0.272)
    # 15 bins but 5 claims: one claim per bin, the mean |confidence - correct|
    assert adaptive_calibration_error(CONF, RIGHT) == pytest.approx(2.06 / 5)


def test_brier_and_nll_by_hand() -> None:
    probs = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]]
    # (0.09 + 0.04 + 0.01 + 0.04 + 0.25 + 0.49) / 2
    assert brier_score(probs, [0, 2]) == pytest.approx(0.46)
    assert negative_log_likelihood(probs, [0, 2]) == pytest.approx(
        -(math.log(0.7) + math.log(0.3)) / 2
    )
    # a zero probability of the truth costs -log(1e-12), not infinity
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-12))
    assert binary_brier([0.9, 0.2], [True, False]) == pytest.approx((0.01 + 0.04) / 2)
    assert binary_nll([0.9, 0.2], [True, False]) == pytest.approx(
        -(math.log(0.9) + math.log(0.8)) / 2
    )


def test_roc_auc_one_vs_rest_by_hand() -> None:
    probs = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    y = [0, 0, 1, 1]
    # class 0: positives {0.8, 0.4} vs negatives {0.6, 0.2}: 3 of 4 pairs ordered right;
    # class 1: positives {0.3, 0.7} vs {0.1, 0.5}: 3 of 4; class 2 has no positive: left out
    assert binary_roc_auc(probs[:, 0], np.array(y) == 0) == pytest.approx(0.75)
    assert roc_auc_ovr(probs, y) == pytest.approx(0.75)
    assert binary_roc_auc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    assert math.isnan(binary_roc_auc([0.1, 0.9], [True, True]))


def test_risk_coverage_by_hand() -> None:
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    right = [True, True, False, True, False]
    # risk after k answers: 0, 0, 1/3, 1/4, 2/5
    curve = risk_coverage(conf, right, points=5)
    assert curve["coverage"] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert curve["risk"] == pytest.approx([0, 0, 1 / 3, 1 / 4, 2 / 5])
    assert curve["threshold"] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert curve["aurc"] == pytest.approx((1 / 3 + 1 / 4 + 2 / 5) / 5)
    assert accuracy_at_coverage(conf, right, 0.8) == pytest.approx(3 / 4)
    assert accuracy_at_coverage(conf, right, 0.9) == pytest.approx(3 / 5)  # ceil(4.5) = 5
    with pytest.raises(ValueError, match="coverage"):
        accuracy_at_coverage(conf, right, 0.0)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        brier_score([0.5, 0.5], [0])
    with pytest.raises(ValueError, match="class indices"):
        brier_score([[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="confidence"):
        expected_calibration_error([0.5, 0.5], [True])


def test_fit_temperatures_recovers_the_temperature_of_saturated_logits() -> None:
    """Logits 8x too sharp (softmaxes saturated at T = 1, where the gradient vanishes): the
    fit leaves T = 1 for temperatures near 8 (P_O mixes the branches, so the global one's
    optimum is not exactly 8) and lowers the NLL."""
    import torch

    from mdan_zoo.calibration import RawLogits, fit_temperatures

    gen = torch.Generator().manual_seed(0)
    n, k = 2000, 4
    true = torch.randn(n, k, generator=gen) * 1.5
    y = torch.multinomial(torch.softmax(true, dim=1), 1, generator=gen)[:, 0]
    fine_to = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3]])
    coarse = torch.log(
        torch.stack([torch.softmax(true, 1)[:, :2].sum(1), torch.softmax(true, 1)[:, 2:].sum(1)], 1)
    )
    logits = RawLogits((8 * coarse, 8 * true), 8 * true, fine_to)
    local, glob, before, after = fit_temperatures(logits, y, alpha=0.7)
    assert 4 < glob < 12 and all(6 < t < 12 for t in local), (local, glob)
    assert after < 0.8 * before
