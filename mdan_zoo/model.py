"""MDAN, the Multi-level Dependent Attention Network (Xu et al., CVPR 2022).

Two branches over a torchvision ResNet (Fig. 3):

* bottom-up (global, Sec. 3.2): ``P_G = softmax(gclassifier(GAP(C5)))`` over the finest level;
  coarser levels by summing children (Eq. 2), so P_G never violates the hierarchy;
* top-down (local, Sec. 3.1 mapping (e)): affective level ``l_a`` reads semantic level
  ``l_s = 5 - l_a`` of an FPN whose lateral connections are MHCCA (Sec. 4.1), followed by L-CAM
  (Sec. 4.2) and a local classifier (Eq. 1).

``P_O = alpha * P_L + (1 - alpha) * P_G`` per level; the loss is Eq. 3 as cross-entropy on P_O.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from .config import MDANConfig, Preprocessing
from .hub import PretrainedMixin
from .layers import MHCCA, class_activation_maps, lcam_map, upsample_to
from .prediction import PredictMixin
from .taxonomy import Taxonomy
from .untrained import loaded_hook

__all__ = ["MDAN", "LevelOutput", "MDANOutput", "ResNetTrunk", "mdan_loss"]

_SEMANTIC_LEVEL = (4, 3, 2)  # mapping (e): affective level 1, 2, 3 -> C4, C3, C2
AGG_MATRIX_MAX = 1 << 22
"""Largest fine x coarse one-hot matrix (entries, 16 MB) that Eq. 2 uses as a matrix product;
a larger tree sums children with ``index_add`` instead, so a legal 30,000-class tree never
allocates a 30,000 x 30,000 matrix (3.6 GB). The finest level needs none: P_G there is the
global softmax itself."""


class ResNetTrunk(nn.Module):
    """The bottom-up branch: a torchvision ResNet without ``avgpool``/``fc``, returning C2..C5.

    Submodule names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so a
    torchvision state dict (minus ``fc.*``) loads as is. Written by hand instead of
    ``create_feature_extractor`` because FX tracing costs ~0.5 s per model build and gives
    nothing here: the four stage outputs are plain attributes.
    """

    def __init__(self, resnet: torchvision.models.ResNet) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {"c2": c2, "c3": c3, "c4": c4, "c5": c5}


def _float32(t: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Autocast off on ``t``'s device (where autocast exists), so float32 stays float32."""
    kind = t.device.type
    if torch.amp.is_autocast_available(kind):
        return torch.autocast(kind, enabled=False)
    return contextlib.nullcontext()


def _wide(t: Tensor) -> Tensor:
    """``t`` in float32 when it is half or bfloat16 (autocast), else as it is."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _backbone_channels(name: str) -> dict[str, int]:
    mult = 1 if name in ("resnet18", "resnet34") else 4
    return {"c2": 64 * mult, "c3": 128 * mult, "c4": 256 * mult, "c5": 512 * mult}


@dataclass
class LevelOutput:
    """Predictions at one affective level. Probability tensors are ``[batch, classes]``.

    Attributes:
        name: the level's name in the taxonomy.
        labels: class names, in column order.
        probs: P_O, the overall prediction (what to use).
        local_probs: P_L, the local classifier of the top-down branch (Eq. 1).
        global_probs: P_G, the global classifier (finest level) or its Eq. 2 sums.
        local_logits: logits of the local classifier.
        global_logits: logits of the global classifier; only at the finest level, else None.
        lcam: the fused L-CAM map M ``[batch, H, W]`` applied at this level (None when L-CAM is
            off here or maps were not asked for).
        cams: CAMs of every class of this level ``[batch, classes, H, W]`` on the local feature
            map before attention (Sec. 4.2.1), when asked for.
    """

    name: str
    labels: tuple[str, ...]
    probs: Tensor
    local_probs: Tensor
    global_probs: Tensor
    local_logits: Tensor
    global_logits: Tensor | None = None
    lcam: Tensor | None = None
    cams: Tensor | None = None

    @property
    def logits(self) -> Tensor:
        """The logits of this level's local classifier (``local_probs`` is their softmax).

        P_O is a mixture of probabilities and has no logits of its own; the global classifier's
        logits exist at the finest level only (``global_logits``).
        """
        return self.local_logits


@dataclass
class MDANOutput:
    """The forward result: one :class:`LevelOutput` per level, coarse to fine.

    ``out[0]`` is the coarsest level, ``out[-1]`` the finest; ``out.probs`` lists P_O of every
    level (likewise ``local_probs``, ``global_probs``).
    """

    levels: tuple[LevelOutput, ...] = field(default_factory=tuple)

    def __getitem__(self, index: int) -> LevelOutput:
        return self.levels[index]

    def __len__(self) -> int:
        return len(self.levels)

    def __iter__(self) -> Iterator[LevelOutput]:
        return iter(self.levels)

    @property
    def probs(self) -> list[Tensor]:
        return [lv.probs for lv in self.levels]

    @property
    def local_probs(self) -> list[Tensor]:
        return [lv.local_probs for lv in self.levels]

    @property
    def global_probs(self) -> list[Tensor]:
        return [lv.global_probs for lv in self.levels]

    @property
    def logits(self) -> list[Tensor]:
        """Local-classifier logits of every level, coarse to fine."""
        return [lv.logits for lv in self.levels]


def mdan_loss(output: MDANOutput, targets: Sequence[Tensor], eps: float = 1e-8) -> Tensor:
    """Eq. 3 read as cross-entropy: the mean over levels of ``-log P_O[y]`` (batch-averaged).

    ``targets`` holds one tensor of class indices per level, coarse to fine.
    """
    if len(targets) != len(output):
        raise ValueError(f"need targets for {len(output)} levels, got {len(targets)}")
    losses = [
        F.nll_loss(torch.log(lv.probs.clamp_min(eps)), y)
        for lv, y in zip(output, targets, strict=True)
    ]
    return torch.stack(losses).mean()


def _check_temperature_levels(config: MDANConfig, taxonomy: Taxonomy) -> None:
    local = config.local_temperatures
    if local is not None and len(local) != taxonomy.num_levels:
        raise ValueError(
            f"config.local_temperatures lists {len(local)} values but the taxonomy has "
            f"{taxonomy.num_levels} levels: calibrate the model again (`mdan-zoo calibrate`), "
            "or drop the temperatures"
        )


class MDAN(PretrainedMixin, PredictMixin, nn.Module):
    """MDAN for a 1-3 level :class:`~mdan_zoo.taxonomy.Taxonomy` on a torchvision ResNet.

    Args:
        taxonomy: the label tree (coarse to fine); carried as ``model.taxonomy``.
        config: every architecture switch of the paper; carried as ``model.config``.
        preprocessing: the input the weights expect; ``model.eval_transform()`` builds it.

    The backbone starts from random weights; pretrained weights come through
    :mod:`mdan_zoo` factories, :meth:`from_pretrained` or :meth:`load_backbone_state_dict`.
    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from
    :class:`~mdan_zoo.pretrained.PretrainedMixin`, ``predict`` / ``attention_maps`` from
    :class:`~mdan_zoo.prediction.PredictMixin`.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        config: MDANConfig | None = None,
        *,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        super().__init__()
        config = config or MDANConfig()
        if len(config.heads) < taxonomy.num_levels:
            raise ValueError(
                f"config.heads lists {len(config.heads)} values but the taxonomy has "
                f"{taxonomy.num_levels} levels: give one MHCCA head count per level"
            )
        _check_temperature_levels(config, taxonomy)
        self.taxonomy = taxonomy
        self.config = config
        self.preprocessing = preprocessing or Preprocessing()
        self.weights_origin: str | None = None  # random init: predict warns (untrained.py)
        self.register_load_state_dict_post_hook(loaded_hook)
        resnet = getattr(torchvision.models, config.backbone)(weights=None)
        self.backbone = ResNetTrunk(resnet)
        self.channels = _backbone_channels(config.backbone)
        width = config.fpn_channels
        self.f5 = nn.Conv2d(self.channels["c5"], width, 1)  # F5 = Conv1x1(C5), Sec. 3.1
        self.laterals = nn.ModuleList()
        self.local_heads = nn.ModuleList()
        self.global_head = nn.Linear(self.channels["c5"], taxonomy.num_classes[-1])
        self._build_levels(taxonomy)
        self._init_taxonomy_buffers()

    # ------------------------------------------------------------------ construction
    def _make_lateral(self, depth: int) -> nn.Module:
        c_low = self.channels[f"c{_SEMANTIC_LEVEL[depth]}"]
        width = self.config.fpn_channels
        if self.config.mhcca:
            return MHCCA(
                width, c_low, width, self.config.heads[depth], kv_proj=self.config.mhcca_kv_proj
            )
        return nn.Conv2d(c_low, width, 1)  # plain FPN lateral (Sec. 3.1)

    def _build_levels(self, taxonomy: Taxonomy) -> None:
        while len(self.laterals) < taxonomy.num_levels:
            self.laterals.append(self._make_lateral(len(self.laterals)))
        while len(self.laterals) > taxonomy.num_levels:
            del self.laterals[-1]
        self.local_heads = nn.ModuleList(
            nn.Linear(self.config.fpn_channels, n) for n in taxonomy.num_classes
        )

    def _init_taxonomy_buffers(self) -> None:
        """(Re)build the tree's index tensors; call after loading onto a ``meta`` model."""
        device = self.global_head.weight.device
        if device.type == "meta":
            device = torch.device("cpu")
        tax = self.taxonomy
        paths = torch.tensor(
            [tax.ancestor_indices(k) for k in range(tax.num_classes[-1])], device=device
        )  # [fine, levels]
        for depth in range(tax.num_levels):
            small = depth < tax.num_levels - 1 and paths.shape[0] * tax.num_classes[depth] <= (
                AGG_MATRIX_MAX
            )
            agg = F.one_hot(paths[:, depth], tax.num_classes[depth]).float() if small else None
            self.register_buffer(f"_agg{depth}", agg, persistent=False)  # Eq. 2 as a matrix
            self.register_buffer(f"_fine_to{depth}", paths[:, depth].clone(), persistent=False)
            parent = torch.tensor(tax.parents[depth] or [0] * tax.num_classes[0], device=device)
            self.register_buffer(f"_parent{depth}", parent, persistent=False)

    def reset_classifier(self, taxonomy: Taxonomy) -> None:
        """New classifier heads (randomly initialised) for ``taxonomy``; attention weights stay.

        Levels that exist in both trees keep their MHCCA; extra levels get new ones.
        """
        if len(self.config.heads) < taxonomy.num_levels:
            raise ValueError(
                f"config.heads has {len(self.config.heads)} values, taxonomy needs {taxonomy.num_levels}"
            )
        device = self.global_head.weight.device
        if self.config.calibrated:  # new heads: the fitted temperatures no longer apply
            self.config = self.config.uncalibrated()
        self.taxonomy = taxonomy
        self._build_levels(taxonomy)
        self.global_head = nn.Linear(self.channels["c5"], taxonomy.num_classes[-1])
        self.to(device)
        self._init_taxonomy_buffers()

    def get_classifier(self) -> dict[str, nn.Module]:
        """The classifier heads: ``global`` and ``local0`` .. ``localN`` (coarse to fine)."""
        heads: dict[str, nn.Module] = {"global": self.global_head}
        heads.update({f"local{i}": h for i, h in enumerate(self.local_heads)})
        return heads

    def load_backbone_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load torchvision ResNet weights (e.g. ImageNet); ``fc.*`` is ignored, anything else
        missing or unexpected is an error."""
        sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        result = self.backbone.load_state_dict(sd, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise KeyError(
                f"backbone weights do not match {self.config.backbone}: missing "
                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        self.weights_origin = self.weights_origin or "backbone"

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters split as the recipe needs them (Sec. 5.2): ``backbone`` and ``new``."""
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        return {"backbone": backbone, "new": [p for p in self.parameters() if id(p) not in ids]}

    def set_temperatures(self, local: Sequence[float] | None, global_: float | None = None) -> None:
        """Store temperature-scaling temperatures (one per level for the local logits, one for
        the global logits) in ``model.config``, so that the forward pass, ``predict``,
        ``evaluate``, ``save_pretrained`` and ONNX export use them; ``None`` drops them (the
        raw model). ``mdan-zoo calibrate`` fits them on the validation split."""
        if local is None:
            config = self.config.uncalibrated()
        else:
            config = dataclasses.replace(
                self.config,
                local_temperatures=tuple(float(t) for t in local),
                global_temperature=None if global_ is None else float(global_),
            )
        _check_temperature_levels(config, self.taxonomy)
        self.config = config

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> tuple[int, ...]:
        return self.taxonomy.num_classes

    @property
    def num_levels(self) -> int:
        return self.taxonomy.num_levels

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's preprocessing keys (``input_size``, ``crop_pct``, ``crop_mode``,
        ``interpolation``, ``mean``, ``std``) plus ``label_names`` (the finest level's classes),
        from ``model.preprocessing``: ``timm.data.resolve_model_data_config(model)`` reads it."""
        return self.preprocessing.pretrained_cfg(label_names=self.taxonomy.fine_labels)

    def eval_transform(self):  # noqa: ANN201 - a torchvision transform
        """The transform these weights expect at inference (from ``model.preprocessing``)."""
        return self.preprocessing.eval_transform()

    def fine_to_level(self, fine: Tensor, level: int) -> Tensor:
        """Class indices at ``level`` of the ancestors of fine class indices ``fine``."""
        return getattr(self, f"_fine_to{level % self.num_levels}")[fine]

    def targets_from_fine(self, fine: Tensor) -> list[Tensor]:
        """One target tensor per level (coarse to fine) from fine-level class indices."""
        return [self.fine_to_level(fine, d) for d in range(self.num_levels)]

    # ------------------------------------------------------------------ forward
    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """Backbone maps ``c2``..``c5`` (strides 4, 8, 16, 32)."""
        return self.backbone(x)

    def _sum_children(self, p_fine: Tensor, depth: int) -> Tensor:
        """Eq. 2: P_G at ``depth`` is the sum of the fine probabilities below each class."""
        if depth == self.taxonomy.num_levels - 1:
            return p_fine
        agg: Tensor | None = getattr(self, f"_agg{depth}")
        if agg is not None:
            return p_fine @ _wide(agg)
        index: Tensor = getattr(self, f"_fine_to{depth}")
        out = p_fine.new_zeros(p_fine.shape[0], self.taxonomy.num_classes[depth])
        return out.index_add_(1, index, p_fine)

    def forward_head(
        self,
        features: dict[str, Tensor],
        *,
        return_cams: bool = False,
        calibration: bool = True,
    ) -> MDANOutput:
        """Both branches on backbone ``features``; ``return_cams`` adds the attention maps.

        Probabilities (the softmaxes, Eq. 2 and P_O) are computed in float32 even under
        autocast: Eq. 2 sums up to 25 children, and bf16 keeps 8 bits of mantissa. With
        temperatures in the config (and ``calibration``) each logit vector is divided by its
        branch's temperature before its softmax; L-CAM still picks children from the raw
        probabilities, so calibration changes what is reported, never what the network sees.
        """
        cfg = self.config
        tax = self.taxonomy
        c5 = features["c5"]
        last = tax.num_levels - 1
        scaled = calibration and cfg.local_temperatures is not None
        t_local = cfg.local_temperatures if scaled else None
        # Bottom-up branch (Sec. 3.2, Eq. 2).
        global_logits = self.global_head(c5.mean(dim=(2, 3)))
        raw_global: list[Tensor] | None = None
        with _float32(c5):
            if scaled and cfg.global_temperature is not None:
                if cfg.lcam and cfg.lcam_parent == "overall":  # L-CAM routes on raw P_O
                    p_raw = torch.softmax(_wide(global_logits), dim=1)
                    raw_global = [self._sum_children(p_raw, d) for d in range(tax.num_levels)]
                global_logits = global_logits / cfg.global_temperature
            p_g_fine = torch.softmax(_wide(global_logits), dim=1)
            global_probs = [self._sum_children(p_g_fine, d) for d in range(tax.num_levels)]

        # Top-down branch (Sec. 3.1 mapping (e), Sec. 4).
        levels: list[LevelOutput] = []
        f_prev = self.f5(c5)
        prev_choice: Tensor | None = None
        for depth in range(tax.num_levels):
            c = features[f"c{_SEMANTIC_LEVEL[depth]}"]
            up = upsample_to(f_prev, c.shape[-2:])  # bilinear (Sec. 3.1)
            lateral = self.laterals[depth]
            if isinstance(lateral, MHCCA):  # UpsampleAdd is added where C' is written
                x = lateral(up, c, residual=up if cfg.upsample_add else None, reuse_residual=True)
            else:
                x = lateral(c) + up if cfg.upsample_add else lateral(c)
            head: nn.Linear = self.local_heads[depth]  # type: ignore[assignment]
            cams = class_activation_maps(x, head.weight) if (cfg.lcam or return_cams) else None
            m: Tensor | None = None
            if cfg.lcam and cams is not None and (depth > 0 or cfg.lcam_root == "all"):
                if depth == 0 or prev_choice is None:
                    keep = torch.ones(
                        x.shape[0], tax.num_classes[depth], dtype=torch.bool, device=x.device
                    )
                else:
                    parent = getattr(self, f"_parent{depth}")
                    keep = (
                        parent[None, :] == prev_choice[:, None]
                    )  # children of the predicted parent
                m = lcam_map(
                    cams, keep, use_mean=cfg.lcam_mean, use_max=cfg.lcam_max, norm=cfg.lcam_norm
                )
                if cfg.lcam_detach:
                    m = m.detach()
            if m is not None and cams is not None:
                # Eq. 1 on F = (1 + M) ⊙ (C' ⊕ F) (Sec. 4.2.2) through the CAMs, which are
                # W (C' ⊕ F): W GAP((1 + M) ⊙ x) = GAP((1 + M) ⊙ W x), a [K, H, W] product
                # instead of a pass over the [C, H, W] map.
                gain = (1.0 + m).flatten(1)[:, :, None]  # [B, HW, 1]
                pooled = torch.bmm(cams.flatten(2), gain)[:, :, 0] / gain.shape[1]
                local_logits = pooled + head.bias
                if depth < last:  # the next level reads the attended map
                    grad = torch.is_grad_enabled()
                    x = (1.0 + m) * x if grad else x.mul_(1.0 + m)
            else:
                local_logits = head(x.mean(dim=(2, 3)))  # Eq. 1
            raw_p_l: Tensor | None = None
            with _float32(x):
                if t_local is not None:
                    raw_p_l = torch.softmax(_wide(local_logits), dim=1)
                    local_logits = local_logits / t_local[depth]
                p_l = torch.softmax(_wide(local_logits), dim=1)
                p_o = cfg.alpha * p_l + (1.0 - cfg.alpha) * global_probs[depth]
            if cfg.lcam_parent == "local":  # a temperature never moves a softmax's argmax
                prev_choice = p_l.argmax(dim=1)
            elif raw_global is not None and raw_p_l is not None:
                raw_p_o = cfg.alpha * raw_p_l + (1.0 - cfg.alpha) * raw_global[depth]
                prev_choice = raw_p_o.argmax(dim=1)
            else:
                prev_choice = p_o.argmax(dim=1)
            levels.append(
                LevelOutput(
                    name=tax.level_names[depth],
                    labels=tax.labels[depth],
                    probs=p_o,
                    local_probs=p_l,
                    global_probs=global_probs[depth],
                    local_logits=local_logits,
                    global_logits=global_logits if depth == last else None,
                    lcam=m[:, 0] if (return_cams and m is not None) else None,
                    cams=cams if return_cams else None,
                )
            )
            f_prev = x
        return MDANOutput(levels=tuple(levels))

    def forward(
        self, x: Tensor, *, return_cams: bool = False, calibration: bool = True
    ) -> MDANOutput:
        """Images ``[B, 3, H, W]`` (normalised) -> :class:`MDANOutput`, coarse to fine.

        ``calibration=False`` ignores the temperatures stored in the config (the raw model)."""
        return self.forward_head(
            self.forward_features(x), return_cams=return_cams, calibration=calibration
        )

    def loss(self, output: MDANOutput, targets: Tensor | Sequence[Tensor]) -> Tensor:
        """Eq. 3. ``targets``: fine-level class indices ``[B]``, or one tensor per level."""
        if isinstance(targets, Tensor):
            targets = self.targets_from_fine(targets)
        return mdan_loss(output, targets, eps=self.config.prob_eps)

    def extra_repr(self) -> str:
        return f"taxonomy={self.taxonomy.name!r} {self.taxonomy.num_classes}, backbone={self.config.backbone}"
