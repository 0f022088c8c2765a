"""L-CAM computes the CAMs M uses (issue 21) and gives what fusing all K CAMs gave.

The reference below is the pre-issue-21 formula, kept verbatim: every class's CAM at the
level's resolution, masked to the children of the predicted parent, the local logits read from
all K CAMs. Trees are small enough for both; float64 so that agreement is to rounding.
"""

from __future__ import annotations

import pytest
import torch

from mdan_zoo import MDAN, MDANConfig, Taxonomy
from mdan_zoo.layers import MHCCA, class_activation_maps, lcam_map, upsample_to
from mdan_zoo.model import LevelOutput, MDANOutput

SEMANTIC_LEVEL_E = (4, 3, 2)  # mapping (e), the one the reference below is written for


def generated_tree(sizes: tuple[int, ...], seed: int = 0) -> Taxonomy:
    """A tree with ``sizes`` classes per level, parents drawn at random (each parent keeps at
    least one child), so that children are not contiguous and counts differ."""
    gen = torch.Generator().manual_seed(seed)
    levels = [[f"l{d}c{i}" for i in range(n)] for d, n in enumerate(sizes)]
    parents = []
    for d in range(1, len(sizes)):
        above = sizes[d - 1]
        idx = torch.cat(
            [torch.arange(above), torch.randint(0, above, (sizes[d] - above,), generator=gen)]
        )
        idx = idx[torch.randperm(sizes[d], generator=gen)]
        parents.append({levels[d][i]: levels[d - 1][int(p)] for i, p in enumerate(idx)})
    return Taxonomy.from_levels(levels, parents, name="generated")


def reference_head(model: MDAN, features: dict, return_cams: bool) -> MDANOutput:
    """``MDAN.forward_head`` as it was before issue 21 (all K CAMs, masked)."""
    cfg, tax = model.config, model.taxonomy
    c5 = features["c5"]
    last = tax.num_levels - 1
    global_logits = model.global_head(c5.mean(dim=(2, 3)))
    p_g_fine = torch.softmax(global_logits, dim=1)
    global_probs = [model._sum_children(p_g_fine, d) for d in range(tax.num_levels)]
    levels = []
    f_prev = model.f5(c5)
    prev_choice = None
    for depth in range(tax.num_levels):
        c = features[f"c{SEMANTIC_LEVEL_E[depth]}"]
        up = upsample_to(f_prev, c.shape[-2:])
        lateral = model.laterals[depth]
        if isinstance(lateral, MHCCA):
            x = lateral(up, c, residual=up if cfg.upsample_add else None)
        else:
            x = lateral(c) + up if cfg.upsample_add else lateral(c)
        head = model.local_heads[depth]
        cams = class_activation_maps(x, head.weight) if (cfg.lcam or return_cams) else None
        m = None
        if cfg.lcam and cams is not None and (depth > 0 or cfg.lcam_root == "all"):
            if depth == 0 or prev_choice is None:
                keep = torch.ones(x.shape[0], tax.num_classes[depth], dtype=torch.bool)
            else:
                keep = getattr(model, f"_parent{depth}")[None, :] == prev_choice[:, None]
            m = lcam_map(
                cams, keep, use_mean=cfg.lcam_mean, use_max=cfg.lcam_max, norm=cfg.lcam_norm
            )
            if cfg.lcam_detach:
                m = m.detach()
        if m is not None and cams is not None:
            gain = (1.0 + m).flatten(1)[:, :, None]
            local_logits = torch.bmm(cams.flatten(2), gain)[:, :, 0] / gain.shape[1] + head.bias
            if depth < last:
                x = (1.0 + m) * x
        else:
            local_logits = head(x.mean(dim=(2, 3)))
        p_l = torch.softmax(local_logits, dim=1)
        p_o = cfg.alpha * p_l + (1.0 - cfg.alpha) * global_probs[depth]
        prev_choice = (p_l if cfg.lcam_parent == "local" else p_o).argmax(dim=1)
        levels.append(
            LevelOutput(
                name=tax.level_names[depth],
                labels=tax.labels[depth],
                probs=p_o,
                local_probs=p_l,
                global_probs=global_probs[depth],
                local_logits=local_logits,
                lcam=m[:, 0] if (return_cams and m is not None) else None,
                cams=cams if return_cams else None,
            )
        )
        f_prev = x
    return MDANOutput(levels=tuple(levels))


CONFIGS = {
    "paper": {},
    "root off": {"lcam_root": "off"},
    "overall parent": {"lcam_parent": "overall"},
    "mean only, sigmoid": {"lcam_max": False, "lcam_norm": "sigmoid"},
    "max only, raw": {"lcam_mean": False, "lcam_norm": "none"},
    "detach": {"lcam_detach": True},
}


def _model(sizes, changes, seed=0):
    torch.manual_seed(seed)
    cfg = MDANConfig.lite(backbone="resnet18", fpn_channels=16, heads=(1, 2, 2), **changes)
    return MDAN(generated_tree(sizes, seed), cfg).double().train()


def _features(model, batch=5, size=64, seed=1):
    x = torch.randn(
        batch, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    return {k: v.detach().requires_grad_() for k, v in model.forward_features(x).items()}


CASES = [((2, 7, 60), name) for name in CONFIGS] + [
    ((3, 40), "paper"),
    ((40,), "paper"),  # one level: every class is kept
    ((4, 30, 31), "root off"),  # most parents have one child
]


@pytest.mark.parametrize(("sizes", "name"), CASES)
def test_same_outputs_and_gradients_as_all_k_cams(sizes, name):
    model = _model(sizes, CONFIGS[name])
    feats = _features(model)
    got, want = model.forward_head(feats), reference_head(model, feats, False)
    loss_got = sum(lv.probs.log().sum() + lv.local_logits.square().sum() for lv in got)
    loss_want = sum(lv.probs.log().sum() + lv.local_logits.square().sum() for lv in want)
    params = [p for p in model.parameters() if p.requires_grad] + list(feats.values())
    g_got = torch.autograd.grad(loss_got, params, allow_unused=True)
    g_want = torch.autograd.grad(loss_want, params, allow_unused=True)
    for a, b in zip(got, want, strict=True):
        for field in ("probs", "local_probs", "global_probs", "local_logits"):
            torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=1e-9, atol=1e-12)
    for a, b in zip(g_got, g_want, strict=True):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["paper", "root off", "max only, raw"])
def test_same_attention_maps(name):
    model = _model((3, 9, 50), CONFIGS[name]).eval()
    feats = _features(model)
    with torch.no_grad():
        got = model.forward_head(feats, return_cams=True)
        plain = model.forward_head(feats)
        want = reference_head(model, feats, True)
    for a, b, c in zip(got, want, plain, strict=True):
        assert (a.lcam is None) == (b.lcam is None)
        if b.lcam is not None:
            torch.testing.assert_close(a.lcam, b.lcam, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(a.cams, b.cams)
        torch.testing.assert_close(c.probs, b.probs, rtol=1e-9, atol=1e-12)  # without maps too


def test_float32_within_1e6():
    torch.manual_seed(0)
    cfg = MDANConfig.lite(backbone="resnet18", fpn_channels=32)
    model = MDAN(generated_tree((3, 12, 200)), cfg).eval()
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        feats = model.forward_features(x)
        got, want = model.forward_head(feats), reference_head(model, feats, False)
    for a, b in zip(got, want, strict=True):
        for field in ("probs", "local_probs", "global_probs"):
            assert (getattr(a, field) - getattr(b, field)).abs().max() <= 1e-6


def test_only_the_childrens_cams_are_computed():
    """The finest level's product is [n, C] x [C, HW] for n = most children, not all K."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(sizes):
        tree = generated_tree(sizes)
        with torch.device("meta"):
            model = MDAN(tree, MDANConfig.lite(backbone="resnet18"))
        model.to("meta").eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, 224, 224, device="meta"))
        return counter.get_total_flops()

    small, large = flops((2, 6, 20)), flops((2, 300, 3000))
    assert large / small < 1.05  # all K CAMs: 3000 x 256 x 56 x 56 = 2.4 G more MACs (+50 %)


@pytest.mark.parametrize("bf16", [False, True])
def test_no_tensor_is_saved_twice_for_backward(bf16):
    """What autograd keeps for backward holds each activation once: no two saved storages
    with the same numbers (a copy or cast of a map saved beside it), and the finest level's
    top-down maps saved as two tensors at most (the upsampled F, which MHCCA's products need,
    and C' + F, the CAM input)."""
    torch.manual_seed(0)
    cfg = MDANConfig.lite(backbone="resnet18", fpn_channels=48)
    model = MDAN(generated_tree((2, 6, 40)), cfg).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    x = torch.randn(2, 3, 96, 96)
    seen: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen.setdefault(ptr, t)
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with hooks, torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        model(x)
    big = [t for t in seen.values() if t.numel() >= 4096]
    finest = [t for t in big if t.numel() == 2 * 48 * 24 * 24]
    assert 1 <= len(finest) <= 2, [tuple(t.shape) for t in finest]
    contents: dict[tuple, list[tuple]] = {}
    for t in big:
        flat = t.detach().float().flatten()
        key = (flat.numel(), round(float(flat.sum()), 3), round(float(flat.abs().sum()), 3))
        contents.setdefault(key, []).append((tuple(t.shape), t.dtype))
    twice = {k: v for k, v in contents.items() if len(v) > 1 and k[2] > 0}
    assert not twice, twice
