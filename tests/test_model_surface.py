"""timm's model surface on MDAN: forward_intermediates (indices, intermediates_only, stop_early),
feature_info, num_features, set_grad_checkpointing on the trunk and the top-down branch, and
reset_classifier taking a taxonomy. (tests/test_timm.py runs timm's own test bodies.)"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models import FeatureInfo  # timm's own check of a feature_info

from mdan_zoo import MDAN, MDANConfig, get_taxonomy

SMALL = MDANConfig.lite(backbone="resnet18", fpn_channels=32)


def _model(taxonomy: str, **changes: object) -> MDAN:
    torch.manual_seed(0)
    return MDAN(get_taxonomy(taxonomy), SMALL.replace(**changes)).eval()


@pytest.mark.parametrize("taxonomy", ["emotion6", "webemo", "fashion_mnist"])
def test_feature_info_is_what_forward_intermediates_returns(taxonomy: str) -> None:
    model = _model(taxonomy)
    info = model.feature_info
    FeatureInfo(info, len(info))  # timm's sanity checks: channels > 0, strides non-decreasing
    x = torch.randn(2, 3, 64, 64)
    final, maps = model.forward_intermediates(x)
    assert torch.equal(final, model.forward_features(x)["c5"])
    assert final.shape[1] == model.num_features == model.head_hidden_size == 512
    assert len(maps) == len(info)
    for entry, m in zip(info, maps, strict=True):
        assert m.shape == (2, entry["num_chs"], 64 // entry["reduction"], 64 // entry["reduction"])
        assert model.get_submodule(entry["module"]) is not None
    names = [entry["name"] for entry in info]
    assert [n for n in names if n.startswith("c")] == ["c2", "c3", "c4", "c5"]
    assert sorted(n for n in names if n.startswith("f")) == sorted(
        ["f5", *(f"f{4 - d}" for d in range(model.num_levels))]
    )


@pytest.mark.parametrize("lcam", [True, False])
def test_the_f_maps_are_those_the_local_classifiers_read(lcam: bool) -> None:
    """GAP of each F map through its level's local classifier gives that level's logits (with
    L-CAM, F carries (1 + M)); C2..C5 are forward_features'."""
    model = _model("webemo", lcam=lcam)
    x = torch.randn(2, 3, 64, 64)
    maps = model.forward_intermediates(x, intermediates_only=True)
    named = {entry["name"]: m for entry, m in zip(model.feature_info, maps, strict=True)}
    for key, c in model.forward_features(x).items():
        assert torch.equal(named[key], c)
    with torch.no_grad():
        out = model(x)
    for depth, level in enumerate(out):
        logits = model.local_heads[depth](named[f"f{4 - depth}"].mean(dim=(2, 3)))
        assert torch.allclose(logits, level.local_logits, atol=1e-5)


def test_indices_intermediates_only_and_stop_early_follow_timm() -> None:
    model = _model("fi")
    x = torch.randn(1, 3, 64, 64)
    names = [entry["name"] for entry in model.feature_info]
    assert names == ["c2", "c3", "f3", "c4", "f4", "c5", "f5"]
    full = model.forward_intermediates(x, intermediates_only=True)
    assert isinstance(full, list) and len(full) == 7
    last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(last2, full[-2:], strict=True))
    picked = model.forward_intermediates(x, indices=[-1, 0, 0], intermediates_only=True)
    assert len(picked) == 2 and torch.equal(picked[0], full[0]) and torch.equal(picked[1], full[-1])
    final, early = model.forward_intermediates(x, indices=[0, 1], stop_early=True)
    assert final.shape[1] == model.channels["c3"]  # the trunk stopped after C3
    assert torch.equal(early[1], full[1])
    final, _ = model.forward_intermediates(x, indices=[0, 1])  # without stop_early: C5
    assert final.shape[1] == model.num_features
    for bad, err in ((8, ValueError), (0, ValueError), ([7], ValueError), ("c2", TypeError)):
        with pytest.raises(err, match="indices|index"):
            model.forward_intermediates(x, indices=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")


def _step(model: MDAN, x: torch.Tensor, y: torch.Tensor) -> int:
    """One training step; returns the bytes autograd saved for backward."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.loss(model(x), y)
    loss.backward()
    return saved[0]


@pytest.mark.parametrize(
    ("backbone", "top_down"), [(True, False), (False, True), (True, True)], ids=str
)
def test_grad_checkpointing_changes_only_memory(backbone: bool, top_down: bool) -> None:
    """Same gradients (to 1e-6) and the same BatchNorm statistics after a training step, and
    fewer bytes saved for backward, for each part on its own and both."""
    plain = _model("webemo").train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 24])
    before = copy.deepcopy(plain.state_dict())
    reference = _step(plain, x, y)
    model = copy.deepcopy(plain)
    model.load_state_dict(before)
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(backbone=backbone, top_down=top_down)
    assert model.grad_checkpointing
    assert model.backbone.grad_checkpointing is backbone
    assert _step(model, x, y) < reference
    grads = dict(plain.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None and grads[name].grad is not None
        assert (p.grad - grads[name].grad).abs().max() <= 1e-6, name
    after, want = model.state_dict(), plain.state_dict()
    stats = [k for k in want if "running" in k or "num_batches_tracked" in k]
    assert stats and all(torch.equal(after[k], want[k]) for k in stats)
    model.set_grad_checkpointing(False)
    assert not model.grad_checkpointing
    with torch.no_grad():  # inference ignores it
        model.set_grad_checkpointing()
        assert torch.equal(model.eval()(x)[-1].probs, plain.eval()(x)[-1].probs)


def test_reset_classifier_takes_a_taxonomy_by_name_or_object() -> None:
    model = _model("fi")
    model.reset_classifier("emotion6")
    assert model.num_classes == get_taxonomy("emotion6").num_classes
    assert [e["name"] for e in model.feature_info][-2:] == ["c5", "f5"]
    model.reset_classifier(get_taxonomy("webemo"))
    assert model.num_levels == 3 and model(torch.randn(1, 3, 64, 64))[-1].probs.shape == (1, 25)
    assert "f2" in [e["name"] for e in model.feature_info]
    for bad in (10, None, ["a", "b"]):
        with pytest.raises(TypeError, match="reset_classifier.*Taxonomy.*num_classes"):
            model.reset_classifier(bad)  # type: ignore[arg-type]


def test_pretrained_cfg_names_the_heads_and_the_stem() -> None:
    model = _model("webemo")
    cfg = model.pretrained_cfg
    assert cfg == model.default_cfg
    state = model.state_dict()
    assert cfg["classifier"] == ("global_head", "local_heads.0", "local_heads.1", "local_heads.2")
    assert all(f"{c}.weight" in state for c in (*cfg["classifier"], cfg["first_conv"]))
    assert cfg["num_classes"] == 25 and cfg["pool_size"] == (14, 14)  # 448 / 32
