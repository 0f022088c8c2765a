"""MDAN network: probabilities, Eq. 2, P_O, L-CAM parent selection, config switches, gradients,
1-3 levels, odd input sizes, MHCCA vs a naive per-head reference, the loss of Eq. 3."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mdan_zoo import MDAN, MDANConfig, Taxonomy, get_taxonomy, mdan_loss
from mdan_zoo.layers import MHCCA, class_activation_maps, lcam_map, upsample_to

SMALL = MDANConfig(backbone="resnet18", fpn_channels=32)

TREE3 = get_taxonomy("fashion_mnist")  # 2 -> 4 -> 10, real three-level tree
TREE2 = Taxonomy.from_nested({"pos": ["joy", "awe", "zest"], "neg": ["fear", "anger"]})
TREE1 = Taxonomy.from_nested(["cat", "dog", "bird"])


_BUILT: dict[tuple[str, MDANConfig], MDAN] = {}


def _model(tax: Taxonomy = TREE3, cfg: MDANConfig = SMALL) -> MDAN:
    """A fresh copy of a seeded model (built once per tree and config: builds are the slow part)."""
    key = (tax.fingerprint(), cfg)
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = MDAN(tax, cfg).eval()
    return copy.deepcopy(_BUILT[key])


def _images(n: int = 2, h: int = 64, w: int | None = None) -> torch.Tensor:
    return torch.randn(n, 3, h, w or h, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------------- probabilities
@pytest.mark.parametrize("tax", [TREE1, TREE2, TREE3], ids=["1-level", "2-level", "3-level"])
def test_probabilities_per_level(tax: Taxonomy) -> None:
    model = _model(tax)
    with torch.inference_mode():
        out = model(_images(3))
    assert len(out) == tax.num_levels == len(model.laterals) == len(model.local_heads)
    fine_g = out[-1].global_probs
    for depth, lv in enumerate(out):
        assert lv.labels == tax.labels[depth] and lv.name == tax.level_names[depth]
        for p in (lv.probs, lv.local_probs, lv.global_probs):
            assert p.shape == (3, tax.num_classes[depth])
            assert (p >= 0).all()
            torch.testing.assert_close(p.sum(1), torch.ones(3))
        # Eq. 2 by hand: a coarse global probability is the sum over its fine descendants.
        want = torch.zeros(3, tax.num_classes[depth])
        for k in range(tax.num_classes[-1]):
            want[:, tax.ancestor_indices(k)[depth]] += fine_g[:, k]
        torch.testing.assert_close(lv.global_probs, want)
        # P_O = alpha P_L + (1 - alpha) P_G (Sec. 3.2).
        torch.testing.assert_close(lv.probs, 0.7 * lv.local_probs + 0.3 * lv.global_probs)
        torch.testing.assert_close(lv.local_probs, torch.softmax(lv.local_logits, 1))
        assert (lv.global_logits is not None) == (depth == tax.num_levels - 1)
    torch.testing.assert_close(fine_g, torch.softmax(out[-1].global_logits, 1))
    assert out.probs[0] is out[0].probs and len(out.local_probs) == len(out.global_probs)


def test_eq2_on_a_large_tree_sums_children_without_a_dense_matrix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eq. 2 through ``index_add`` (the path of trees too large for a one-hot matrix) gives
    the matrix product's probabilities; a legal 30,000 x 30,000-class tree then builds with
    index buffers of a few hundred KB instead of 3.6 GB matrices."""
    import mdan_zoo.model as model_module

    with torch.inference_mode():
        dense = _model(TREE3)(_images(3))
        monkeypatch.setattr(model_module, "AGG_MATRIX_MAX", 0)
        torch.manual_seed(0)
        sparse_model = MDAN(TREE3, SMALL).eval()
        assert all(getattr(sparse_model, f"_agg{d}") is None for d in range(3))
        sparse = sparse_model(_images(3))
    for a, b in zip(dense, sparse, strict=True):
        torch.testing.assert_close(a.global_probs, b.global_probs)
        torch.testing.assert_close(a.probs, b.probs)
    monkeypatch.undo()
    n = 30_000
    wide = Taxonomy.from_levels(
        [[f"c{i}" for i in range(n)], [f"f{i}" for i in range(n)]],
        parents=[{f"f{i}": f"c{i}" for i in range(n)}],
    )
    with torch.device("meta"):
        big = MDAN(wide, MDANConfig.lite(backbone="resnet18"))
    held = sum(b.numel() * b.element_size() for b in big.buffers() if b.device.type == "cpu")
    assert held < 2_000_000  # index tables (L-CAM's children too); was 2 x 3.6 GB of matrices


def test_global_branch_reads_gap_of_c5() -> None:
    model = _model()
    x = _images()
    with torch.inference_mode():
        feats = model.forward_features(x)
        out = model.forward_head(feats)
        want = model.global_head(feats["c5"].mean(dim=(2, 3)))
    assert [f.shape[1] for f in feats.values()] == [64, 128, 256, 512]
    torch.testing.assert_close(out[-1].global_logits, want)


def test_heads_longer_than_levels_are_fine_shorter_fail() -> None:
    assert len(_model(TREE2, SMALL.replace(heads=(2, 4, 8))).laterals) == 2
    with pytest.raises(ValueError, match="one MHCCA head count per level"):
        MDAN(TREE3, SMALL.replace(heads=(2, 4)))


def test_targets_from_fine_follow_the_tree() -> None:
    model = _model()
    fine = torch.arange(10)
    targets = model.targets_from_fine(fine)
    for k in range(10):
        assert tuple(int(t[k]) for t in targets) == TREE3.ancestor_indices(k)


# ---------------------------------------------------------------------- loss (Eq. 3)
def test_loss_is_mean_over_levels_of_minus_log_po() -> None:
    model = _model()
    with torch.inference_mode():
        out = model(_images(4))
    fine = torch.tensor([0, 7, 8, 3])
    paths = [TREE3.ancestor_indices(int(k)) for k in fine]
    total = 0.0
    for depth in range(3):
        total += -sum(math.log(float(out[depth].probs[j, paths[j][depth]])) for j in range(4)) / 4
    want = total / 3
    assert float(model.loss(out, fine)) == pytest.approx(want, rel=1e-5)
    per_level = [torch.tensor([p[d] for p in paths]) for d in range(3)]
    assert float(mdan_loss(out, per_level)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="need targets for 3 levels"):
        mdan_loss(out, per_level[:2])


def test_loss_clamps_zero_probabilities() -> None:
    model = _model(TREE1)
    with torch.inference_mode():
        out = model(_images(1))
    out[0].probs = torch.tensor([[1.0, 0.0, 0.0]])
    loss = float(mdan_loss(out, [torch.tensor([1])], eps=1e-8))
    assert loss == pytest.approx(-math.log(1e-8), rel=1e-6)


# ---------------------------------------------------------------------- MHCCA (Eq. 4)
def _naive_mhcca(m: MHCCA, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Eq. 4 head by head, straight from the paper: softmax(Q(F)_h C_h^T / sqrt(d)) C_h, then O."""
    b, _, hh, ww = c.shape
    n = hh * ww
    d = math.ceil(n / m.heads)
    q = m.q(f).flatten(2)
    k = (m.k(c) if m.k is not None else c).flatten(2)
    v = (m.v(c) if m.v is not None else c).flatten(2)
    out = torch.zeros(b, q.shape[1], n, dtype=f.dtype)
    for i in range(m.heads):
        cols = slice(i * d, min((i + 1) * d, n))
        for j in range(b):
            attn = torch.softmax(q[j][:, cols] @ k[j][:, cols].T / math.sqrt(d), dim=-1)
            out[j][:, cols] = attn @ v[j][:, cols]
    return m.o(out.reshape(b, -1, hh, ww))


@pytest.mark.parametrize(
    ("hw", "c_low", "heads", "kv"),
    [
        ((8, 8), 16, 2, False),  # direct path (h * C^L >= HW)
        ((16, 16), 8, 4, False),  # folded path (h * C^L < HW)
        ((7, 9), 16, 4, False),  # HW = 63 not divisible by 4: padded, direct
        ((13, 11), 4, 5, False),  # HW = 143 not divisible by 5: padded, folded
        ((12, 12), 8, 1, True),  # one head, K/V projections, folded
        ((6, 5), 8, 4, True),  # K/V projections, padded, direct
    ],
)
def test_mhcca_equals_naive_per_head_reference(hw, c_low: int, heads: int, kv: bool) -> None:
    torch.manual_seed(0)
    m = MHCCA(12, c_low, 10, heads, kv_proj=kv).double()
    f = torch.randn(2, 12, *hw, dtype=torch.double)
    c = torch.randn(2, c_low, *hw, dtype=torch.double)
    with torch.no_grad():
        want = _naive_mhcca(m, f, c)
        for fold in (None, True, False):  # automatic choice, and both evaluation orders forced
            m.fold = fold
            got = m(f, c)
            assert got.shape == (2, 10, *hw)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_mhcca_attends_over_channels_not_positions() -> None:
    """Permuting the channels of C (keys and values together) leaves C' unchanged."""
    torch.manual_seed(0)
    m = MHCCA(6, 8, 6, 2).double()
    f, c = torch.randn(1, 6, 4, 4, dtype=torch.double), torch.randn(1, 8, 4, 4, dtype=torch.double)
    perm = torch.randperm(8)
    with torch.no_grad():
        torch.testing.assert_close(m(f, c), m(f, c[:, perm]))


def test_mhcca_needs_matching_resolution() -> None:
    m = MHCCA(4, 4, 4, 2)
    with pytest.raises(ValueError, match="at C's resolution"):
        m(torch.randn(1, 4, 4, 4), torch.randn(1, 4, 8, 8))


@pytest.mark.parametrize(
    ("hw", "c_low", "heads", "folded"),
    [((4, 4), 8, 2, False), ((6, 6), 2, 4, True), ((3, 5), 8, 2, False), ((5, 5), 2, 3, True)],
    ids=["direct", "folded", "direct-padded", "folded-padded"],
)
def test_mhcca_with_autograd_equals_the_reference_and_its_gradients_check(
    hw, c_low: int, heads: int, folded: bool
) -> None:
    """The autograd path (training) against Eq. 4 + UpsampleAdd by hand, and gradcheck."""
    torch.manual_seed(0)
    m = MHCCA(6, c_low, 6, heads).double()
    f = torch.randn(2, 6, *hw, dtype=torch.double, requires_grad=True)
    c = torch.randn(2, c_low, *hw, dtype=torch.double, requires_grad=True)
    assert (heads * c_low < hw[0] * hw[1]) == folded  # the path this case is meant to run
    got = m(f, c, residual=f)
    torch.testing.assert_close(got, _naive_mhcca(m, f, c) + f, rtol=1e-10, atol=1e-10)
    assert got.requires_grad
    assert torch.autograd.gradcheck(lambda a, b: m(a, b, residual=a), (f, c))


def test_mhcca_reuse_residual_writes_into_it_only_without_autograd() -> None:
    torch.manual_seed(0)
    m = MHCCA(6, 4, 6, 2).double()
    f, c = torch.randn(1, 6, 6, 6, dtype=torch.double), torch.randn(1, 4, 6, 6, dtype=torch.double)
    want = _naive_mhcca(m, f, c) + f
    for fold in (True, False):
        m.fold = fold
        buf = f.clone()
        with torch.no_grad():
            got = m(buf, c, residual=buf, reuse_residual=True)
        assert got.data_ptr() == buf.data_ptr()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        buf = f.clone()  # with autograd the residual is left alone
        torch.testing.assert_close(m(buf, c, residual=buf, reuse_residual=True), want)
        torch.testing.assert_close(buf, f)


@pytest.mark.parametrize("hw", [(2, 2), (3, 7), (14, 14)])
def test_upsample_to_twice_the_size_equals_bilinear_interpolate(hw) -> None:
    x = torch.randn(2, 3, *hw, dtype=torch.double, requires_grad=True)
    size = (2 * hw[0], 2 * hw[1])
    want = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_to(x, size), want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: upsample_to(t, size), (x,))
    odd = (2 * hw[0] + 1, 2 * hw[1])  # any other size: F.interpolate itself
    torch.testing.assert_close(
        upsample_to(x, odd),
        nn.functional.interpolate(x, size=odd, mode="bilinear", align_corners=False),
    )


def test_lcam_level_logits_are_the_classifier_on_gap_of_the_attended_map() -> None:
    """Eq. 1 on (1 + M) ⊙ x, whichever way forward_head evaluates it (through the CAMs)."""
    model = _model(TREE2)
    x = _images()
    with torch.inference_mode():
        feats = model.forward_features(x)
        out = model.forward_head(feats)
        up = nn.functional.interpolate(
            model.f5(feats["c5"]), size=feats["c4"].shape[-2:], mode="bilinear"
        )
        x0 = model.laterals[0](up, feats["c4"]) + up
        head = model.local_heads[0]
        keep = torch.ones(2, 2, dtype=torch.bool)
        m = lcam_map(class_activation_maps(x0, head.weight), keep)
        want = head(((1 + m) * x0).mean(dim=(2, 3)))
    torch.testing.assert_close(out[0].local_logits, want, rtol=1e-4, atol=1e-4)


def test_probabilities_stay_float32_under_bf16_autocast() -> None:
    """Eq. 2 and P_O in float32 under autocast (Sec. 3.2 sums up to 25 children)."""
    model = _model()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_images(2))
    fine = out[-1].global_probs
    assert out[-1].global_logits is not None and out[-1].global_logits.dtype == torch.bfloat16
    torch.testing.assert_close(fine, torch.softmax(out[-1].global_logits.float(), 1))
    for depth, lv in enumerate(out):
        assert lv.probs.dtype == lv.local_probs.dtype == lv.global_probs.dtype == torch.float32
        want = torch.zeros(2, TREE3.num_classes[depth])
        for k in range(TREE3.num_classes[-1]):
            want[:, TREE3.ancestor_indices(k)[depth]] += fine[:, k]
        torch.testing.assert_close(lv.global_probs, want, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(lv.probs, 0.7 * lv.local_probs + 0.3 * lv.global_probs)
        torch.testing.assert_close(lv.probs.sum(1), torch.ones(2), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- L-CAM (Sec. 4.2)
def test_lcam_map_mean_plus_max_of_kept_classes() -> None:
    cams = torch.randn(2, 4, 3, 3, dtype=torch.double)
    keep = torch.tensor([[True, False, True, False], [False, True, False, False]])
    got = lcam_map(cams, keep, norm="none")
    for j, idx in enumerate(([0, 2], [1])):
        sel = cams[j, idx]
        torch.testing.assert_close(got[j, 0], sel.mean(0) + sel.amax(0))
    mean_only = lcam_map(cams, keep, use_max=False, norm="none")
    torch.testing.assert_close(mean_only[0, 0], cams[0, [0, 2]].mean(0))
    mm = lcam_map(cams, keep)
    assert mm.amin() == 0.0 and float(mm.flatten(1).amax(1).min()) == pytest.approx(1.0)
    torch.testing.assert_close(lcam_map(cams, keep, norm="sigmoid"), torch.sigmoid(got))
    with pytest.raises(ValueError, match="unknown L-CAM norm"):
        lcam_map(cams, keep, norm="l2")


def test_cams_use_the_classifier_weights_without_bias() -> None:
    feat, w = torch.randn(2, 5, 3, 4), torch.randn(3, 5)
    cams = class_activation_maps(feat, w)
    torch.testing.assert_close(cams[1, 2, 0, 3], (w[2] * feat[1, :, 0, 3]).sum())


def _force_level0(model: MDAN, choice: int, margin: float) -> None:
    """Make P_L at level 0 pick ``choice`` through the classifier bias only (CAMs use no bias)."""
    with torch.no_grad():
        head = model.local_heads[0]
        head.weight.mul_(1e-3)  # keep the level-0 logits small, so the bias decides
        head.bias.zero_()
        head.bias[choice] = margin


def _level1_with_parent(cfg: MDANConfig, choice: int, margin: float = 50.0):
    model = _model(TREE3, cfg)
    _force_level0(model, choice, margin)
    with torch.inference_mode():
        return model(_images(2), return_cams=True)


def test_lcam_uses_the_children_of_the_predicted_parent() -> None:
    out_a = _level1_with_parent(SMALL, 0)  # clothing -> {tops, bottoms_and_dresses}
    out_b = _level1_with_parent(SMALL, 1)  # footwear_and_bags -> {shoes, bags}
    assert (out_a[0].local_probs.argmax(1) == 0).all() and (
        out_b[0].local_probs.argmax(1) == 1
    ).all()
    # Level 0 itself is identical: only the bias changed and the CAMs use the weights alone.
    torch.testing.assert_close(out_a[0].lcam, out_b[0].lcam)
    torch.testing.assert_close(out_a[1].cams, out_b[1].cams)
    # The level-1 map is mean + max of the CAMs of exactly the predicted parent's children.
    for out, kids in ((out_a, [0, 1]), (out_b, [2, 3])):
        assert TREE3.children(0, int(out[0].local_probs.argmax(1)[0])) == kids
        keep = torch.zeros(2, 4, dtype=torch.bool)
        keep[:, kids] = True
        torch.testing.assert_close(out[1].lcam, lcam_map(out[1].cams, keep)[:, 0])
    # ... so the wrong parent changes the local result at level 1 and everything below.
    assert not torch.allclose(out_a[1].lcam, out_b[1].lcam)
    assert (out_a[1].local_probs - out_b[1].local_probs).abs().max() > 1e-4
    assert (out_a[2].local_probs - out_b[2].local_probs).abs().max() > 1e-4


def test_lcam_depends_only_on_which_parent_not_on_its_probability() -> None:
    """Same predicted parent (same children set), different P_L^0: level 1 must not change."""
    out_a = _level1_with_parent(SMALL, 1, margin=50.0)
    out_b = _level1_with_parent(SMALL, 1, margin=3.0)
    assert not torch.allclose(out_a[0].local_probs, out_b[0].local_probs)
    torch.testing.assert_close(out_a[1].local_probs, out_b[1].local_probs)
    torch.testing.assert_close(out_a[2].local_probs, out_b[2].local_probs)


def test_without_lcam_the_parent_does_not_matter() -> None:
    cfg = SMALL.replace(lcam=False)
    out_a, out_b = _level1_with_parent(cfg, 0), _level1_with_parent(cfg, 1)
    torch.testing.assert_close(out_a[1].local_probs, out_b[1].local_probs)
    assert out_a[1].lcam is None and out_a[1].cams is not None  # CAMs still returned on request


def test_lcam_parent_overall_follows_po() -> None:
    """With lcam_parent='overall' the children come from argmax P_O, not argmax P_L."""
    cfg = SMALL.replace(lcam_parent="overall", alpha=0.1)
    model = _model(TREE3, cfg)
    _force_level0(model, 0, margin=50.0)  # P_L^0 says clothing ...
    with torch.no_grad():  # ... P_G says footwear_and_bags (fine classes 5, 7, 8, 9)
        model.global_head.weight.zero_()
        model.global_head.bias.fill_(-50.0)
        model.global_head.bias[[5, 7, 8, 9]] = 50.0
    with torch.inference_mode():
        out = model(_images(2), return_cams=True)
    assert (out[0].local_probs.argmax(1) == 0).all() and (out[0].probs.argmax(1) == 1).all()
    keep = torch.zeros(2, 4, dtype=torch.bool)
    keep[:, [2, 3]] = True
    torch.testing.assert_close(out[1].lcam, lcam_map(out[1].cams, keep)[:, 0])


# ---------------------------------------------------------------------- config switches
def _param_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.named_parameters()}


def _outputs_with_shared_weights(base: MDAN, other: MDAN) -> tuple[list, list]:
    """Copy every parameter the two models share into ``other``; return both P_O lists."""
    shared = {k: v for k, v in base.state_dict().items() if k in other.state_dict()}
    missing = [k for k in other.state_dict() if k not in shared]
    other.load_state_dict({**other.state_dict(), **shared})
    assert set(missing) == set(other.state_dict()) - set(base.state_dict())
    x = _images()
    with torch.inference_mode():
        return base(x).probs, other(x).probs


def _differs(a: list, b: list) -> bool:
    return any((p - q).abs().max() > 1e-5 for p, q in zip(a, b, strict=True))


BASE = _model()
BASE_PARAMS = _param_shapes(BASE)


def test_mhcca_off_swaps_attention_for_a_plain_lateral_conv() -> None:
    other = _model(cfg=SMALL.replace(mhcca=False))
    params = _param_shapes(other)
    removed = set(BASE_PARAMS) - set(params)
    added = set(params) - set(BASE_PARAMS)
    assert removed == {
        f"laterals.{i}.{p}.{t}" for i in range(3) for p in "qo" for t in ("weight", "bias")
    }
    assert added == {f"laterals.{i}.{t}" for i in range(3) for t in ("weight", "bias")}
    # C4, C3, C2 of resnet18 have 256, 128, 64 channels; the lateral maps them to the FPN width.
    assert [params[f"laterals.{i}.weight"] for i in range(3)] == [
        (32, c, 1, 1) for c in (256, 128, 64)
    ]
    assert not any(isinstance(m, MHCCA) for m in other.modules())
    assert _differs(*_outputs_with_shared_weights(BASE, other))


def test_kv_proj_adds_exactly_k_and_v() -> None:
    other = _model(cfg=SMALL.replace(mhcca_kv_proj=True))
    params = _param_shapes(other)
    assert set(BASE_PARAMS) <= set(params)
    added = {k: v for k, v in params.items() if k not in BASE_PARAMS}
    want = {}
    for i, c in enumerate((256, 128, 64)):
        for p in "kv":
            want[f"laterals.{i}.{p}.weight"] = (c, c, 1, 1)
            want[f"laterals.{i}.{p}.bias"] = (c,)
    assert added == want
    base_po, other_po = _outputs_with_shared_weights(BASE, other)
    assert _differs(base_po, other_po)
    # With K = V = identity the variant computes exactly the paper's (no-projection) model.
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name in want:
                p.copy_(torch.eye(p.shape[0])[:, :, None, None] if p.ndim == 4 else 0.0)
    with torch.inference_mode():
        ident = other(_images()).probs
    for a, b in zip(base_po, ident, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "changes",
    [
        {"upsample_add": False},
        {"lcam": False},
        {"lcam_mean": False},
        {"lcam_max": False},
        {"lcam_root": "off"},
        {"lcam_norm": "sigmoid"},
        {"heads": (1, 2, 3)},
        {"alpha": 0.4},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_switches_without_parameters_change_the_output_only(changes: dict) -> None:
    other = _model(cfg=SMALL.replace(**changes))
    assert _param_shapes(other) == BASE_PARAMS
    base_po, other_po = _outputs_with_shared_weights(BASE, other)
    assert _differs(base_po, other_po)


def test_lcam_root_off_leaves_level0_without_a_map() -> None:
    x = _images()
    other = _model(cfg=SMALL.replace(lcam_root="off"))
    other.load_state_dict(BASE.state_dict())
    with torch.inference_mode():
        a, b = BASE(x, return_cams=True), other(x, return_cams=True)
    assert a[0].lcam is not None and b[0].lcam is None and b[1].lcam is not None
    # Level 0 of the root-off model classifies GAP(C'4 + Up(F5)) with no attention map.
    with torch.inference_mode():
        feats = other.forward_features(x)
        up = nn.functional.interpolate(
            other.f5(feats["c5"]), size=feats["c4"].shape[-2:], mode="bilinear"
        )
        plain = other.local_heads[0]((other.laterals[0](up, feats["c4"]) + up).mean(dim=(2, 3)))
    torch.testing.assert_close(b[0].local_logits, plain)
    assert (a[0].local_probs - b[0].local_probs).abs().max() > 1e-5


def test_upsample_add_off_classifies_the_attended_map_alone() -> None:
    """upsample_add=False: F_ls = C'_ls; so the level-0 map is MHCCA's output itself."""
    cfg = SMALL.replace(upsample_add=False, lcam=False)
    model = _model(cfg=cfg)
    x = _images()
    with torch.inference_mode():
        feats = model.forward_features(x)
        out = model(x)
        f5 = model.f5(feats["c5"])
        up = nn.functional.interpolate(f5, size=feats["c4"].shape[-2:], mode="bilinear")
        lat = model.laterals[0](up, feats["c4"])
        want = model.local_heads[0](lat.mean(dim=(2, 3)))
    torch.testing.assert_close(out[0].local_logits, want)


def test_fpn_width_sets_the_top_down_channels() -> None:
    model = _model(cfg=SMALL.replace(fpn_channels=16))
    assert model.f5.weight.shape == (16, 512, 1, 1)
    assert all(h.weight.shape[1] == 16 for h in model.local_heads)


# ---------------------------------------------------------------------- training signal
def test_gradients_reach_every_trainable_parameter() -> None:
    model = MDAN(TREE3, SMALL).train()
    x = _images(4, 96)  # C2 is 24 x 24: the folded MHCCA path runs at level 3
    loss = model.loss(model(x), torch.tensor([0, 5, 8, 3]))
    loss.backward()
    no_grad = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []
    assert sum(1 for _ in model.parameters()) > 60


def test_param_groups_split_backbone_and_new_layers() -> None:
    groups = BASE.param_groups()
    assert len(groups["backbone"]) + len(groups["new"]) == len(list(BASE.parameters()))
    names = {id(p): n for n, p in BASE.named_parameters()}
    assert all(names[id(p)].startswith("backbone.") for p in groups["backbone"])
    assert not any(names[id(p)].startswith("backbone.") for p in groups["new"])


# ---------------------------------------------------------------------- input sizes
@pytest.mark.parametrize(
    ("hw", "heads"),
    [
        ((224, 224), (2, 4, 8)),
        ((97, 131), (2, 4, 8)),
        ((225, 225), (2, 4, 8)),
        ((97, 131), (3, 5, 7)),
    ],
)
def test_any_input_size_works(hw: tuple[int, int], heads: tuple[int, ...]) -> None:
    model = _model(cfg=SMALL.replace(heads=heads))
    with torch.inference_mode():
        feats = model.forward_features(_images(1, *hw))
        out = model.forward_head(feats, return_cams=True)
    sizes = [feats[f"c{s}"].shape[-2:] for s in (4, 3, 2)]
    # Some level has H*W not divisible by its head count (so the padding path runs).
    assert any((s[0] * s[1]) % h for s, h in zip(sizes, heads, strict=True)) or hw == (224, 224)
    for lv, size in zip(out, sizes, strict=True):
        assert lv.lcam is not None and lv.lcam.shape[-2:] == size
        assert torch.isfinite(lv.probs).all()
        torch.testing.assert_close(lv.probs.sum(1), torch.ones(1))


# ---------------------------------------------------------------------- classifier surface
def test_reset_classifier_and_get_classifier() -> None:
    model = _model()
    q_before = model.laterals[0].q.weight.clone()
    model.reset_classifier(TREE2)
    assert model.taxonomy is TREE2 and len(model.laterals) == 2
    torch.testing.assert_close(model.laterals[0].q.weight, q_before)  # attention weights kept
    assert set(model.get_classifier()) == {"global", "local0", "local1"}
    assert model.global_head.out_features == 5
    with torch.inference_mode():
        out = model(_images())
    assert [lv.probs.shape[1] for lv in out] == [2, 5]


def test_lcam_detach_keeps_the_output_and_changes_the_gradients() -> None:
    """``lcam_detach`` only stops gradients through M: same forward, different CAM-weight grads."""
    x, y = _images(2), torch.tensor([1, 8])
    grads, probs = [], []
    for detach in (False, True):
        model = _model(cfg=SMALL.replace(lcam_detach=detach)).train()
        model.load_state_dict(BASE.state_dict())
        out = model(x)
        model.loss(out, y).backward()
        probs.append([p.detach() for p in out.probs])
        grads.append(model.local_heads[1].weight.grad.clone())
    for a, b in zip(*probs, strict=True):
        torch.testing.assert_close(a, b)
    assert (grads[0] - grads[1]).abs().max() > 1e-6


def test_logits_are_the_local_classifier_logits_at_every_level() -> None:
    from mdan_zoo import MDAN, MDANConfig, get_taxonomy

    model = MDAN(get_taxonomy("fashion_mnist"), MDANConfig(backbone="resnet18")).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64))
    for level in out:
        assert level.logits.shape == level.local_probs.shape
        assert torch.allclose(torch.softmax(level.logits, dim=1), level.local_probs)
    assert [t.shape[1] for t in out.logits] == [2, 4, 10]
    assert out[-1].global_logits is not None and out[0].global_logits is None
