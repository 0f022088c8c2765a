"""timm's own model tests, run over every factory mdan_zoo registers with timm.

The bodies are those of timm's ``tests/test_models.py`` (forward, backward, default cfg,
forward_intermediates, features_only, torch.compile), parametrized over ``timm.list_models("mdan*")``
as timm parametrizes them over its models, with a ResNet-18 backbone at the lite width and small
inputs to stay fast. Where MDAN differs by design -- one output per level of the taxonomy instead
of one logits tensor, classes that come with a tree instead of ``num_classes`` -- the body checks the
MDAN reading of the same promise and says so.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import timm
import torch
from timm.layers import get_channel_dim, get_spatial_dim

import mdan_zoo
from mdan_zoo import MDAN, MDANConfig, get_taxonomy

SMALL = MDANConfig.lite(backbone="resnet18")
NAMES = timm.list_models("mdan*")
TARGET_FWD_SIZE = 96  # timm uses 384 / 128 / 96; MDAN at paper size is heavier than most


def _create(name: str, **kwargs: object) -> MDAN:
    if name == "mdan":  # the generic factory needs its tree
        kwargs.setdefault("taxonomy", "emotion6")
    return timm.create_model(name, pretrained=False, config=SMALL, **kwargs)


def _input(model: torch.nn.Module, batch: int, target: int = TARGET_FWD_SIZE) -> torch.Tensor:
    size = tuple(min(s, target) for s in model.default_cfg["input_size"])
    return torch.randn((batch, *size))


def test_every_factory_is_registered() -> None:
    assert sorted(["mdan", *mdan_zoo.list_models()]) == NAMES
    model = timm.create_model("mdan_fi", backbone="resnet18")  # the issue's own line
    assert isinstance(model, MDAN) and model.config.backbone == "resnet18"
    assert model.taxonomy.same_tree(get_taxonomy("fi"))


@pytest.mark.parametrize("model_name", NAMES)
def test_model_forward(model_name: str) -> None:
    """timm: one forward pass, no NaN; grad checkpointing leaves the output unchanged.
    MDAN: the output is one prediction per level."""
    model = _create(model_name).eval()
    inputs = _input(model, 1)
    outputs = model(inputs)
    assert len(outputs) == model.num_levels
    for level, classes in zip(outputs, model.num_classes, strict=True):
        assert level.probs.shape == (1, classes)
        assert not torch.isnan(level.probs).any(), "Output included NaNs"
    model.set_grad_checkpointing()
    outputs2 = model(inputs)
    for a, b in zip(outputs, outputs2, strict=True):
        assert torch.allclose(a.probs, b.probs, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.parametrize("model_name", NAMES)
def test_model_backward(model_name: str) -> None:
    """timm: every parameter gets a gradient. MDAN: through the paper's loss (Eq. 3) on every
    level; timm's ``num_classes=42`` has no MDAN meaning and is refused."""
    with pytest.raises(TypeError, match="num_classes"):
        _create(model_name, num_classes=42)
    model = _create(model_name).train()
    num_params = sum(x.numel() for x in model.parameters())
    inputs = _input(model, 2, target=64)
    outputs = model(inputs)
    model.loss(outputs, torch.tensor([0, model.num_classes[-1] - 1])).backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
        assert x.grad.abs().sum() > 0, f"Zero gradient for {n}"
    num_grad = sum(x.grad.numel() for x in model.parameters() if x.grad is not None)
    assert num_params == num_grad, "Some parameters are missing gradients"


@pytest.mark.parametrize("model_name", NAMES)
def test_model_default_cfgs(model_name: str) -> None:
    """timm's default-cfg test: sizes, pool size, classifier and first conv names.
    MDAN: forward_features is the trunk's maps (c5 is timm's unpooled features), and
    ``reset_classifier(0)`` is a TypeError (a taxonomy resets the heads)."""
    model = _create(model_name).eval()
    assert model.num_features > 0 and model.head_hidden_size == model.num_features
    state_dict = model.state_dict()
    cfg = model.default_cfg
    assert cfg == model.pretrained_cfg
    registered = timm.models.get_pretrained_cfg(model_name).to_dict()
    assert registered["architecture"] == model_name
    if model_name != "mdan":
        assert {k: registered[k] for k in cfg} == cfg
    pool_size = cfg["pool_size"]
    input_tensor = torch.randn((1, *cfg["input_size"]))
    outputs = model.forward_features(input_tensor)["c5"]
    assert outputs.shape[-2:] == pool_size, f"unpooled feature shape {outputs.shape} != config"
    assert outputs.shape[1] == model.num_features
    with pytest.raises(TypeError, match="Taxonomy"):
        model.reset_classifier(0)  # type: ignore[arg-type]
    model.reset_classifier("fashion_mnist")
    assert model.num_classes == get_taxonomy("fashion_mnist").num_classes
    assert model.pretrained_cfg["num_classes"] == model.num_classes[-1]
    classifier = model.pretrained_cfg["classifier"]
    state_dict = model.state_dict()
    for c in classifier:
        assert c + ".weight" in state_dict, f"{c} not in model params"
    assert cfg["first_conv"] + ".weight" in state_dict


def _check_maps(model: MDAN, maps: list[torch.Tensor], inputs: torch.Tensor) -> None:
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))  # timm checks it
    feat_axis, spatial_axis = get_channel_dim("NCHW"), get_spatial_dim("NCHW")
    assert len(info.channels()) == len(maps) >= 3
    for e, r, o in zip(info.channels(), info.reduction(), maps, strict=True):
        assert e == o.shape[feat_axis]
        assert o.shape[spatial_axis[0]] <= math.ceil(inputs.shape[-2] / r) + 1
        assert o.shape[spatial_axis[1]] <= math.ceil(inputs.shape[-1] / r) + 1
        assert o.shape[0] == inputs.shape[0]
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("model_name", NAMES)
def test_model_forward_intermediates(model_name: str) -> None:
    """timm's forward_intermediates test: channels and strides as feature_info says, the final
    output is forward_features' (C5), grad checkpointing changes nothing."""
    model = _create(model_name).eval()
    inpt = _input(model, 1)
    output, intermediates = model.forward_intermediates(inpt, output_fmt="NCHW")
    _check_maps(model, intermediates, inpt)
    assert torch.allclose(output, model.forward_features(inpt)["c5"])
    model.set_grad_checkpointing()
    output3, _ = model.forward_intermediates(inpt, output_fmt="NCHW")
    assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.parametrize("model_name", ["mdan_fi", "mdan_webemo"])
def test_model_forward_intermediates_features(model_name: str) -> None:
    """timm's features_only test: the FeatureGetterNet over forward_intermediates."""
    model = _create(model_name, features_only=True).eval()
    inpt = torch.randn(1, 3, 96, 96)
    outputs = model(inpt)
    _check_maps(model.model, outputs, inpt)
    assert model.feature_info.channels() == [o.shape[1] for o in outputs]
    last2 = _create(model_name, features_only=True, out_indices=(-2, -1)).eval()
    assert [o.shape[1] for o in last2(inpt)] == model.feature_info.channels()[-2:]


def test_torch_compile_matches_eager() -> None:
    """torch.compile (fullgraph: no graph break anywhere) gives the eager outputs, on the
    three-level model (every code path of the top-down branch); one model only: compiling is
    slow on a 2-core machine."""
    model = _create("mdan_webemo").eval()
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        eager = model(inputs)
        compiled = torch.compile(model, backend="eager", fullgraph=True)(inputs)
    for a, b in zip(eager, compiled, strict=True):
        assert torch.allclose(a.probs, b.probs, atol=1e-6)
        assert torch.allclose(a.local_logits, b.local_logits, atol=1e-5)


# ------------------------------------------------------------------ MDAN's own promises
def test_intermediates_are_the_maps_the_network_uses() -> None:
    """Each F map is the one its local classifier reads: GAP + the head give its logits (with
    L-CAM on, F carries (1 + M)); C2..C5 are forward_features'."""
    model = _create("mdan_webemo").eval()
    x = torch.randn(2, 3, 64, 64)
    maps = model.forward_intermediates(x, intermediates_only=True)
    named = {i["name"]: m for i, m in zip(model.feature_info, maps, strict=True)}
    assert [n for n in named if n.startswith("f")] == ["f2", "f3", "f4", "f5"]
    for key, c in model.forward_features(x).items():
        assert torch.equal(named[key], c)
    out = model(x)
    for depth, level in enumerate(out):
        f = named[f"f{4 - depth}"]
        logits = model.local_heads[depth](f.mean(dim=(2, 3)))
        assert torch.allclose(logits, level.local_logits, atol=1e-5)


def test_indices_and_intermediates_only_follow_timm() -> None:
    model = _create("mdan_fi").eval()
    x = torch.randn(1, 3, 64, 64)
    names = [i["name"] for i in model.feature_info]
    assert names == ["c2", "c3", "f3", "c4", "f4", "c5", "f5"]
    full = model.forward_intermediates(x, intermediates_only=True)
    assert isinstance(full, list) and len(full) == len(names)
    last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [t.shape for t in last2] == [t.shape for t in full[-2:]]
    picked = model.forward_intermediates(x, indices=[-1, 0, 0], intermediates_only=True)
    assert torch.equal(picked[0], full[0]) and torch.equal(picked[1], full[-1])
    final, early = model.forward_intermediates(x, indices=[0, 1], stop_early=True)
    assert final.shape[1] == model.channels["c3"]  # the trunk stopped after C3
    assert torch.equal(early[1], full[1])
    for bad, err in ((8, ValueError), (0, ValueError), ([7], ValueError), ("c2", TypeError)):
        with pytest.raises(err, match="indices|index"):
            model.forward_intermediates(x, indices=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_grad_checkpointing_changes_only_memory() -> None:
    """Same gradients (to 1e-6) and the same BatchNorm statistics after a training step, with
    fewer bytes saved for backward: each part (trunk, top-down branch) on its own."""
    torch.manual_seed(0)
    plain = _create("mdan_webemo").train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 24])

    def step(model: MDAN) -> int:
        saved = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model.loss(model(x), y)
        loss.backward()
        return saved[0]

    before = copy.deepcopy(plain.state_dict())
    reference = step(plain)
    grads = {n: p.grad for n, p in plain.named_parameters()}
    for backbone, top_down in ((True, False), (False, True), (True, True)):
        model = copy.deepcopy(plain)
        model.zero_grad(set_to_none=True)
        model.set_grad_checkpointing(backbone=backbone, top_down=top_down)
        assert model.grad_checkpointing
        model.load_state_dict(before)
        saved = step(model)
        assert saved < reference, (backbone, top_down)
        for n, p in model.named_parameters():
            assert p.grad is not None
            assert (p.grad - grads[n]).abs().max() <= 1e-6, n
        after, want = model.state_dict(), plain.state_dict()
        assert all(torch.equal(after[k], want[k]) for k in want if "running" in k or "tracked" in k)
    model.set_grad_checkpointing(False)
    assert not model.grad_checkpointing


def test_registration_needs_no_timm_import() -> None:
    """``import mdan_zoo`` leaves timm unimported; importing timm later (or before) registers
    the factories."""
    code = (
        "import sys, mdan_zoo\n"
        "assert 'timm' not in sys.modules and 'torch' not in sys.modules\n"
        "import timm\n"
        "assert 'mdan_fi' in timm.list_models('mdan*'), timm.list_models('mdan*')\n"
        "print(type(timm.create_model('mdan_iaps', backbone='resnet18')).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "MDAN"
