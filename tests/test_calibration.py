"""Calibration in the report (hand-made case), temperatures that travel with the weights (save,
load, old checkpoints, hostile files, ONNX metadata), selective prediction, and a run
calibrated by the trainer and by ``mdan-zoo calibrate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import tiny_config
from zoo_helpers import tiny_mdan

from mdan_zoo import MDAN, Taxonomy
from mdan_zoo.cli import main
from mdan_zoo.config import MDANConfig
from mdan_zoo.data.fashion_mnist import FashionMNIST
from mdan_zoo.errors import ConfigError, WeightsError
from mdan_zoo.evaluation import compute_report, evaluate
from mdan_zoo.training import build_datasets, calibrate_run, load_checkpoint, train

TAX = Taxonomy.from_nested({"a": ["a1", "a2"], "b": ["b1", "b2"]})


def _hand_report():
    # four images a1, a2, b1, b2; P_O puts 0.8 on a coarse class and 0.6 on a fine class
    coarse = np.array([[0.8, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.2]])
    fine = np.array(
        [
            [0.6, 0.2, 0.1, 0.1],  # a1 right
            [0.6, 0.2, 0.1, 0.1],  # a1, truth a2: wrong
            [0.1, 0.1, 0.6, 0.2],  # b1 right
            [0.1, 0.1, 0.2, 0.6],  # b2 right, but its coarse P_O says a
        ]
    )
    probs = {b: [coarse, fine] for b in ("local", "global", "overall")}
    return compute_report(TAX, [0, 1, 2, 3], probs)


def test_report_calibration_block_by_hand(tmp_path: Path) -> None:
    report = _hand_report()
    cal = report.calibration
    # coarse: every claim 0.8, 3 of 4 right -> ECE |0.75 - 0.8|; fine: 0.6, 3 of 4 -> 0.15
    assert cal["overall"]["level1"]["ece"] == pytest.approx(0.05)
    assert cal["overall"]["level2"]["ece"] == pytest.approx(0.15)
    assert cal["overall"]["level2"]["nll"] == pytest.approx(
        -(3 * math.log(0.6) + math.log(0.2)) / 4
    )
    # consistent path: the joint maximiser per image and its product; image 3: a>a1 gives
    # 0.8 * 0.1, b>b2 gives 0.2 * 0.6 = 0.12: the path b > b2 (right) with 0.12
    joint = [0.48, 0.48, 0.48, 0.12]
    right = [True, False, True, True]
    c = cal["consistent"]
    assert c["accuracy"] == 0.75 and c["mean_confidence"] == pytest.approx(np.mean(joint))
    assert c["brier"] == pytest.approx(
        np.mean([(p - r) ** 2 for p, r in zip(joint, right, strict=True)])
    )
    # 0.12 is right, two 0.48s are right, one 0.48 wrong: 2 of 3 wrong-right pairs ordered
    assert c["roc_auc"] == pytest.approx((0 + 0.5 + 0.5) / 3)
    # selective at the fine level: the 90 % most confident (4 of 4) and 80 % (4 of 4 too)
    assert cal["selective"]["level2"]["accuracy_at_coverage"] == {"0.8": 0.75, "0.9": 0.75}
    # the files: report.json under "calibration", report.txt beside accuracy, the diagrams
    paths = report.write(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["calibration"]["overall"]["level2"]["ece"] == pytest.approx(0.15)
    assert data["metrics"]["overall/ece/level2"] == pytest.approx(0.15)
    text = (tmp_path / "report.txt").read_text()
    assert "ECE_O" in text and "consistent path" in text and "80% covered" in text
    png = Image.open(paths["reliability_P_O_level2"]).convert("RGB")
    # bin 9 of 15 ((0.6 - 1/15, 0.6]) holds every fine claim: its bar is drawn, bin 2's not
    x0, y0, size = 56, 44, 300
    inside = png.getpixel((int(x0 + 8.5 * size / 15), y0 + size - 5))
    empty = png.getpixel((int(x0 + 2.5 * size / 15), y0 + size - 5))
    assert inside == (66, 110, 200) and empty == (255, 255, 255)


@pytest.mark.filterwarnings("ignore::mdan_zoo.errors.UntrainedWeightsWarning")
def test_temperatures_travel_with_the_weights(tmp_path: Path) -> None:
    model = tiny_mdan()
    x = torch.rand(3, 3, 64, 64)
    raw = model(x)
    model.set_temperatures([2.0, 1.5, 3.0], 2.5)
    scaled = model(x)
    for r, s, t in zip(raw, scaled, (2.0, 1.5, 3.0), strict=True):
        assert torch.allclose(s.local_probs, torch.softmax(r.local_logits / t, dim=1), atol=1e-6)
        assert torch.equal(s.local_probs.argmax(1), r.local_probs.argmax(1))
    assert torch.allclose(scaled[-1].global_probs, torch.softmax(raw[-1].global_logits / 2.5, 1))
    assert torch.allclose(model(x, calibration=False)[-1].probs, raw[-1].probs)
    model.save_pretrained(tmp_path / "cal")
    arch = json.loads((tmp_path / "cal" / "config.json").read_text())["model_config"]
    assert arch["local_temperatures"] == [2.0, 1.5, 3.0] and arch["global_temperature"] == 2.5
    assert "Temperature scaling" in (tmp_path / "cal" / "README.md").read_text()
    loaded = MDAN.from_pretrained(tmp_path / "cal")
    assert torch.allclose(loaded(x)[-1].probs, scaled[-1].probs, atol=1e-6)
    plain = MDAN.from_pretrained(tmp_path / "cal", calibration=False)
    assert not plain.config.calibrated
    assert torch.allclose(plain(x)[-1].probs, raw[-1].probs, atol=1e-6)
    # predict applies them, calibration=False does not
    p_cal = model.predict(list(x))[0]
    p_raw = model.predict(list(x), calibration=False)[0]
    assert p_cal.joint_prob != pytest.approx(p_raw.joint_prob)
    # a checkpoint saved before temperatures existed loads as the raw model, file unchanged
    model.set_temperatures(None)
    model.save_pretrained(tmp_path / "old")
    arch = json.loads((tmp_path / "old" / "config.json").read_text())["model_config"]
    assert "local_temperatures" not in arch
    assert not MDAN.from_pretrained(tmp_path / "old").config.calibrated


@pytest.mark.parametrize(
    ("local", "glob", "why"),
    [
        ([2.0, 2.0], 2.0, "3 levels"),  # too few for the tree
        ([2.0, -1.0, 2.0], 2.0, "from 0.05 to 20"),
        ([2.0, 2.0, 2.0], None, "come together"),
        ([2.0, 2.0, 2.0], 1e9, "at most"),
    ],
)
def test_hostile_temperatures_are_refused(tmp_path: Path, local, glob, why: str) -> None:
    tiny_mdan().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_config"]["local_temperatures"] = local
    cfg["model_config"]["global_temperature"] = glob
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match=why):
        MDAN.from_pretrained(tmp_path)


def test_training_config_refuses_preset_temperatures(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="calibrate=true"):
        tiny_config(tmp_path, model={"local_temperatures": [2.0], "global_temperature": 2.0})
    with pytest.raises(ConfigError, match="come together"):
        MDANConfig(local_temperatures=(1.0,))


@pytest.mark.filterwarnings("ignore::mdan_zoo.errors.UntrainedWeightsWarning")
def test_selective_prediction_backs_off_to_the_deepest_sure_level() -> None:
    model = tiny_mdan()
    image = torch.rand(3, 64, 64)
    full = model.predict([image])[0]
    assert full.answer == tuple(c.label for c in full.consistent) and not full.uncertain
    p = full.path_probs
    assert p[-1] == pytest.approx(full.joint_prob) and p[0] >= p[1] >= p[2]
    # a threshold between the second and third path probability: answer two levels
    cut = (p[1] + p[2]) / 2
    sel = model.predict([image], min_confidence=cut)[0]
    assert sel.answer == tuple(c.label for c in full.consistent[:2])
    assert sel.uncertain and sel.label == "uncertain"
    record = sel.to_dict()
    assert record["answer"] == list(sel.answer) and record["uncertain"] is True
    # above the top level's probability nothing is answered; 0 answers everything
    assert model.predict([image], min_confidence=min(1.0, p[0] + 1e-6))[0].answer == ()
    assert model.predict([image], min_confidence=0.0)[0].label == full.label
    with pytest.raises(ValueError, match="min_confidence"):
        model.predict([image], min_confidence=1.5)


def test_trainer_calibrates_and_the_cli_agrees(
    tmp_path: Path, fashion_mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``calibrate: true`` stores temperatures fitted on val in the selected checkpoint; the
    test report measures the calibrated model; ``mdan-zoo calibrate`` fits the same numbers
    again from the raw logits; ``predict``/``eval`` take --min-confidence / --no-calibration."""
    torch.set_num_threads(1)
    # the config's own data (8 training, 2 validation and 2 test images per class), so that
    # `mdan-zoo calibrate` rebuilds the very same splits from the run's config.json
    cfg = tiny_config(tmp_path, epochs=1, calibrate=True, pretrained="none", subset_per_class=8)
    result = train(cfg)
    model = load_checkpoint(result.output_dir).model
    assert model.config.calibrated
    record = json.loads((result.output_dir / "calibration.json").read_text())
    assert record["fitted_on"] == "val" and set(record) >= {"val", "test"}
    assert list(model.config.local_temperatures) == record["local_temperatures"]
    assert record["val"]["after"]["nll"] != record["val"]["before"]["nll"]
    temps = result.test_report.temperatures
    assert temps is not None and temps["global"] == model.config.global_temperature
    assert not load_checkpoint(result.output_dir, calibration=False).model.config.calibrated
    again = calibrate_run(result.output_dir)[0]
    assert again.local_temperatures == pytest.approx(tuple(record["local_temperatures"]))
    # the CLI: calibrate, then predict with the stored temperatures and a threshold
    assert main(["calibrate", str(result.output_dir), "--no-progress"]) == 0
    assert "temperatures fitted on the validation split" in capsys.readouterr().out
    image = tmp_path / "item.png"
    Image.fromarray(FashionMNIST("test").images[0]).save(image)
    args = ["predict", str(image), "--weights", str(result.output_dir), "--json", "--no-progress"]
    assert main([*args, "--min-confidence", "1"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["uncertain"] is True and line["label"] == "uncertain" and line["answer"] == []
    assert main([*args, "--no-calibration"]) == 0
    raw = json.loads(capsys.readouterr().out.splitlines()[0])
    assert "uncertain" not in raw and raw["joint_prob"] != line["joint_prob"]
    test = build_datasets(cfg, taxonomy=model.taxonomy, preprocessing=model.preprocessing)["test"]
    raw_report = evaluate(model, test, calibration=False)
    assert raw_report.temperatures is None
    before = again.reports["test"]["before"].calibration["overall"]
    for level, metrics in before.items():  # the forward pass and the fitted logits agree
        assert raw_report.calibration["overall"][level] == pytest.approx(metrics, abs=1e-5)


def test_runs_report_and_model_card_carry_calibration(tmp_path: Path) -> None:
    """`mdan-zoo report` averages the calibration blocks of the runs' test reports; an
    exported run's metrics and its model card carry ECE beside accuracy."""
    from mdan_zoo.hub._model_card import card_data
    from mdan_zoo.training import report_runs

    fine = np.array([[0.6, 0.2, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.6, 0.2]])
    for seed, fine_truth in ((0, [0, 1, 2]), (1, [0, 0, 2])):
        coarse = np.stack([fine[:, :2].sum(1), fine[:, 2:].sum(1)], 1)
        probs = {b: [coarse, fine] for b in ("local", "global", "overall")}
        compute_report(TAX, fine_truth, probs).write(tmp_path / f"seed-{seed}" / "test")
    rep = report_runs([tmp_path])
    ece = rep.calibration["P_O"]["4"]["ece"]
    # seed 0: 2 of 3 right at 0.6 -> 6.67 %; seed 1: 3 of 3 right -> 40 %
    assert ece["mean"] == pytest.approx((100 * (2 / 3 - 0.6) + 40.0) / 2, abs=0.01)
    assert ece["std"] == pytest.approx(np.std([100 * (2 / 3 - 0.6), 40.0], ddof=1), abs=0.01)
    assert "calibration (P_O, mean ± std over 2 runs)" in rep.table()
    assert rep.to_dict()["calibration"]["n"] == 2
    config = {
        "taxonomy": TAX.to_dict(),
        "metrics": {"accuracy_O": {"4": 66.67}, "ece_O": {"4": 6.67}, "test_images": 3},
    }
    results = card_data(config).eval_results
    kinds = {(r.metric_type, r.metric_value) for r in results}
    assert ("accuracy", 66.67) in kinds and ("ece", 6.67) in kinds


@pytest.mark.filterwarnings("ignore::mdan_zoo.errors.UntrainedWeightsWarning")
def test_onnx_export_builds_the_temperatures_in(tmp_path: Path) -> None:
    from mdan_zoo.export import OnnxRuntimeModel, export_onnx

    model = tiny_mdan()
    model.set_temperatures([2.0, 1.5, 3.0], 2.5)
    path = export_onnx(model, tmp_path / "cal.onnx")
    runtime = OnnxRuntimeModel(path)
    assert runtime.temperatures == {"local": [2.0, 1.5, 3.0], "global": 2.5}
    x = torch.rand(2, 3, 64, 64)
    got = runtime(x)
    with torch.no_grad():
        want = model(x)
    assert torch.allclose(got[-1].probs, want[-1].probs, atol=1e-5)
    with pytest.raises(ValueError, match="calibration=False"):
        runtime(x, calibration=False)
