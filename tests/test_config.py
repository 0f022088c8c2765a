"""MDANConfig / Preprocessing: validation names the field, JSON round trips exactly."""

from __future__ import annotations

import json

import pytest

from mdan_zoo import BACKBONES, ConfigError, MDANConfig, Preprocessing


def test_defaults_are_the_papers_full_model() -> None:
    cfg = MDANConfig()
    assert cfg.backbone == "resnet101" and cfg.alpha == 0.7 and cfg.heads == (2, 4, 8)
    assert cfg.mhcca and not cfg.mhcca_kv_proj and cfg.upsample_add
    assert cfg.lcam and cfg.lcam_mean and cfg.lcam_max and cfg.lcam_parent == "local"
    assert cfg.mapping == "e" and cfg.semantic_levels(3) == (4, 3, 2) and cfg.top_down_sums
    assert Preprocessing().input_size == 448


NON_DEFAULT = MDANConfig(
    backbone="resnet18",
    fpn_channels=64,
    alpha=0.25,
    heads=[3, 5],
    mapping="c",
    mhcca=True,
    mhcca_kv_proj=True,
    upsample_add=False,
    lcam=True,
    lcam_mean=False,
    lcam_max=True,
    lcam_norm="sigmoid",
    lcam_root="off",
    lcam_parent="overall",
    lcam_detach=True,
    prob_eps=1e-6,
    local_temperatures=(1.5, 2.0),
    global_temperature=1.25,
)


@pytest.mark.parametrize("cfg", [MDANConfig(), NON_DEFAULT])
def test_config_json_round_trip_is_exact(cfg: MDANConfig, tmp_path) -> None:
    path = tmp_path / "config.json"
    cfg.to_json(path)
    back = MDANConfig.from_json(path)
    assert back == cfg and isinstance(back.heads, tuple)
    text = path.read_text()
    back.to_json(path)
    assert path.read_text() == text
    assert json.loads(text)["heads"] == list(cfg.heads)
    assert MDANConfig.from_dict(cfg.to_dict()) == cfg


def test_every_field_is_serialised() -> None:
    import dataclasses

    assert set(NON_DEFAULT.to_dict()) == {f.name for f in dataclasses.fields(MDANConfig)}
    for f in dataclasses.fields(MDANConfig):  # NON_DEFAULT really changes every field
        if f.name != "mhcca" and f.name != "lcam" and f.name != "lcam_max":
            assert getattr(NON_DEFAULT, f.name) != getattr(MDANConfig(), f.name), f.name


def test_missing_keys_default_and_unknown_keys_fail() -> None:
    assert MDANConfig.from_dict({"alpha": 0.5}) == MDANConfig(alpha=0.5)
    with pytest.raises(ConfigError, match=r"unknown MDANConfig field\(s\) \['alhpa'\]"):
        MDANConfig.from_dict({"alhpa": 0.5})


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"backbone": "vgg16"}, r"backbone 'vgg16' is not supported; choose one of"),
        ({"fpn_channels": 0}, r"fpn_channels must be a positive integer"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"heads": ()}, r"heads must list 1-3 positive integers"),
        ({"heads": (2, 4, 8, 16)}, r"heads must list 1-3 positive integers"),
        ({"heads": (2, 0)}, r"heads must list 1-3 positive integers"),
        ({"lcam_norm": "softmax"}, r"lcam_norm must be one of \('minmax', 'sigmoid', 'none'\)"),
        ({"lcam_root": "some"}, r"lcam_root must be one of"),
        ({"lcam_parent": "global"}, r"lcam_parent must be one of"),
        ({"lcam_mean": False, "lcam_max": False}, r"lcam=True needs lcam_mean or lcam_max"),
        ({"prob_eps": 0.0}, r"prob_eps must be a small positive number"),
    ],
)
def test_bad_values_name_the_field(changes: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        MDANConfig(**changes)
    with pytest.raises(ConfigError, match=pattern):
        MDANConfig.from_dict(changes)


def test_lcam_off_allows_no_pooling_and_replace_validates() -> None:
    cfg = MDANConfig(lcam=False, lcam_mean=False, lcam_max=False)
    assert not cfg.lcam
    with pytest.raises(ConfigError, match="lcam=True needs"):
        cfg.replace(lcam=True)
    assert MDANConfig().replace(alpha=0.3).alpha == 0.3
    assert set(BACKBONES) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}


def test_preprocessing_round_trip_and_errors(tmp_path) -> None:
    pre = Preprocessing(input_size=224, resize_size=256, interpolation="bicubic", hflip=False)
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    with pytest.raises(ConfigError, match="unknown Preprocessing field"):
        Preprocessing.from_dict({"size": 3})
    with pytest.raises(ConfigError, match="input_size <= resize_size"):
        Preprocessing(input_size=448, resize_size=256)
    with pytest.raises(ConfigError, match="interpolation must be"):
        Preprocessing(interpolation="lanczos")
    with pytest.raises(ConfigError, match="std positive"):
        Preprocessing(std=(1.0, 0.0, 1.0))


def test_preprocessing_transforms_give_the_configured_size() -> None:
    from PIL import Image

    pre = Preprocessing(input_size=64, resize_size=72)
    img = Image.new("RGB", (100, 80), (255, 128, 0))
    x = pre.eval_transform()(img)
    assert x.shape == (3, 64, 64)
    # Normalisation uses the configured mean / std: a constant red channel maps to (1 - m) / s.
    assert float(x[0, 0, 0]) == pytest.approx((1.0 - pre.mean[0]) / pre.std[0], abs=1e-5)
    assert pre.train_transform()(img).shape == (3, 64, 64)
