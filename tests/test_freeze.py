"""The small-data recipe: frozen parts keep their start weights bit for bit, through training
and through a kill and resume; only the rest learns, with the head-only learning rate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import fashion_sets, load_weights, tiny_config

from mdan_zoo.config import ConfigError
from mdan_zoo.model import MDAN
from mdan_zoo.taxonomy import get_taxonomy
from mdan_zoo.training import FREEZE_PARTS, Trainer, freeze_prefixes, train


class _Killed(RuntimeError):
    pass


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _start(cfg) -> dict[str, torch.Tensor]:
    """The backbone the run starts from (the state-dict file tiny_config writes)."""
    sd = torch.load(cfg.pretrained, weights_only=True)
    return {f"backbone.{k}": v for k, v in sd.items() if not k.startswith("fc.")}


def test_a_frozen_trunk_stays_bit_identical_through_training_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fashion_mnist_dir: Path, one_thread: None
) -> None:
    sets = fashion_sets(train_per_class=3, val_per_class=1)
    cfg = tiny_config(tmp_path, freeze=["trunk"], epochs=2, eval_test=False)
    start = _start(cfg)

    def kill(self: Trainer, epoch: int, step: int) -> None:
        assert [g["name"] for g in self.optimizer.param_groups] == ["new"]  # head-only
        if epoch == 2 and step == 2:
            raise _Killed("simulated kill")

    monkeypatch.setattr(Trainer, "_on_step", kill)
    with pytest.raises(_Killed):
        train(cfg, datasets=sets)
    monkeypatch.undo()
    result = train(cfg, datasets=sets, resume=True)
    assert result.best_epoch >= 1
    after = load_weights(result.output_dir, which="last")
    for name, value in start.items():  # weights and BatchNorm running statistics alike
        assert torch.equal(after[name], value), name
    learned = [k for k in after if k.startswith("local_heads.")]
    first = MDAN(get_taxonomy("fashion_mnist"), cfg.model_config()).state_dict()
    assert learned and any(not torch.equal(after[k], first[k]) for k in learned)


def test_finer_parts_freeze_only_themselves(
    tmp_path: Path, fashion_mnist_dir: Path, one_thread: None
) -> None:
    sets = fashion_sets(train_per_class=2, val_per_class=1)
    cfg = tiny_config(tmp_path, freeze=["trunk.layer1", "top_down.f5"], epochs=1, eval_test=False)
    start = _start(cfg)
    trainer = Trainer(cfg, datasets=sets)
    f5 = trainer.model.f5.weight.detach().clone()
    trainer.fit()
    after = load_weights(cfg.resolved_output_dir(), which="last")
    for name, value in start.items():
        same = torch.equal(after[name], value)
        assert same == name.startswith("backbone.layer1."), name
    assert torch.equal(after["f5.weight"], f5)
    assert [g["name"] for g in trainer.optimizer.param_groups] == ["backbone", "new"]


def test_freeze_names_are_checked() -> None:
    from mdan_zoo.training import TrainConfig

    model = MDAN(get_taxonomy("fashion_mnist"), tiny_config(Path("/tmp")).model_config())
    assert freeze_prefixes(model, ["trunk"]) == ("backbone.",)
    assert freeze_prefixes(model, ["backbone.layer3"]) == ("backbone.layer3.",)
    assert set(FREEZE_PARTS) >= {"trunk", "trunk.layer4", "top_down", "top_down.level1"}
    with pytest.raises(ConfigError, match="classifier"):
        freeze_prefixes(model, ["local_heads"])
    with pytest.raises(ConfigError, match="neither a part"):
        freeze_prefixes(model, ["backbone.layer9"])
    with pytest.raises(ConfigError, match="unknown part 'trunk!'"):
        TrainConfig(freeze=["trunk!"])
    with pytest.raises(ConfigError, match="list of part names"):
        TrainConfig(freeze="trunk")  # type: ignore[arg-type]
