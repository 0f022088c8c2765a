"""The parts of MDAN: the bottom-up trunk (Sec. 3.2), the two attention modules (Sec. 4),
MHCCA (Eq. 4) and L-CAM (Sec. 4.2), and what the network gives per level (:class:`LevelOutput`,
:class:`MDANOutput`) with the loss on it (Eq. 3, :func:`mdan_loss`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ._checkpointing import checkpointed

__all__ = [
    "MHCCA",
    "LevelOutput",
    "MDANOutput",
    "ResNetTrunk",
    "child_table",
    "class_activation_maps",
    "lcam_map",
    "mdan_loss",
    "selected_cams",
    "upsample_to",
]


def upsample_to(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize of ``x`` [B, C, h, w] to ``size`` (``align_corners=False``): Sec. 3.1's
    Upsample. Exactly twice the size (every level at 448 px) takes a direct two-tap kernel
    (weights 3/4 and 1/4, edges clamped), the same function as ``F.interpolate`` without its
    detour through a channels-last copy, which on CPU costs more than the resize itself;
    any other size goes to ``F.interpolate``."""
    h, w = x.shape[-2:]
    if tuple(size) == (2 * h, 2 * w) and h > 1 and w > 1 and x.dim() == 4 and not _tracing():
        return _Upsample2x.apply(x)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _up2(x: Tensor, dim: int) -> Tensor:
    """Twice the size along ``dim`` (-1 or -2): out[2j] = 3/4 x[j] + 1/4 x[j-1], out[2j+1] =
    3/4 x[j] + 1/4 x[j+1], with x[-1] = x[0] and x[n] = x[n-1] (what align_corners=False does)."""
    n = x.shape[dim]
    shape = list(x.shape)
    shape.insert(x.dim() + dim + 1, 2)  # the new axis goes right after ``dim``
    out = x.new_empty(shape)
    even, odd = out.select(dim, 0), out.select(dim, 1)
    torch.lerp(
        x.narrow(dim, 1, n - 1), x.narrow(dim, 0, n - 1), 0.25, out=even.narrow(dim, 1, n - 1)
    )
    even.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
    torch.lerp(
        x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), 0.25, out=odd.narrow(dim, 0, n - 1)
    )
    odd.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1))
    return out.flatten(dim - 1, dim)  # interleave: [.., n, 2, ..] -> [.., 2n, ..]


def _up2_adjoint(g: Tensor, dim: int) -> Tensor:
    """The transpose of :func:`_up2` along ``dim``: 2n -> n."""
    n = g.shape[dim] // 2
    g = g.unflatten(dim, (n, 2))
    even, odd = g.select(dim, 0), g.select(dim, 1)
    out = torch.add(even, odd).mul_(0.75)
    out.narrow(dim, 0, 1).add_(even.narrow(dim, 0, 1), alpha=0.25)
    out.narrow(dim, n - 1, 1).add_(odd.narrow(dim, n - 1, 1), alpha=0.25)
    out.narrow(dim, 0, n - 1).add_(even.narrow(dim, 1, n - 1), alpha=0.25)
    out.narrow(dim, 1, n - 1).add_(odd.narrow(dim, 0, n - 1), alpha=0.25)
    return out


class _Upsample2x(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: D102
        return _up2(_up2(x, -1), -2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        return _up2_adjoint(_up2_adjoint(grad, -2), -1)


class MHCCA(nn.Module):
    """Multi-head Cross Channel Attention (Sec. 4.1, Eq. 4, Fig. 4).

    ``C' = O( softmax( Q(F) C^T / sqrt(d) ) C )``: queries are the ``C^H`` channels of the
    higher-level map F (already brought to C's resolution), keys and values are the raw ``C^L``
    backbone channels of C. The attention is channel-to-channel, a ``C^H x C^L`` matrix per head.
    Heads split the *flattened spatial positions* into ``h`` contiguous chunks of
    ``d = ceil(HW / h)`` (Table 4); when ``HW`` is not divisible by ``h`` the last chunk is
    shorter, which is the same as zero-padding the positions to ``h * d`` (zero positions add
    nothing to any dot product or output), so any image size works.

    Args:
        high_channels: C^H, channels of F (the FPN width).
        low_channels: C^L, channels of the backbone map C.
        out_channels: channels of C' (the FPN width, so it can be added to Upsample(F)).
        heads: h.
        kv_proj: add 1x1 K and V projections on C (Table 5, row 2: it over-fits, so off).
        fold: evaluation order of Q and O (same math, see :meth:`forward`): ``None`` (default)
            picks the cheaper one per call, ``True`` / ``False`` force folded / direct. Kept as
            an attribute so that benchmarks and tests can compare the two.
    """

    def __init__(
        self,
        high_channels: int,
        low_channels: int,
        out_channels: int,
        heads: int,
        *,
        kv_proj: bool = False,
        fold: bool | None = None,
    ) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads = heads
        self.fold = fold
        self.q = nn.Conv2d(high_channels, high_channels, 1)
        self.k = nn.Conv2d(low_channels, low_channels, 1) if kv_proj else None
        self.v = nn.Conv2d(low_channels, low_channels, 1) if kv_proj else None
        self.o = nn.Conv2d(high_channels, out_channels, 1)

    def forward(
        self,
        f_high: Tensor,
        c_low: Tensor,
        residual: Tensor | None = None,
        *,
        reuse_residual: bool = False,
    ) -> Tensor:
        """``f_high`` [B, C^H, H, W] (at C's resolution), ``c_low`` [B, C^L, H, W] -> C'
        [B, out, H, W]; with ``residual`` (same shape as C') the result is ``C' + residual``
        (UpsampleAdd passes ``residual=f_high``), added where C' is written instead of in a
        separate pass. ``reuse_residual=True`` lets the no-autograd path write the result into
        ``residual``'s memory (the caller no longer needs it).

        Two evaluation orders of the same product, picked by cost: on large maps (``h * C^L <
        HW``, e.g. C2 and C3 at 448 px) the 1x1 convolutions Q and O are folded into the small
        per-head ``C^H x C^L`` matrices instead of being run on every position:
        ``Q(F) C^T = W_q (F C^T) + b_q (C 1)^T`` and ``O(A C) = (W_o A) C + b_o``. The result is
        the same up to float rounding; the folding only saves multiply-adds.

        Without autograd (``torch.no_grad`` / ``inference_mode``, no autocast, not compiling or
        exporting) the heads write straight into one output tensor: at 448 px the maps at C2 are 51 MB each (width 1024),
        and every fresh tensor of that size costs the CPU more in page faults than the
        arithmetic that fills it.
        """
        b, _, h, w = c_low.shape
        if f_high.shape[-2:] != c_low.shape[-2:]:
            raise ValueError(
                f"MHCCA needs F at C's resolution, got {tuple(f_high.shape[-2:])} vs {(h, w)}"
            )
        n = h * w
        d = math.ceil(n / self.heads)
        scale = 1.0 / math.sqrt(d)
        k = (self.k(c_low) if self.k is not None else c_low).flatten(2)
        v = k if self.v is None else self.v(c_low).flatten(2)  # no V projection: V is C itself
        fold = self.heads * k.shape[1] < n if self.fold is None else self.fold
        b_q, b_o = self.q.bias, self.o.bias
        assert b_q is not None and b_o is not None  # built with bias=True
        q = f_high.flatten(2) if fold else self.q(f_high).flatten(2)
        # Heads are contiguous chunks of d positions: split gives strided views ([B, C, d], row
        # stride HW) that batched matmul reads in place, and its backward is one concatenation.
        ks = k.split(d, dim=2)
        vs = ks if v is k else v.split(d, dim=2)
        qk = [
            torch.bmm(q_i, k_i.transpose(1, 2)) for q_i, k_i in zip(q.split(d, 2), ks, strict=True)
        ]
        scores = torch.stack(qk, dim=2)  # [B, C^H, h, C^L]: every head's channel-by-channel map
        if fold:  # scale * (W_q (F C^T) + b_q (C 1)^T), W_q as a 1x1 conv over all heads at once
            row_sums = torch.stack([k_i.sum(-1) for k_i in ks], dim=1)  # [B, h, C^L]
            scores = F.conv2d(scores, self.q.weight)
            scores = scores.addcmul_(b_q[None, :, None, None], row_sums[:, None]).mul_(scale)
        else:
            scores = scores * scale
        attn = torch.softmax(scores, dim=-1)  # over C^L, per channel of F and head
        mixes = (F.conv2d(attn, self.o.weight) if fold else attn).unbind(2)  # (W_o A) C, folded
        fused = not torch.is_grad_enabled() and not _autocast_on(c_low) and not _tracing()
        reuse = fused and reuse_residual and residual is not None and residual.is_contiguous()
        if fold:
            out = self._apply_heads(mixes, vs, b_o[:, None], residual, fused, reuse)
        else:
            y = self._apply_heads(mixes, vs, None, None, fused, False)
            out = self.o(y.view(b, -1, h, w)).flatten(2)
            if residual is not None:
                res = residual.flatten(2)
                out = res.add_(out) if reuse else (out.add_(res) if fused else out + res)
        return out.view(b, -1, h, w)

    @staticmethod
    def _apply_heads(
        mixes: Sequence[Tensor],
        vs: Sequence[Tensor],
        bias: Tensor | None,
        residual: Tensor | None,
        fused: bool,
        reuse: bool,
    ) -> Tensor:
        """``cat_i(mixes[i] @ vs[i]) (+ bias) (+ residual)`` over the head chunks -> [B, C, HW];
        ``reuse`` writes it into ``residual``."""
        b, c = mixes[0].shape[:2]
        n = sum(v_i.shape[2] for v_i in vs)
        if not fused:  # autograd: one concatenation, then the additions in place
            out = torch.cat([torch.bmm(m, v_i) for m, v_i in zip(mixes, vs, strict=True)], 2)
            if bias is not None:
                out = out.add_(bias)
            if residual is not None:
                out = out.add_(residual.flatten(2))
            return out
        if reuse and residual is not None:  # start from residual (+ bias) in place
            out = residual.flatten(2)
            if bias is not None:
                out.add_(bias)
        else:
            out = mixes[0].new_empty(b, c, n, dtype=torch.result_type(mixes[0], vs[0]))
            if residual is not None and bias is not None:
                torch.add(residual.flatten(2), bias, out=out)
            elif residual is not None:
                out.copy_(residual.flatten(2))
            elif bias is not None:
                out.copy_(bias.expand(b, c, n))
        start = 0
        for m, v_i in zip(mixes, vs, strict=True):
            chunk = out.narrow(2, start, v_i.shape[2])
            if residual is None and bias is None:
                torch.bmm(m, v_i, out=chunk)
            else:
                torch.baddbmm(chunk, m, v_i, out=chunk)  # (out= form: counted by FlopCounterMode)
            start += v_i.shape[2]
        return out


def _tracing() -> bool:
    """Inside torch.compile, torch.export, torch.jit.trace or an ONNX export: they want plain ops (writes into
    strided ``out=`` views are eager-mode optimisations they do not take)."""
    return (
        torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
    )


def _autocast_on(t: Tensor) -> bool:
    kind = t.device.type
    return torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)


def class_activation_maps(feature: Tensor, weight: Tensor) -> Tensor:
    """CAM of every class (Sec. 4.2.1): ``M^k(x, y) = sum_c w^k_c F^c(x, y)`` -> [B, K, H, W]."""
    return torch.einsum("kc,bchw->bkhw", weight, feature)


def child_table(parents: Sequence[int], num_parents: int) -> tuple[Tensor, Tensor]:
    """Each parent's children as rows of class indices: ``(table [P, n], counts [P])``, where
    ``n`` is the largest number of children and shorter rows are padded with class 0 (the
    padding is masked out by ``counts``). Children keep their class-index order."""
    cpu = torch.device("cpu")  # index tables are built on the CPU, then moved with the model
    parent = torch.as_tensor(list(parents), dtype=torch.long, device=cpu)
    counts = torch.bincount(parent, minlength=num_parents)
    order = torch.argsort(parent, stable=True)  # children grouped by parent, in class order
    starts = torch.cumsum(counts, 0) - counts
    column = torch.arange(len(parent), device=cpu) - starts[parent[order]]
    width = max(1, int(counts.max())) if num_parents else 1
    table = torch.zeros(num_parents, width, dtype=torch.long, device=cpu)
    table[parent[order], column] = order
    return table, counts


def selected_cams(
    feature: Tensor, weight: Tensor, table: Tensor, counts: Tensor, choice: Tensor
) -> tuple[Tensor, Tensor]:
    """CAMs of the children of each image's chosen parent only (Sec. 4.2.2): ``(cams [B, n, H,
    W], keep [B, n])`` with ``table`` / ``counts`` from :func:`child_table` and ``choice`` [B]
    the parent predicted at the level above. Costs ``n x C x H x W`` per image instead of
    ``K x C x H x W`` for all K classes; outside compiling and exporting, ``n`` is the most
    children any chosen parent has in this batch."""
    index, count = table[choice], counts[choice]  # [B, n], [B]
    if not _tracing() and feature.device.type != "meta":
        index = index[:, : max(1, int(count.max()))]  # padding at the end of every row
    keep = torch.arange(index.shape[1], device=index.device)[None, :] < count[:, None]
    b, c, h, w = feature.shape
    cams = torch.bmm(weight[index], feature.reshape(b, c, h * w))  # [B, n, HW]
    return cams.view(b, -1, h, w), keep


def lcam_map(
    cams: Tensor,
    keep: Tensor,
    *,
    use_mean: bool = True,
    use_max: bool = True,
    norm: str = "minmax",
) -> Tensor:
    """L-CAM's fused map M (Sec. 4.2.2) from the CAMs of the kept classes -> [B, 1, H, W].

    ``keep`` [B, K] marks, per image, the children of the class predicted at the level above
    (all classes at the first level). ``M = mean_k M^k + max_k M^k`` over the kept k, each
    pooling switchable (Table 5), then scaled by ``norm``: ``"minmax"`` per image to [0, 1],
    ``"sigmoid"``, or ``"none"`` (raw; the paper does not say).
    """
    mask = keep[:, :, None, None].to(cams.dtype)
    fused = cams.new_zeros(cams.shape[0], 1, *cams.shape[2:])
    if use_mean:
        count = mask.sum(dim=1, keepdim=True).clamp_min(1.0)
        fused = fused + (cams * mask).sum(dim=1, keepdim=True) / count
    if use_max:
        neg = torch.finfo(cams.dtype).min
        fused = fused + cams.masked_fill(mask == 0, neg).amax(dim=1, keepdim=True)
    if norm == "minmax":
        flat = fused.flatten(1)
        lo = flat.amin(dim=1)[:, None, None, None]
        hi = flat.amax(dim=1)[:, None, None, None]
        fused = (fused - lo) / (hi - lo).clamp_min(1e-6)
    elif norm == "sigmoid":
        fused = torch.sigmoid(fused)
    elif norm != "none":
        raise ValueError(f"unknown L-CAM norm {norm!r}")
    return fused


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
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each residual block in the backward pass instead of storing its activations
        (timm's per-block scheme); outputs, gradients and BatchNorm statistics are unchanged."""
        self.grad_checkpointing = bool(enable)

    def stages(self, x: Tensor, last: int = 5) -> dict[str, Tensor]:
        """C2 .. C``last`` (``last`` from 2 to 5): the trunk stops after the stage it needs."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, Tensor] = {}
        layers = (self.layer1, self.layer2, self.layer3, self.layer4)
        for level, layer in enumerate(layers[: last - 1], start=2):
            if self.grad_checkpointing and torch.is_grad_enabled():
                for block in layer:
                    x = checkpointed(block, x)
            else:
                x = layer(x)
            out[f"c{level}"] = x
        return out

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.stages(x)


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
