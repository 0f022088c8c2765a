"""Table-3 metrics against values worked out by hand, the Fig. 6 off-block rate, and the Fig. 6
confusion picture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdan_zoo.evaluation import compute_report, confusion_matrix, save_confusion_png
from mdan_zoo.taxonomy import Taxonomy, get_taxonomy

TOY = Taxonomy.from_levels(
    [["a", "b"], ["a1", "a2", "b1", "b2"]],
    [{"a1": "a", "a2": "a", "b1": "b", "b2": "b"}],
    name="toy",
    level_names=["top", "leaf"],
)


def _probs(preds: list[int], k: int) -> np.ndarray:
    """Rows with 0.6 on the predicted class, the rest spread evenly."""
    p = np.full((len(preds), k), 0.4 / (k - 1))
    p[np.arange(len(preds)), preds] = 0.6
    return p


def _toy_report():
    # samples are a1, a2, b1, b2 (fine indices 0..3); coarse truth a, a, b, b
    probs = {
        "overall": [_probs([0, 0, 0, 1], 2), _probs([0, 2, 2, 3], 4)],
        "local": [_probs([0, 1, 1, 1], 2), _probs([0, 1, 3, 3], 4)],
        "global": [_probs([0, 0, 1, 1], 2), _probs([1, 0, 2, 3], 4)],
    }
    return compute_report(TOY, [0, 1, 2, 3], probs)


def test_accuracy_and_violations_by_hand() -> None:
    r = _toy_report()
    # P_O: top a,a,a,b vs a,a,b,b -> 3/4; leaf a1,b1,b1,b2 vs a1,a2,b1,b2 -> 3/4;
    # violations: sample 1 (b1 under a) and sample 2 (b1 under a) -> 2/4
    assert r.accuracy["overall"] == [0.75, 0.75]
    assert r.violation_rate["overall"] == 0.5
    # P_L: top a,b,b,b -> 3/4; leaf a1,a2,b2,b2 -> 3/4; violation: sample 1 only (a2 under b)
    assert r.accuracy["local"] == [0.75, 0.75]
    assert r.violation_rate["local"] == 0.25
    # P_G: top a,a,b,b -> 1; leaf a2,a1,b1,b2 -> 2/4; no violation
    assert r.accuracy["global"] == [1.0, 0.5]
    assert r.violation_rate["global"] == 0.0
    flat = r.flat()
    assert (
        flat["overall/acc/leaf"] == 0.75
        and flat["local/mean"] == 0.75
        and flat["global/mean"] == 0.75
    )


def test_off_block_rate_by_hand_differs_from_the_violation_rate() -> None:
    """Fig. 6: predicted class outside the *true* parent's block; Sec. 3.2: predicted labels
    that do not form a path. Truth a1, a2, b1, b2 (parents a, a, b, b)."""
    r = _toy_report()
    # P_O leaf a1, b1, b1, b2: only sample 1 (a2 -> b1) leaves its true block -> 1/4. Sample 2
    # (top a, leaf b1) violates the tree but stays in its true block b.
    assert r.off_block_rate["overall"] == {"leaf": 0.25}
    assert r.violation_rate["overall"] == 0.5
    # P_L leaf a1, a2, b2, b2: every prediction inside the true block, one violation (sample 1).
    assert r.off_block_rate["local"] == {"leaf": 0.0} and r.violation_rate["local"] == 0.25
    # P_G leaf a2, a1, b1, b2: two errors, both inside the true block.
    assert r.off_block_rate["global"] == {"leaf": 0.0}
    flat = r.flat()
    assert flat["overall/off_block/leaf"] == 0.25 and "overall/off_block/top" not in flat


def test_off_block_rate_per_level_of_a_three_level_tree() -> None:
    tax = Taxonomy.from_levels(
        [["x", "y"], ["x1", "x2", "y1"], ["x1a", "x1b", "x2a", "y1a", "y1b"]],
        [
            {"x1": "x", "x2": "x", "y1": "y"},
            {"x1a": "x1", "x1b": "x1", "x2a": "x2", "y1a": "y1", "y1b": "y1"},
        ],
        name="toy3",
        level_names=["top", "mid", "leaf"],
    )
    # truth: x1a, x2a, y1b -> mid x1, x2, y1 -> top x, x, y
    preds = [_probs([0, 0, 1], 2), _probs([0, 0, 2], 3), _probs([1, 3, 2], 5)]
    r = compute_report(tax, [0, 2, 4], {b: preds for b in ("overall", "local", "global")})
    # mid x1, x1, y1: parents x, x, y = true tops -> 0. leaf x1b (x1 = true mid x1: inside),
    # y1a (y1, true mid x2: outside), x2a (x2, true mid y1: outside) -> 2/3.
    assert r.off_block_rate["overall"] == {"mid": 0.0, "leaf": pytest.approx(2 / 3)}
    assert "predicted outside the true parent's block" in r.table()
    assert "  leaf: P_L 66.67%  P_O 66.67%  P_G 66.67%" in r.table()


def test_off_block_rate_is_the_confusion_mass_outside_the_parent_blocks() -> None:
    """Checked against the confusion matrices (an independent count) on random predictions."""
    tax = get_taxonomy("fashion_mnist")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=200)
    probs = {
        b: [rng.random((200, k)) for k in tax.num_classes] for b in ("overall", "local", "global")
    }
    r = compute_report(tax, y, probs)
    for branch in ("overall", "local", "global"):
        for d in (1, 2):
            parents = np.asarray(tax.parents[d])
            outside = parents[:, None] != parents[None, :]  # true class vs predicted class
            mass = r.confusion[branch][d][outside].sum() / 200
            assert r.off_block_rate[branch][tax.level_names[d]] == pytest.approx(mass)
            assert 0 < mass < 1


def test_per_class_precision_recall_and_confusion_by_hand() -> None:
    r = _toy_report()
    np.testing.assert_array_equal(
        r.confusion["overall"][1], [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    )
    leaf = r.per_class[1]
    assert leaf["a1"] == {"precision": 1.0, "recall": 1.0, "support": 1}
    assert leaf["a2"] == {"precision": 0.0, "recall": 0.0, "support": 1}  # never predicted
    assert leaf["b1"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    top = r.per_class[0]
    assert top["a"]["precision"] == pytest.approx(2 / 3) and top["b"]["recall"] == 0.5


def test_table_and_files(tmp_path: Path) -> None:
    r = _toy_report()
    text = r.table("toy")
    assert "Acc_L" in text and "Acc_O" in text
    assert "leaf (4)" in text and "75.00" in text and "50.00" in text
    assert "P_L 25.00%" in text and "P_O 50.00%" in text
    assert "  leaf: P_L 0.00%  P_O 25.00%  P_G 0.00%" in text  # Fig. 6's off-block rate
    paths = r.write(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["accuracy"]["overall"] == {"top": 0.75, "leaf": 0.75}
    assert data["off_block_rate"] == {
        "local": {"leaf": 0.0},
        "global": {"leaf": 0.0},
        "overall": {"leaf": 0.25},
    }
    assert (tmp_path / "report.txt").read_text().count("P_O 25.00%") == 1
    rows = list(csv.reader((tmp_path / "confusion_P_O_leaf.csv").open()))
    assert rows[0] == ["true\\predicted", "a1", "a2", "b1", "b2"]
    assert rows[2] == ["a2", "0", "0", "1", "0"]
    for name in ("confusion_P_O_leaf.png", "confusion_P_L_top.png"):
        assert Image.open(tmp_path / name).size[0] > 100


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"expected \(4, 2\)"):
        compute_report(
            TOY,
            [0, 1, 2, 3],
            {b: [_probs([0], 2), _probs([0], 4)] for b in ("overall", "local", "global")},
        )
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix([0, 3], [0, 1], 3)


def _is_red(px: tuple[int, ...]) -> bool:
    return px[0] > 200 and px[1] < 60 and px[2] < 60


@pytest.mark.parametrize(
    "level, groups", [(2, [[0, 2, 4, 6], [1, 3], [5, 7, 9], [8]]), (1, [[0, 1], [2, 3]])]
)
def test_confusion_png_draws_lines_between_parent_groups(
    tmp_path: Path, level: int, groups: list[list[int]]
) -> None:
    tax = get_taxonomy("fashion_mnist")
    k = tax.num_classes[level]
    rng = np.random.default_rng(0)
    m = rng.integers(0, 20, size=(k, k)) + np.diag(np.full(k, 50))
    geo = save_confusion_png(m, tax, level, tmp_path / "c.png")
    assert geo["order"] == [c for g in groups for c in g]  # siblings side by side
    img = Image.open(tmp_path / "c.png").convert("RGB")
    x0, y0, cell = geo["x0"], geo["y0"], geo["cell"]
    bounds = np.cumsum([len(g) for g in groups])[:-1].tolist()
    assert geo["bounds"] == bounds
    mid = y0 + cell // 2
    for b in bounds:  # a vertical and a horizontal red line at every group boundary
        x = x0 + b * cell
        assert any(_is_red(img.getpixel((x + dx, mid))) for dx in (-1, 0, 1))
        assert any(_is_red(img.getpixel((x0 + cell // 2, x - x0 + y0 + dy))) for dy in (-1, 0, 1))
    red_columns = [x for x in range(x0, x0 + k * cell) if _is_red(img.getpixel((x, mid)))]
    assert len(red_columns) in range(len(bounds), 3 * len(bounds) + 1)
    order = geo["order"]
    for r in range(k):  # each cell is grey: 255 * (1 - row share), rows and columns regrouped
        for c in (r, (r + 1) % k):
            share = m[order[r], order[c]] / m[order[r]].sum()
            px = img.getpixel((x0 + c * cell + 2, y0 + r * cell + 2))
            assert px[0] == px[1] == px[2] == round(255 * (1 - share))


def test_coarsest_level_has_no_group_lines(tmp_path: Path) -> None:
    tax = get_taxonomy("fashion_mnist")
    geo = save_confusion_png(np.array([[5, 1], [2, 7]]), tax, 0, tmp_path / "c.png")
    img = np.asarray(Image.open(tmp_path / "c.png").convert("RGB")).astype(int)
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert geo["bounds"] == [] and not red.any()
