"""MDAN, the Multi-level Dependent Attention Network (Xu et al., CVPR 2022).

Two branches over a torchvision ResNet (Fig. 3):

* bottom-up (global, Sec. 3.2): ``P_G = softmax(gclassifier(GAP(C5)))`` over the finest level;
  coarser levels by summing children (Eq. 2), so P_G's probabilities obey the hierarchy (a
  parent's probability is the sum of its children's; per-level argmaxes can still disagree);
* top-down (local, Sec. 3.1): affective level ``l_a`` reads the semantic level the config's
  mapping (Fig. 2, ``MDANConfig.mapping``; (e): ``l_s = 5 - l_a``) gives it, on an FPN whose
  lateral connections are MHCCA (Sec. 4.1), followed by L-CAM (Sec. 4.2) and a local classifier
  (Eq. 1). Settings (a)-(d) have no top-down sums (no feature fusion).

``P_O = alpha * P_L + (1 - alpha) * P_G`` per level; the loss is Eq. 3 as cross-entropy on P_O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ._checkpointing import checkpointed
from .config import MDANConfig, Preprocessing
from .hub import PretrainedMixin
from .layers import (
    MHCCA,
    LevelOutput,
    MDANOutput,
    ResNetTrunk,
    child_table,
    class_activation_maps,
    lcam_map,
    mdan_loss,
    selected_cams,
    upsample_to,
)
from .prediction import PredictMixin
from .taxonomy import Taxonomy, as_taxonomy
from .untrained import loaded_hook

__all__ = ["MDAN", "LevelOutput", "MDANOutput", "ResNetTrunk", "mdan_loss", "timm_cfg"]

AGG_MATRIX_MAX = 1 << 22
"""Largest fine x coarse one-hot matrix (entries, 16 MB) that Eq. 2 uses as a matrix product;
a larger tree sums children with ``index_add`` instead, so a legal 30,000-class tree never
allocates a 30,000 x 30,000 matrix (3.6 GB). The finest level needs none: P_G there is the
global softmax itself."""


def _take_indices(
    count: int, indices: int | Sequence[int] | None, info: list[dict[str, Any]]
) -> list[int]:
    """timm's ``feature_take_indices``, sorted and unique: None = all, n = the last n, a list =
    those (negative from the end); a bad index says which maps there are."""
    names = ", ".join(f"{i}: {m['name']}" for i, m in enumerate(info))
    if indices is None:
        return list(range(count))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= count:
            raise ValueError(f"indices={indices}: take the last 1 to {count} maps ({names})")
        return list(range(count - indices, count))
    if not isinstance(indices, Sequence) or isinstance(indices, (str, bytes)):
        raise TypeError(f"indices must be None, an int or a sequence of ints, got {indices!r}")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise TypeError(f"indices must be None, an int or a sequence of ints, got {indices!r}")
    out = []
    for i in indices:
        if not -count <= i < count:
            raise ValueError(f"feature index {i} is out of range for these {count} maps ({names})")
        out.append(i % count)
    return sorted(set(out))


def timm_cfg(preprocessing: Preprocessing, taxonomy: Taxonomy | None) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` of an MDAN: the preprocessing in timm's keys (``input_size``,
    ``crop_pct``, ``crop_mode``, ``interpolation``, ``mean``, ``std``; see
    :meth:`Preprocessing.pretrained_cfg` for what timm cannot build), ``label_names`` and
    ``num_classes`` of the finest level, ``pool_size`` (C5's size), ``first_conv`` and
    ``classifier`` (every head, global first). ``taxonomy=None``: the keys that need none."""
    labels = taxonomy.fine_labels if taxonomy is not None else None
    cfg = preprocessing.pretrained_cfg(label_names=labels)
    side = math.ceil(preprocessing.input_size / 32)
    cfg.update(pool_size=(side, side), first_conv="backbone.conv1", fixed_input_size=False)
    if taxonomy is not None:
        heads = (f"local_heads.{d}" for d in range(taxonomy.num_levels))
        cfg.update(num_classes=taxonomy.num_classes[-1], classifier=("global_head", *heads))
    return cfg


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
    :class:`~mdan_zoo.hub.PretrainedMixin`, ``predict`` / ``attention_maps`` from
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
        _check_temperature_levels(config, taxonomy)
        self.taxonomy = taxonomy
        self.config = config
        self.preprocessing = preprocessing or Preprocessing()
        self.weights_origin: str | None = None  # random init: predict warns (untrained.py)
        self._checkpoint_top_down = False  # set_grad_checkpointing
        self.register_load_state_dict_post_hook(loaded_hook)
        resnet = getattr(torchvision.models, config.backbone)(weights=None)
        self.backbone = ResNetTrunk(resnet)
        self.channels = _backbone_channels(config.backbone)
        width = config.fpn_channels
        # F5 = Conv1x1(C5) (Sec. 3.1), where something reads it: a level at C5, MHCCA's
        # queries or the top-down sums (a plain (b)/(d) would leave it unused).
        reads_f5 = config.mhcca or config.top_down_sums or 5 in config.semantic_levels(1)
        self.f5 = nn.Conv2d(self.channels["c5"], width, 1) if reads_f5 else None
        self.laterals = nn.ModuleList()
        self.local_heads = nn.ModuleList()
        self.global_head = nn.Linear(self.channels["c5"], taxonomy.num_classes[-1])
        self._build_levels(taxonomy)
        self._init_taxonomy_buffers()

    # ------------------------------------------------------------------ construction
    def _make_lateral(self, index: int) -> nn.Module:
        """The lateral of C_{4 - index} (``laterals[0]`` is C4's, then C3, C2)."""
        c_low = self.channels[f"c{4 - index}"]
        width = self.config.fpn_channels
        if self.config.mhcca:
            return MHCCA(
                width, c_low, width, self.config.heads[index], kv_proj=self.config.mhcca_kv_proj
            )
        return nn.Conv2d(c_low, width, 1)  # plain FPN lateral (Sec. 3.1)

    def _build_levels(self, taxonomy: Taxonomy) -> None:
        self.semantic_levels = self.config.semantic_levels(taxonomy.num_levels)
        count = sum(1 for ls in self.semantic_levels if ls < 5)  # F5 is model.f5
        if len(self.config.heads) < count:
            raise ValueError(
                f"config.heads lists {len(self.config.heads)} values but mapping "
                f"({self.config.mapping}) of a {taxonomy.num_levels}-level taxonomy has "
                f"{count} MHCCA levels: give one MHCCA head count per level (per semantic "
                "level: C4, C3, C2)"
            )
        while len(self.laterals) < count:
            self.laterals.append(self._make_lateral(len(self.laterals)))
        while len(self.laterals) > count:
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
            if depth > 0:  # L-CAM: the children of every class of the level above
                table, counts = child_table(tax.parents[depth], tax.num_classes[depth - 1])
                self.register_buffer(f"_children{depth}", table.to(device), persistent=False)
                self.register_buffer(f"_num_children{depth}", counts.to(device), persistent=False)

    def reset_classifier(self, taxonomy: Taxonomy | str) -> None:
        """New classifier heads (randomly initialised) for ``taxonomy`` (a :class:`Taxonomy`, a
        built-in name or a ``.json`` file, as every ``taxonomy=``); attention weights stay.

        Levels that exist in both trees keep their MHCCA; extra levels get new ones. timm's
        ``reset_classifier(num_classes)`` has no MDAN meaning (classes come with their tree):
        a number is a ``TypeError`` that says so.
        """
        if not isinstance(taxonomy, (Taxonomy, str, os.PathLike)):
            raise TypeError(
                f"reset_classifier(taxonomy) takes a Taxonomy, a built-in taxonomy name or a "
                f".json file, got {type(taxonomy).__name__} {taxonomy!r}: an MDAN's classes "
                "come with their tree (timm's reset_classifier(num_classes) has no meaning here)"
            )
        taxonomy = as_taxonomy(taxonomy)
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

    def set_grad_checkpointing(
        self, enable: bool = True, *, backbone: bool | None = None, top_down: bool | None = None
    ) -> None:
        """Trade compute for training memory, as timm's ``set_grad_checkpointing``: the trunk
        recomputes each residual block and the top-down branch each level's MHCCA and upsampling
        in the backward pass instead of storing their activations. ``backbone`` / ``top_down``
        set one part alone (default: both follow ``enable``). Outputs, gradients and BatchNorm
        statistics are those without it; only training (autograd on) is affected."""
        self.backbone.set_grad_checkpointing(enable if backbone is None else backbone)
        self._checkpoint_top_down = bool(enable if top_down is None else top_down)

    @property
    def grad_checkpointing(self) -> bool:
        """Whether any part recomputes activations in backward (:meth:`set_grad_checkpointing`)."""
        return self.backbone.grad_checkpointing or self._checkpoint_top_down

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's ``feature_info``: one dict per map :meth:`forward_intermediates` returns, in its
        order: by stride, the trunk's C before the top-down F of the same stride (``name``
        ``"c2"`` .. ``"c5"``, ``"f5"`` .. ``"f2"``), with ``num_chs``, ``reduction``, ``module``.
        The F maps are those this taxonomy's top-down branch builds (F5 and one per level)."""
        width = self.config.fpn_channels
        maps = [(f"c{s}", self.channels[f"c{s}"], f"backbone.layer{s - 1}") for s in (2, 3, 4, 5)]
        if self.f5 is not None:
            maps.append(("f5", width, "f5"))
        maps += [(f"f{s}", width, f"laterals.{4 - s}") for s in self._top_down_levels()]
        maps.sort(key=lambda m: (int(m[0][1]), m[0][0]))  # stride, then C before F
        return [
            {"name": n, "num_chs": c, "reduction": 2 ** int(n[1]), "module": mod}
            for n, c, mod in maps
        ]

    def _top_down_levels(self) -> list[int]:
        """The semantic levels below C5 whose F maps the local classifiers read (the mapping's)."""
        return [ls for ls in self.semantic_levels if ls < 5]

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's ``forward_intermediates``: ``(C5, maps)``, or ``maps`` alone with
        ``intermediates_only=True``; ``maps`` follow :attr:`feature_info` (C2..C5 and the F
        maps, each F as the next level reads it: with L-CAM, ``(1 + M) ⊙ (C' ⊕ F)``).

        ``indices``: all maps (None), the last n (an int) or those listed (negative from the end).
        ``stop_early`` runs the trunk only as far as the last map asked for (the F maps need the
        whole trunk). ``norm`` has no effect (ResNet has no final norm); ``output_fmt`` is NCHW.
        """
        if output_fmt != "NCHW":  # timm passes its Format enum, a str
            raise ValueError(
                f"output_fmt must be 'NCHW' (MDAN's maps are NCHW), got {output_fmt!r}"
            )
        del norm  # no final norm layer to apply (as timm's ResNet)
        info = self.feature_info
        names = [info[i]["name"] for i in _take_indices(len(info), indices, info)]
        if any(n.startswith("f") for n in names) or not stop_early:
            last = 5
        else:
            last = max(int(n[1]) for n in names)
        maps = self.backbone.stages(x, last)
        if any(n.startswith("f") for n in names):
            top: dict[str, Tensor] = {}
            self._head(maps, return_cams=False, top_down=top)
            maps.update(top)
        intermediates = [maps[n] for n in names]
        return intermediates if intermediates_only else (maps[f"c{last}"], intermediates)

    @property
    def num_features(self) -> int:
        """Channels of C5, the map the global classifier pools (timm's ``num_features``)."""
        return self.channels["c5"]

    @property
    def head_hidden_size(self) -> int:
        """Width of the global classifier's input (timm's name): :attr:`num_features`."""
        return self.num_features

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> tuple[int, ...]:
        return self.taxonomy.num_classes

    @property
    def num_levels(self) -> int:
        return self.taxonomy.num_levels

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg`` (:func:`timm_cfg` of the model's preprocessing and
        taxonomy): ``timm.data.resolve_model_data_config(model)`` reads it."""
        return timm_cfg(self.preprocessing, self.taxonomy)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name of :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

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

    def _lcam(
        self,
        x: Tensor,
        head: nn.Linear,
        depth: int,
        prev_choice: Tensor | None,
        return_cams: bool,
        *,
        attend_next: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """L-CAM (Sec. 4.2) and the local classifier (Eq. 1) at ``depth``: (the map the next
        level reads -- attended when ``attend_next`` --, local logits, M [B, 1, H, W] or None,
        every class's CAMs or None).

        Cost follows what M uses: below the first level only the CAMs of the children of each
        image's predicted parent are computed (:func:`selected_cams`), and the classifier reads
        ``W GAP((1 + M) x)`` from the pooled map unless all K CAMs exist anyway and K < C
        (then ``GAP((1 + M) W x)``, the same number, is cheaper). Same outputs as fusing all
        K CAMs under a mask; the first level (every class kept) still computes all of them.
        """
        cfg = self.config
        lcam_here = cfg.lcam and (depth > 0 or cfg.lcam_root == "all")
        every_class = depth == 0 or prev_choice is None
        want_all = return_cams or (lcam_here and every_class)
        cams = class_activation_maps(x, head.weight) if want_all else None
        if not lcam_here:
            return x, head(x.mean(dim=(2, 3))), None, cams  # Eq. 1
        choice: Tensor = prev_choice  # type: ignore[assignment]  # None only with every_class
        if cams is None:
            tables = getattr(self, f"_children{depth}"), getattr(self, f"_num_children{depth}")
            fuse_from, keep = selected_cams(x, head.weight, *tables, choice)
        elif every_class:
            fuse_from, keep = cams, torch.ones(cams.shape[:2], dtype=torch.bool, device=x.device)
        else:  # every map asked for anyway: mask the children among them
            fuse_from, keep = cams, getattr(self, f"_parent{depth}")[None, :] == choice[:, None]
        m = lcam_map(
            fuse_from, keep, use_mean=cfg.lcam_mean, use_max=cfg.lcam_max, norm=cfg.lcam_norm
        )
        if cfg.lcam_detach:
            m = m.detach()
        # Eq. 1 on F = (1 + M) ⊙ (C' ⊕ F) (Sec. 4.2.2).
        gain = (1.0 + m).flatten(1)[:, :, None]  # [B, HW, 1]
        last = not attend_next  # nothing reads the attended map after this level
        if cams is not None and cams.shape[1] < x.shape[1]:
            # W GAP((1 + M) ⊙ x) = GAP((1 + M) ⊙ W x): a [K, H, W] product, not [C, H, W]
            local_logits = torch.bmm(cams.flatten(2), gain)[:, :, 0] / gain.shape[1] + head.bias
            if not last:  # the next level reads the attended map
                x = (1.0 + m) * x if torch.is_grad_enabled() else x.mul_(1.0 + m)
            return x, local_logits, m, cams
        if last:  # the attended map itself is never needed: pool it in one product
            pooled = torch.bmm(x.flatten(2), gain)[:, :, 0] / gain.shape[1]
            return x, head(pooled), m, cams
        x = (1.0 + m) * x if torch.is_grad_enabled() else x.mul_(1.0 + m)
        return x, head(x.mean(dim=(2, 3))), m, cams

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
        return self._head(features, return_cams=return_cams, top_down=None, calibration=calibration)

    def _head(
        self,
        features: dict[str, Tensor],
        *,
        return_cams: bool,
        top_down: dict[str, Tensor] | None,
        calibration: bool = True,
    ) -> MDANOutput:
        """:meth:`forward_head`; ``top_down`` (a dict) receives the F maps by name (``"f5"`` ..)."""
        cfg = self.config
        tax = self.taxonomy
        c5 = features["c5"]
        last = tax.num_levels - 1
        t_local = cfg.local_temperatures if calibration else None
        # Bottom-up branch (Sec. 3.2, Eq. 2).
        global_logits = self.global_head(c5.mean(dim=(2, 3)))
        with _float32(c5):
            p_g_fine = torch.softmax(_wide(global_logits), dim=1)
            global_probs = raw_global = [
                self._sum_children(p_g_fine, d) for d in range(tax.num_levels)
            ]
            if t_local is not None and cfg.global_temperature is not None:  # temperature scaling
                global_logits = global_logits / cfg.global_temperature
                p_g_fine = torch.softmax(_wide(global_logits), dim=1)
                global_probs = [self._sum_children(p_g_fine, d) for d in range(tax.num_levels)]

        # Top-down branch (Sec. 3.1 with the mapping of Fig. 2, Sec. 4). The maps are built from
        # the top down; when level 1 reads the highest of them ((a), (b), (e)) each level's
        # attended map is the next one's F above, else ((c), (d), (f)) the maps come first.
        levels: list[LevelOutput] = []
        chain = sorted(self.semantic_levels, reverse=True)
        in_order = list(self.semantic_levels) == chain
        f_prev = self.f5(c5) if self.f5 is not None and chain[0] < 5 else None
        if top_down is not None and f_prev is not None:
            top_down["f5"] = f_prev
        built: dict[int, Tensor] = {}
        if not in_order:
            for ls in chain:
                f_prev = built[ls] = self._top_down_map(ls, features, f_prev)
        prev_choice: Tensor | None = None
        for depth in range(tax.num_levels):
            ls = self.semantic_levels[depth]
            x = built[ls] if ls in built else self._top_down_map(ls, features, f_prev)
            head: nn.Linear = self.local_heads[depth]  # type: ignore[assignment]
            attend_next = depth < last and in_order  # the next level reads the attended map
            x, local_logits, m, cams = self._lcam(
                x, head, depth, prev_choice, return_cams, attend_next=attend_next
            )
            if top_down is not None:
                if m is not None and not attend_next:  # only asked for: the map, attended
                    x = (1.0 + m) * x
                top_down[f"f{ls}"] = x
            with _float32(x):
                raw_p_l = p_l = torch.softmax(_wide(local_logits), dim=1)
                if t_local is not None:
                    local_logits = local_logits / t_local[depth]
                    p_l = torch.softmax(_wide(local_logits), dim=1)
                p_o = cfg.alpha * p_l + (1.0 - cfg.alpha) * global_probs[depth]
            # L-CAM picks the next parent from the raw probabilities: calibration changes what is
            # reported, never what the network attends to (a temperature keeps P_L's argmax but
            # can move that of P_O, a mixture of two softmaxes).
            if cfg.lcam_parent == "local":
                prev_choice = raw_p_l.argmax(dim=1)
            elif t_local is None:
                prev_choice = p_o.argmax(dim=1)
            else:
                prev_choice = (cfg.alpha * raw_p_l + (1.0 - cfg.alpha) * raw_global[depth]).argmax(
                    1
                )
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

    def _top_down_map(self, ls: int, features: dict[str, Tensor], above: Tensor | None) -> Tensor:
        """F_ls from C_ls and the map ``above`` it (None where nothing reads it): MHCCA or the
        1x1 lateral, plus Upsample(above) where the mapping has the top-down sums; recomputed
        in the backward pass instead of stored under ``set_grad_checkpointing(top_down=True)``."""
        if ls == 5:
            assert self.f5 is not None  # built whenever a level reads C5
            return self.f5(features["c5"])
        c = features[f"c{ls}"]
        lateral = self.laterals[4 - ls]
        if above is None or not (self.config.top_down_sums or isinstance(lateral, MHCCA)):
            return lateral(c)  # no feature fusion, no MHCCA: the 1x1 lateral alone
        if self._checkpoint_top_down and torch.is_grad_enabled():
            return checkpointed(lateral, above, c, call=partial(self._fuse, lateral))
        return self._fuse(lateral, above, c)

    def _fuse(self, lateral: nn.Module, above: Tensor, c: Tensor) -> Tensor:
        """C' ⊕ Upsample(F) at ``c``'s level: MHCCA (or FPN's 1x1 conv) and UpsampleAdd."""
        up = upsample_to(above, c.shape[-2:])  # bilinear (Sec. 3.1)
        sums = self.config.top_down_sums
        if isinstance(lateral, MHCCA):  # UpsampleAdd is added where C' is written
            return lateral(up, c, residual=up if sums else None, reuse_residual=True)
        return lateral(c) + up

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
        return (
            f"taxonomy={self.taxonomy.name!r} {self.taxonomy.num_classes}, "
            f"backbone={self.config.backbone}, mapping=({self.config.mapping})"
        )
