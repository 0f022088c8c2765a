"""The typed, JSON-serialisable configuration of MDAN: every paper switch is a field.

Each field names the place in the paper it comes from; ``docs/architecture.md`` explains the
choices the paper leaves open. :class:`Preprocessing` describes the input a set of weights
expects, so that it can travel with the weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ._checks import read_json_file, typed_fields
from ._io import atomic_write_text
from .errors import ConfigError

__all__ = [
    "BACKBONES",
    "MAPPINGS",
    "MAX_FPN_CHANNELS",
    "MAX_HEADS",
    "MAX_IMAGE_SIDE",
    "AffectiveSemanticMapping",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "ConfigError",
    "MDANConfig",
    "Preprocessing",
]

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
"""torchvision ResNets MDAN can stand on; ResNet-101 is the paper's (Sec. 5.2)."""

LcamNorm = Literal["minmax", "sigmoid", "none"]
LcamRoot = Literal["all", "off"]
LcamParent = Literal["local", "overall"]
MappingName = Literal["a", "b", "c", "d", "e", "f"]


MAX_FPN_CHANNELS = 4096
"""Largest ``fpn_channels`` a config file may ask for (the paper's size is 1024)."""
MAX_HEADS = 1024
"""Largest number of MHCCA heads per level a config file may ask for (the paper uses 2-8)."""
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
"""Bounds of a temperature (``MDANConfig.local_temperatures`` / ``global_temperature``):
outside them a softmax is a one-hot or a uniform vector and the branch says nothing."""
MAX_IMAGE_SIDE = 2048
"""Largest ``input_size`` / ``resize_size`` of :class:`Preprocessing` (the paper uses 448)."""
_CONFIG_FILE_BYTES = 1024 * 1024
LITE_FPN_CHANNELS = 256
"""Top-down width of :meth:`MDANConfig.lite` (FPN [8]'s 256)."""


@dataclass(frozen=True)
class AffectiveSemanticMapping:
    """One setting of Fig. 2: which semantic level serves each affective level, and whether the
    top-down sums of FPN (feature fusion, "FF" in Table 2) exist.

    Attributes:
        name: the panel, ``"a"`` .. ``"f"``.
        levels: the semantic level l_s read by affective levels 1, 2, 3 of a three-level tree
            (Parrott's, WEBEmo), e.g. ``(4, 3, 2)`` for (e): l_s = 5 - l_a (Sec. 3.1).
        fusion: F_ls = lateral(C_ls) + Upsample(F_ls+1) (Sec. 3.1); without it every local
            classifier reads its own level's lateral alone, as on a plain ResNet-101 (Sec. 5.3).

    A shallower tree keeps the same direction on the highest maps of ``levels``
    (:meth:`semantic_levels`), so that the pairs Sec. 5.3 compares still differ only in what it
    compares them for (docs/architecture.md, "Affective-semantic mapping").
    """

    name: str
    levels: tuple[int, int, int]
    fusion: bool

    @property
    def ascending(self) -> bool:
        """Level 1 reads the lowest of the maps used (the order Sec. 5.3 calls "low to high"
        without fusion); ``False``: level 1 reads the highest, as (e)."""
        return self.levels[0] < self.levels[-1]

    def semantic_levels(self, num_levels: int) -> tuple[int, ...]:
        """l_s of affective levels 1 .. ``num_levels`` (1-3): the ``num_levels`` highest maps
        of :attr:`levels`, in this setting's order."""
        if not 1 <= num_levels <= len(self.levels):
            raise ConfigError(f"mappings serve 1-3 affective levels, got {num_levels}")
        used = sorted(self.levels, reverse=True)[:num_levels]
        return tuple(reversed(used)) if self.ascending else tuple(used)

    def describe(self, num_levels: int = 3) -> str:
        """``"(e) l_a 1, 2, 3 -> F4, F3, F2, with feature fusion"`` (C: a map without fusion)."""
        prefix = "F" if self.fusion else "C"
        maps = ", ".join(f"{prefix}{ls}" for ls in self.semantic_levels(num_levels))
        fusion = "with feature fusion" if self.fusion else "without feature fusion"
        numbers = ", ".join(str(i) for i in range(1, num_levels + 1))
        return f"({self.name}) l_a {numbers} -> {maps}, {fusion}"


MAPPINGS: dict[str, AffectiveSemanticMapping] = {
    m.name: m
    for m in (
        AffectiveSemanticMapping("a", (5, 4, 3), fusion=False),
        AffectiveSemanticMapping("b", (4, 3, 2), fusion=False),
        AffectiveSemanticMapping("c", (3, 4, 5), fusion=False),
        AffectiveSemanticMapping("d", (2, 3, 4), fusion=False),
        AffectiveSemanticMapping("e", (4, 3, 2), fusion=True),
        AffectiveSemanticMapping("f", (2, 3, 4), fusion=True),
    )
}
"""The six settings of Fig. 2 / Table 2 as we read them from Sec. 3.1 and 5.3 (the figure is not
in the text): (a)-(d) without feature fusion on the maps of ResNet-101, (e)-(f) with it; (a)/(c),
(b)/(d), (e)/(f) differ only in order, (a)/(b) only in which maps, (b)/(e) and (d)/(f) only in
the fusion. (e) is the paper's model (``MDANConfig().mapping``)."""


@dataclass(frozen=True)
class MDANConfig:
    """Architecture of MDAN. Defaults are the paper's full model: Table 5's 34.28 row (MHCCA
    without K/V projections, UpsampleAdd, L-CAM with mean + max) at the size of Table 1.

    ``MDANConfig()`` is the paper-size network (ResNet-101, top-down width 1024: 48.82M
    parameters for FI against Table 1's 48.79M; see ``docs/architecture.md``).
    :meth:`lite` is a lighter variant (width 256, as in FPN [8]) for quick experiments and
    small backbones.

    Attributes:
        backbone: torchvision ResNet name (Sec. 5.2: ResNet-101).
        fpn_channels: width of the top-down branch F_5..F_2. Sec. 3.1 says only that C5's
            channel number "is reduced" by the 1x1 conv; 1024 (half of ResNet-101's 2048) is the
            width that reproduces Table 1's parameter count (``benchmarks/complexity.py``).
        alpha: weight of P_L in P_O = alpha * P_L + (1 - alpha) * P_G (Sec. 3.2, 5.5.2: 0.7).
        heads: MHCCA heads per semantic level, C4, C3, C2 (Table 4 / Sec. 5.5.1: h_ls = 2, 4, 8
            for l_s = 4, 3, 2); under mapping (e) that is affective level 1, 2, 3.
        mapping: the affective-semantic mapping of Fig. 2, ``"a"`` .. ``"f"`` (:data:`MAPPINGS`):
            which semantic level serves each affective level and whether the top-down sums
            exist. (e), the default, is the paper's model (Sec. 3.1: l_s = 5 - l_a, with
            feature fusion); Table 2 compares all six.
        mhcca: Multi-head Cross Channel Attention replaces FPN's lateral 1x1 conv (Sec. 4.1).
        mhcca_kv_proj: add K and V 1x1 projections (Table 5 row 2; hurts, so off).
        upsample_add: F_ls = C'_ls + Upsample(F_ls+1); off sends C'_ls alone (Table 5). Only a
            mapping with feature fusion ((e), (f)) has these sums; (a)-(d) have none either way.
        lcam: Level-dependent CAM on every local branch (Sec. 4.2).
        lcam_mean / lcam_max: the two poolings fused into M (Sec. 4.2.2, Table 5 rows 5-8).
        lcam_norm: how the fused map M is scaled before (1 + M) (not in the paper): per-image
            min-max to [0, 1] (default), sigmoid, or raw.
        lcam_root: level 1 has no parent: ``"all"`` fuses the CAMs of all its classes (as Fig. 8
            shows a level-1 map), ``"off"`` applies no L-CAM there.
        lcam_parent: which level-(l_a-1) prediction picks the children: P_L (``"local"``, as the
            paper says, Fig. 5) or P_O (``"overall"``).
        lcam_detach: stop gradients through M (the paper is silent; off).
        prob_eps: clamp for log P_O in the loss of Eq. 3.
        local_temperatures: temperature scaling (not in the paper; Guo et al., 2017): one
            temperature per level, coarse to fine, dividing the local logits before their
            softmax; None (default) is the raw model. ``mdan-zoo calibrate`` / the training
            option ``calibrate: true`` fit them on the validation split.
        global_temperature: the same for the global classifier's logits (both or neither).
    """

    backbone: str = "resnet101"
    fpn_channels: int = 1024
    alpha: float = 0.7
    heads: tuple[int, ...] = (2, 4, 8)
    mapping: MappingName = "e"
    mhcca: bool = True
    mhcca_kv_proj: bool = False
    upsample_add: bool = True
    lcam: bool = True
    lcam_mean: bool = True
    lcam_max: bool = True
    lcam_norm: LcamNorm = "minmax"
    lcam_root: LcamRoot = "all"
    lcam_parent: LcamParent = "local"
    lcam_detach: bool = False
    prob_eps: float = 1e-8
    local_temperatures: tuple[float, ...] | None = None
    global_temperature: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))
        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"backbone {self.backbone!r} is not supported; choose one of {BACKBONES}"
            )
        if not isinstance(self.fpn_channels, int) or self.fpn_channels < 1:
            raise ConfigError(f"fpn_channels must be a positive integer, got {self.fpn_channels!r}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1] (weight of P_L in P_O), got {self.alpha!r}")
        if not 1 <= len(self.heads) <= 3 or any(
            not isinstance(h, int) or h < 1 for h in self.heads
        ):
            raise ConfigError(
                f"heads must list 1-3 positive integers (one per affective level), got {self.heads!r}"
            )
        if self.mapping not in MAPPINGS:
            raise ConfigError(
                f"mapping must be one of {tuple(MAPPINGS)} (the settings of Fig. 2; 'e' is the "
                f"paper's model), got {self.mapping!r}"
            )
        for name, allowed in (
            ("lcam_norm", LcamNorm),
            ("lcam_root", LcamRoot),
            ("lcam_parent", LcamParent),
        ):
            if getattr(self, name) not in get_args(allowed):
                raise ConfigError(
                    f"{name} must be one of {get_args(allowed)}, got {getattr(self, name)!r}"
                )
        if self.lcam and not (self.lcam_mean or self.lcam_max):
            raise ConfigError(
                "lcam=True needs lcam_mean or lcam_max (or both); set lcam=False to drop L-CAM"
            )
        if not 0.0 < self.prob_eps < 1e-2:
            raise ConfigError(f"prob_eps must be a small positive number, got {self.prob_eps!r}")
        self._check_temperatures()

    def _check_temperatures(self) -> None:
        local, glob = self.local_temperatures, self.global_temperature
        if (local is None) != (glob is None):
            raise ConfigError(
                "local_temperatures and global_temperature come together (both set by "
                "`mdan-zoo calibrate`) or not at all (the raw model); got "
                f"{local!r} and {glob!r}"
            )
        if local is None:
            return
        object.__setattr__(self, "local_temperatures", tuple(local))
        values: list[Any] = [*local, glob]
        if not 1 <= len(local) <= 3 or not all(
            _is_real(t) and MIN_TEMPERATURE <= t <= MAX_TEMPERATURE for t in values
        ):
            raise ConfigError(
                f"temperatures must be 1-3 local values (one per level) and a global one, each "
                f"a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE}; got {local!r} and "
                f"{glob!r}: run `mdan-zoo calibrate` again, or drop both for the raw model"
            )

    @property
    def calibrated(self) -> bool:
        """Whether temperatures are stored (``predict`` and ``evaluate`` apply them)."""
        return self.local_temperatures is not None

    def uncalibrated(self) -> MDANConfig:
        """This config without temperatures: the raw model."""
        return dataclasses.replace(self, local_temperatures=None, global_temperature=None)

    @classmethod
    def lite(cls, **changes: Any) -> MDANConfig:
        """The lighter variant: everything the paper's, but the top-down width is 256 (FPN [8]).

        On ResNet-101 it has 43.31M parameters and 32.9 GMACs for FI at 448 px (paper size:
        48.82M, 42.5 GMACs); with ResNet-18 it is what the demo and the tests use. ``changes``
        override any field, e.g. ``MDANConfig.lite(backbone="resnet18")``.
        """
        return cls(**{"fpn_channels": LITE_FPN_CHANNELS, **changes})

    @property
    def affective_semantic_mapping(self) -> AffectiveSemanticMapping:
        """The Fig. 2 setting named by :attr:`mapping`."""
        return MAPPINGS[self.mapping]

    def semantic_levels(self, num_levels: int) -> tuple[int, ...]:
        """l_s read by affective levels 1 .. ``num_levels``: ``(4, 3, 2)`` for (e), 3 levels."""
        return MAPPINGS[self.mapping].semantic_levels(num_levels)

    @property
    def top_down_sums(self) -> bool:
        """Whether F_ls = C'_ls + Upsample(F_ls+1) is computed: the mapping has feature fusion
        and ``upsample_add`` is on."""
        return MAPPINGS[self.mapping].fusion and self.upsample_add

    def replace(self, **changes: Any) -> MDANConfig:
        """A copy with some fields changed (validated); unknown names raise TypeError."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["heads"] = list(self.heads)
        if self.local_temperatures is None:  # the raw model's file stays as before
            data.pop("local_temperatures")
            data.pop("global_temperature")
        else:
            data["local_temperatures"] = list(self.local_temperatures)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MDANConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error, missing keys default.

        Every value is type-checked against the field's annotation (``"0.5"`` is not a number,
        ``true`` not an integer, NaN not a number) and sizes against :data:`MAX_FPN_CHANNELS` /
        :data:`MAX_HEADS`; a bad one raises :class:`ConfigError` naming the field.
        """
        maxima = {
            "fpn_channels": MAX_FPN_CHANNELS,
            "heads": MAX_HEADS,
            "local_temperatures": MAX_TEMPERATURE,
            "global_temperature": MAX_TEMPERATURE,
        }
        return cls(**typed_fields(cls, data, error=ConfigError, maxima=maxima))

    def to_json(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> MDANConfig:
        """Read :meth:`to_json` output; a missing, non-UTF-8 or invalid file is a ConfigError."""
        data = read_json_file(
            path, error=ConfigError, what="MDANConfig file", max_bytes=_CONFIG_FILE_BYTES
        )
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ShorterSideAtLeast:
    """Resize an image up so that its shorter side is at least ``size``; larger images pass
    unchanged. Lets a crop of ``size`` come from the original image (``resize_size=None``)
    without failing on the odd image smaller than the crop."""

    def __init__(self, size: int, interpolation: Any) -> None:
        self.size = size
        self.interpolation = interpolation

    def __call__(self, img: Any) -> Any:
        from torchvision.transforms import functional as TF

        _, h, w = TF.get_dimensions(img)
        if min(h, w) >= self.size:
            return img
        return TF.resize(img, self.size, interpolation=self.interpolation, antialias=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


@dataclass(frozen=True)
class Preprocessing:
    """The input a set of weights expects (Sec. 5.2: 448 x 448 crops, per-channel normalisation).

    With ``resize_size`` set (default 512, our choice) the shorter side is first resized to it;
    the train transform then takes a random ``input_size`` crop and flips horizontally, the eval
    transform takes the centre crop. ``resize_size=None`` is the paper's literal reading (Sec.
    5.2: "a 448 x 448 image is randomly cropped from each original image"): the crops come from
    the image at its own resolution; only an image whose shorter side is below ``input_size``
    is scaled up to it. See the deviations table in ``docs/architecture.md``.
    """

    input_size: int = 448
    resize_size: int | None = 512
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    hflip: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if (
                isinstance(values, (str, bytes, Mapping))
                or not hasattr(values, "__len__")
                or len(values) != 3
                or not all(_is_real(v) and math.isfinite(v) for v in values)
            ):
                raise ConfigError(
                    f"{name}: mean and std need 3 finite numbers each (R, G, B), got {values!r}"
                )
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std: mean and std need 3 values each, std positive, got {self.std}")
        for name in ("input_size", "resize_size"):
            value = getattr(self, name)
            if name == "resize_size" and value is None:  # the paper's literal crop
                continue
            if not _is_int(value) or not 32 <= value <= MAX_IMAGE_SIDE:
                raise ConfigError(
                    f"{name} must be an integer from 32 to MAX_IMAGE_SIDE = {MAX_IMAGE_SIDE}, "
                    f"got {value!r}"
                )
            object.__setattr__(self, name, int(value))
        if self.resize_size is not None and self.resize_size < self.input_size:
            raise ConfigError(
                f"need 32 <= input_size <= resize_size (or resize_size=None to crop from the "
                f"original image), got {self.input_size} / {self.resize_size}"
            )
        if not isinstance(self.hflip, bool):
            raise ConfigError(f"hflip must be true or false, got {self.hflip!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a dict of notes, got {self.extra!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(
                f"interpolation must be bilinear, bicubic or nearest, got {self.interpolation!r}"
            )

    def _interp(self) -> Any:
        from torchvision.transforms import InterpolationMode

        if self.interpolation == "nearest":  # on tensors, NEAREST_EXACT is PIL's NEAREST
            return InterpolationMode.NEAREST_EXACT
        return InterpolationMode(self.interpolation)

    def _resize(self) -> Any:
        from torchvision.transforms import v2

        if self.resize_size is None:
            return ShorterSideAtLeast(self.input_size, self._interp())
        return v2.Resize(self.resize_size, interpolation=self._interp(), antialias=True)

    def eval_scale(self, width: int, height: int) -> float:
        """The factor by which the eval transform scales a ``width x height`` image before its
        centre crop (to map the crop back onto the photo)."""
        if self.resize_size is None:
            return max(1.0, self.input_size / min(width, height))
        return self.resize_size / min(width, height)

    def _to_tensor(self) -> list[Any]:
        """Unwrap the input into a uint8 RGB tensor: a PIL image's pixels are taken as they are
        (no float round trip), a tensor ([C, H, W], as ``torchvision.io.decode_image`` gives)
        passes through; a grey image gets 3 channels."""
        from torchvision.transforms import v2

        return [v2.ToImage(), v2.RGB()]

    def _normalize(self) -> list[Any]:
        import torch
        from torchvision.transforms import v2

        return [
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
            v2.ToPureTensor(),
        ]

    def eval_transform(self) -> Any:
        """torchvision v2 transform: RGB image (PIL or uint8 tensor [3, H, W]) -> normalised
        float tensor [3, S, S].

        Resize (shorter side to ``resize_size``, antialiased) and centre crop run on the uint8
        tensor: on real photos this matches the PIL resize of torchvision's v1 pipeline to one
        grey level (1/255) on a few pixels (docs/predict.md).
        """
        from torchvision.transforms import v2

        return v2.Compose(
            [
                *self._to_tensor(),
                self._resize(),
                v2.CenterCrop(self.input_size),
                *self._normalize(),
            ]
        )

    def train_transform(self) -> Any:
        """The train transform of Sec. 5.2: random crop (of the resized image, or of the
        original with ``resize_size=None``), horizontal flip, normalise (v2, on uint8 tensors
        like :meth:`eval_transform`)."""
        from torchvision.transforms import v2

        steps: list[Any] = [*self._to_tensor(), self._resize(), v2.RandomCrop(self.input_size)]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps + self._normalize())

    def _crop_pct(self) -> float:
        """timm's ``crop_pct``: the centre crop's share of the resized shorter side, chosen so
        that timm's ``floor(input_size / crop_pct)`` gives back exactly ``resize_size``."""
        if self.resize_size is None:  # crops of the original image: timm has no such mode
            return 1.0
        pct = self.input_size / self.resize_size
        while math.floor(self.input_size / pct) < self.resize_size:
            pct = math.nextafter(pct, 0.0)
        while math.floor(self.input_size / pct) > self.resize_size:
            pct = math.nextafter(pct, 1.0)
        return pct

    def timm_gap(self) -> str | None:
        """Why timm's eval pipeline cannot be :meth:`eval_transform` (None: it can).

        timm resizes the PIL image's shorter side to ``floor(input_size / crop_pct)`` and crops
        the centre; that is this pipeline for bilinear and bicubic at any sizes (to the one grey
        level by which PIL's and torch's resampling round apart). It cannot be: the literal crop
        (``resize_size=None`` keeps the image's own scale, which no fixed resize gives), and
        ``"nearest"`` (PIL's nearest on the PIL image and torch's ``NEAREST_EXACT`` on the uint8
        tensor pick different source pixels, on up to 12 % of values at small sizes).
        """
        if self.resize_size is None:
            return (
                "resize_size=None crops the original image at its own scale, and timm's eval "
                "pipeline always resizes to a fixed size first"
            )
        if self.interpolation == "nearest":
            return (
                "'nearest' resamples the uint8 tensor with torch's NEAREST_EXACT, which picks "
                "other pixels than timm's PIL nearest"
            )
        return None

    def pretrained_cfg(self, label_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The preprocessing in timm's ``pretrained_cfg`` keys, so that
        ``timm.data.resolve_model_data_config`` / ``timm.data.create_transform`` (and anything
        else that reads them) build the same eval pipeline as :meth:`eval_transform`.

        Where timm cannot build it (:meth:`timm_gap`), ``interpolation`` names the reason
        instead of a resampling mode: timm's ``create_transform`` then fails (``KeyError``
        quoting it) instead of building a pipeline that silently differs.

        ``label_names``: the class names of the model's output, when it has them.
        """
        gap = self.timm_gap()
        cfg: dict[str, Any] = {
            "input_size": (3, self.input_size, self.input_size),
            "crop_pct": self._crop_pct(),
            "crop_mode": "center",
            "interpolation": self.interpolation
            if gap is None
            else f"unsupported by timm: {gap}; use model.eval_transform()",
            "mean": self.mean,
            "std": self.std,
        }
        if label_names is not None:
            cfg["label_names"] = list(label_names)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Build from :meth:`to_dict` output, each field type-checked (see MDANConfig.from_dict)."""
        return cls(**typed_fields(cls, data, error=ConfigError))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
