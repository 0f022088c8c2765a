"""`mdan-zoo demo --quick` end to end: trains on real images, reports, saves, reloads equal,
predicts, draws; every file it announces exists and the numbers it prints are its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdan_zoo import MDAN
from mdan_zoo.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end(
    tmp_path: Path, fashion_mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "run" / "test" / "report.json").read_text())
    # the printed Table-3 block is the measured report
    for level, k in zip(report["levels"], (2, 4, 10), strict=True):
        row = next(line for line in text.splitlines() if line.startswith(f"{level} ({k})"))
        values = [float(v) for v in row.split()[2:]]
        expected = [100 * report["accuracy"][b][level] for b in ("local", "global", "overall")]
        expected += [100 * report["baselines"][b][level] for b in ("majority", "chance")]
        np.testing.assert_allclose(values, expected, atol=0.006)
    assert "hierarchy violations" in text
    # saved in Hub layout, reloaded, equal outputs
    assert "max |difference| 0.0e+00" in text
    model = MDAN.from_pretrained(out / "model")
    assert model.taxonomy.name == "fashion_mnist" and model.num_classes == (2, 4, 10)
    card = json.loads((out / "model" / "config.json").read_text())
    assert card["metrics"]["accuracy_O"]["10"] == round(
        100 * report["accuracy"]["overall"]["item"], 2
    )
    # predictions on held-out images, with names and probabilities at every level
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 6
    for p in preds:
        path = [c["label"] for c in p["consistent"]]  # model.predict's consistent answer
        assert len(path) == 3 and all(0.0 <= c["prob"] <= 1.0 for c in p["consistent"])
        assert model.taxonomy.ancestors(path[-1]) == tuple(path)
        assert [lv["level"] for lv in p["levels"]] == list(model.taxonomy.level_names)
        assert p["true"] in model.taxonomy.fine_labels
    # pictures
    for png in ("attention.png", "confusion.png"):
        img = Image.open(out / png)
        assert img.size[0] > 200 and img.size[1] > 200
        assert str(out / png) in text
    assert np.asarray(Image.open(out / "attention.png").convert("RGB")).std() > 20
