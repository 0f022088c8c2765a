"""The affective-semantic mappings of Fig. 2 (Sec. 3.1, 5.3, Table 2): per preset, which C/F map
each local classifier reads and whether the top-down sums exist, built as the paper draws them."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mdan_zoo import MDAN, ConfigError, MDANConfig, Taxonomy, get_taxonomy
from mdan_zoo.config import MAPPINGS

SMALL = MDANConfig(backbone="resnet18", fpn_channels=16)
TREE3 = get_taxonomy("fashion_mnist")  # 2 -> 4 -> 10
TREE2 = Taxonomy.from_nested({"pos": ["joy", "awe", "zest"], "neg": ["fear", "anger"]})

# Our reading of the six panels (docs/architecture.md, "Affective-semantic mapping"): the
# semantic level of affective levels 1, 2, 3 (three-level tree) and 1, 2 (two-level tree).
READS = {
    "a": ((5, 4, 3), (5, 4), False),
    "b": ((4, 3, 2), (4, 3), False),
    "c": ((3, 4, 5), (4, 5), False),
    "d": ((2, 3, 4), (3, 4), False),
    "e": ((4, 3, 2), (4, 3), True),
    "f": ((2, 3, 4), (3, 4), True),
}
CHANNELS = {2: 64, 3: 128, 4: 256, 5: 512}  # resnet18


def _features(size: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        f"c{ls}": torch.randn(2, c, size >> ls, size >> ls, generator=g).requires_grad_()
        for ls, c in CHANNELS.items()
    }


def _depends_on(model: MDAN, feats: dict[str, torch.Tensor]) -> list[set[int]]:
    """Per affective level, the backbone maps C_ls its local logits depend on (by autograd)."""
    out = model.forward_head(feats)
    deps = []
    for level in out:
        grads = torch.autograd.grad(
            level.local_logits.square().sum(),
            list(feats.values()),
            allow_unused=True,
            retain_graph=True,
        )
        deps.append(
            {
                int(name[1])
                for name, g in zip(feats, grads, strict=True)
                if g is not None and g.abs().sum() > 0
            }
        )
    return deps


def test_the_presets_are_the_six_panels_and_e_is_the_default() -> None:
    assert MDANConfig().mapping == "e"
    assert sorted(MAPPINGS) == list("abcdef")
    for name, (three, two, fusion) in READS.items():
        cfg = MDANConfig(mapping=name)
        assert cfg.semantic_levels(3) == three
        assert cfg.semantic_levels(2) == two
        assert cfg.affective_semantic_mapping.fusion is fusion
        assert cfg.top_down_sums is fusion


@pytest.mark.parametrize("tax", [TREE3, TREE2], ids=["3-level", "2-level"])
@pytest.mark.parametrize("name", list("abcdef"))
def test_each_level_reads_its_map_and_sums_exist_only_with_fusion(name: str, tax) -> None:
    """Without MHCCA and L-CAM (Table 2's network) a level depends on its own map alone unless
    the top-down sums carry every map above it into it."""
    three, two, fusion = READS[name]
    want = three if tax.num_levels == 3 else two
    torch.manual_seed(0)
    model = MDAN(tax, SMALL.replace(mapping=name, mhcca=False, lcam=False)).eval()
    assert model.semantic_levels == want
    deps = _depends_on(model, _features())
    if fusion:  # F_ls = lateral(C_ls) + Up(F_ls+1), F5 = Conv1x1(C5): every map from C_ls up
        assert deps == [set(range(ls, 6)) for ls in want]
    else:
        assert deps == [{ls} for ls in want]
    # the classifier of level d reads F_ls: its width, and the lateral that exists per map
    laterals = [ls for ls in sorted(want, reverse=True) if ls < 5]
    assert [m.weight.shape[1] for m in model.laterals] == [CHANNELS[ls] for ls in laterals]
    assert (model.f5 is not None) == (fusion or 5 in want)  # nothing else would read F5


def _by_hand(model: MDAN, feats: dict[str, torch.Tensor], fusion: bool) -> list[torch.Tensor]:
    """The local logits of the paper's network (MHCCA, no L-CAM) written out for the preset:
    F5 = Conv1x1(C5); F_ls = MHCCA(Up(F_ls+1), C_ls) (+ Up(F_ls+1) with fusion); P_L from F_ls."""
    maps: dict[int, torch.Tensor] = {5: model.f5(feats["c5"])}
    for ls in (4, 3, 2):
        c = feats[f"c{ls}"]
        up = nn.functional.interpolate(maps[ls + 1], size=c.shape[-2:], mode="bilinear")
        if 4 - ls < len(model.laterals):
            maps[ls] = model.laterals[4 - ls](up, c) + (up if fusion else 0)
    return [
        head(maps[ls].mean(dim=(2, 3)))
        for head, ls in zip(model.local_heads, model.semantic_levels, strict=True)
    ]


@pytest.mark.parametrize("name", list("abcdef"))
def test_with_mhcca_the_queries_come_from_the_map_above(name: str) -> None:
    torch.manual_seed(0)
    model = MDAN(TREE3, SMALL.replace(mapping=name, lcam=False)).eval()
    feats = {k: v.detach() for k, v in _features().items()}
    with torch.no_grad():
        got = [lv.local_logits for lv in model.forward_head(feats)]
        want = _by_hand(model, feats, READS[name][2])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_settings_that_differ_only_in_order_hold_the_same_parameters() -> None:
    shapes = {}
    for name in "abcdef":
        model = MDAN(TREE3, SMALL.replace(mapping=name))
        shapes[name] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["a"] == shapes["c"]
    assert shapes["b"] == shapes["d"] == shapes["e"] == shapes["f"]  # sums have no weights
    assert "laterals.2.q.weight" in shapes["b"] and "laterals.2.q.weight" not in shapes["a"]


def test_lcam_follows_the_affective_order_in_every_preset() -> None:
    """(f) reads level 1 from the lowest map; L-CAM still keeps the children of the level-1
    prediction at level 2, with the same rule as (e)."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    for name in "abcdef":
        torch.manual_seed(0)
        model = MDAN(TREE3, SMALL.replace(mapping=name)).eval()
        with torch.no_grad():
            out = model(x, return_cams=True)
        for depth in (1, 2):
            parent = out[depth - 1].local_probs.argmax(1)
            kids = model.taxonomy.parents[depth]
            # the map of level d is mean + max over the CAMs of the predicted parent's children
            for b in range(2):
                keep = torch.tensor([p == parent[b] for p in kids])
                cams = out[depth].cams[b, keep]
                fused = cams.mean(0) + cams.amax(0)
                fused = (fused - fused.min()) / (fused.max() - fused.min()).clamp_min(1e-6)
                torch.testing.assert_close(out[depth].lcam[b], fused, rtol=1e-4, atol=1e-5)


def test_bad_mapping_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"mapping must be one of .*'e' is the paper's"):
        MDANConfig(mapping="g")
    with pytest.raises(ConfigError, match="mapping"):
        MDANConfig.from_dict({"mapping": 5})


def test_the_mapping_is_serialised_and_old_configs_read_as_e() -> None:
    cfg = MDANConfig(mapping="c")
    assert cfg.to_dict()["mapping"] == "c"
    assert MDANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = MDANConfig().to_dict()
    del old["mapping"]
    assert MDANConfig.from_dict(old).mapping == "e"


# ---------------------------------------------------------------------- where configs go
def test_checkpoints_record_the_mapping_and_old_ones_load_as_e(tmp_path) -> None:
    torch.manual_seed(0)
    model = MDAN(TREE2, SMALL.replace(mapping="c")).eval()
    folder = model.save_pretrained(tmp_path / "c")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["model_config"]["mapping"] == "c"  # config.json format 2 (issue 20)
    again = MDAN.from_pretrained(folder)
    assert again.config.mapping == "c" and again.semantic_levels == (4, 5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x).probs[1], model(x).probs[1])
    # a checkpoint written before the field existed: its model config has no "mapping"
    old = MDAN(TREE2, SMALL).eval()
    old_folder = old.save_pretrained(tmp_path / "old")
    data = json.loads((old_folder / "config.json").read_text())
    del data["model_config"]["mapping"]
    (old_folder / "config.json").write_text(json.dumps(data))
    assert MDAN.from_pretrained(old_folder).config.mapping == "e"


def test_factories_and_set_take_the_mapping() -> None:
    from mdan_zoo import mdan_fi
    from mdan_zoo.training import TrainConfig

    model = mdan_fi(config=MDANConfig(backbone="resnet18", mapping="f"))
    assert model.semantic_levels == (3, 4) and model.config.top_down_sums
    cfg = TrainConfig().with_overrides(["mapping=c", "alpha=1", "mhcca=false"])
    assert cfg.model == {"mapping": "c", "alpha": 1, "mhcca": False}
    assert cfg.model_config() == MDANConfig(mapping="c", alpha=1.0, mhcca=False)
    assert TrainConfig().with_overrides(["model.mapping=b"]).model_config().mapping == "b"
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig().with_overrides(["mapping=x"])


def test_a_checkpoint_with_an_unread_f5_is_refused_with_the_reason(tmp_path) -> None:
    """mdan_zoo 0.1.0 built F5 for mhcca=False, upsample_add=False, where nothing reads it."""
    from safetensors.torch import save_file

    from mdan_zoo import mdan
    from mdan_zoo.hub import WeightsError

    cfg = SMALL.replace(mhcca=False, upsample_add=False)
    model = MDAN(TREE2, cfg)
    assert model.f5 is None
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["f5.weight"], state["f5.bias"] = torch.zeros(16, 512, 1, 1), torch.zeros(16)
    save_file(state, str(tmp_path / "old.safetensors"))
    with pytest.raises(WeightsError, match=r"hold F5 \(f5\.\*\), which this MDAN does not build"):
        mdan(weights=tmp_path / "old.safetensors", taxonomy=TREE2, config=cfg)


def test_fine_tuning_to_a_deeper_tree_adds_the_lateral_of_the_new_map(tmp_path) -> None:
    """(c) on two levels reads C4, C5; on three C3, C4, C5: C4's MHCCA carries over, C3's is new."""
    from mdan_zoo import mdan

    cfg = SMALL.replace(mapping="c")
    torch.manual_seed(0)
    source = MDAN(TREE2, cfg)
    folder = source.save_pretrained(tmp_path / "two")
    model = mdan(weights=folder, taxonomy=TREE3, config=cfg)
    report = model.transfer_report
    assert "laterals.1" in report.reinitialised and "laterals.0" in report.transferred
    assert any("MHCCA lateral of level 1" in p for p in report.parts_new)  # C3 serves level 1
    torch.testing.assert_close(model.laterals[0].q.weight, source.laterals[0].q.weight)


def test_the_table_2_protocol_learns_locally_only() -> None:
    """`--set mapping=X --set alpha=1 --set mhcca=false --set lcam=false`: P_O is P_L, the loss
    is P_L's cross-entropy, and the global classifier learns nothing (Table 2: "based on P_L
    only", "local learning only")."""
    from mdan_zoo.training import TrainConfig

    overrides = ["mapping=a", "alpha=1", "mhcca=false", "lcam=false", "backbone=resnet18"]
    cfg = TrainConfig().with_overrides([*overrides, "model.fpn_channels=16"]).model_config()
    torch.manual_seed(0)
    model = MDAN(TREE3, cfg).train()
    assert model.f5 is not None and len(model.laterals) == 2  # (a): C5, C4, C3, no sums
    out = model(torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    fine = torch.tensor([0, 5, 8, 3])
    for level in out:
        torch.testing.assert_close(level.probs, level.local_probs)
    loss = model.loss(out, fine)
    want = torch.stack(
        [
            nn.functional.cross_entropy(lv.local_logits, y)
            for lv, y in zip(out, model.targets_from_fine(fine), strict=True)
        ]
    ).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert model.global_head.weight.grad is not None
    assert model.global_head.weight.grad.abs().max() == 0
    assert all(h.weight.grad.abs().sum() > 0 for h in model.local_heads)
