"""The two attention modules of MDAN (paper Sec. 4): MHCCA (Eq. 4) and L-CAM (Sec. 4.2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MHCCA", "class_activation_maps", "lcam_map"]


class MHCCA(nn.Module):
    """Multi-head Cross Channel Attention (Sec. 4.1, Eq. 4, Fig. 4).

    ``C' = O( softmax( Q(F) C^T / sqrt(d) ) C )``: queries are the ``C^H`` channels of the
    higher-level map F (already brought to C's resolution), keys and values are the raw ``C^L``
    backbone channels of C. The attention is channel-to-channel, a ``C^H x C^L`` matrix per head.
    Heads split the *flattened spatial positions* into ``h`` contiguous chunks of ``d = HW / h``
    (Table 4). When ``HW`` is not divisible by ``h`` the positions are zero-padded to
    ``h * ceil(HW / h)``; zero positions add nothing to any dot product or output, so any image
    size works.

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

    def forward(self, f_high: Tensor, c_low: Tensor) -> Tensor:
        """``f_high`` [B, C^H, H, W] (at C's resolution), ``c_low`` [B, C^L, H, W] -> [B, out, H, W].

        Two evaluation orders of the same product, picked by cost: on large maps (``h * C^L <
        HW``, e.g. C2 and C3 at 448 px) the 1x1 convolutions Q and O are folded into the small
        per-head ``C^H x C^L`` matrices instead of being run on every position:
        ``Q(F) C^T = W_q (F C^T) + b_q (C 1)^T`` and ``O(A C) = (W_o A) C + b_o``. The result is
        the same up to float rounding; the folding only saves multiply-adds.
        """
        b, _, h, w = c_low.shape
        if f_high.shape[-2:] != c_low.shape[-2:]:
            raise ValueError(
                f"MHCCA needs F at C's resolution, got {tuple(f_high.shape[-2:])} vs {(h, w)}"
            )
        n = h * w
        heads = self.heads
        d = math.ceil(n / heads)
        pad = d * heads - n
        scale = 1.0 / math.sqrt(d)
        k = (self.k(c_low) if self.k is not None else c_low).flatten(2)
        v = k if self.v is None else self.v(c_low).flatten(2)  # no V projection: V is C itself
        cl = k.shape[1]
        fold = heads * cl < n if self.fold is None else self.fold
        q = f_high.flatten(2) if fold else self.q(f_high).flatten(2)
        if pad:  # zero positions add nothing to any dot product; the output is cropped
            q, k_padded = F.pad(q, (0, pad)), F.pad(k, (0, pad))
            v = k_padded if v is k else F.pad(v, (0, pad))
            k = k_padded
        ch = q.shape[1]
        # Heads are contiguous chunks of d positions. Each head works on a strided view
        # ([B, C, d], row stride h*d), which batched matmul reads in place: no transposed copies
        # of the large maps (C2 at 448 px is 100 MB per batch of 8).
        qs = q.reshape(b, ch, heads, d)
        ks = k.reshape(b, cl, heads, d)
        vs = ks if v is k else v.reshape(b, cl, heads, d)
        w_q = self.q.weight[:, :, 0, 0] * scale
        b_q = self.q.bias
        w_o = self.o.weight[:, :, 0, 0]
        assert b_q is not None  # built with bias=True
        outs = []
        for i in range(heads):
            q_i, k_i, v_i = qs[:, :, i], ks[:, :, i], vs[:, :, i]
            scores = q_i @ k_i.transpose(1, 2)  # [B, C^H, C^L]
            if fold:  # W_q (F C^T) + b_q (C 1)^T
                scores = (
                    torch.matmul(w_q, scores) + (b_q * scale)[:, None] * k_i.sum(-1)[:, None, :]
                )
            else:
                scores = scores * scale
            attn = torch.softmax(scores, dim=-1)
            if fold:  # (W_o A) C
                attn = torch.matmul(w_o, attn)
            outs.append(attn @ v_i)  # [B, C^H or out, d]
        out = torch.stack(outs, dim=2).reshape(b, -1, heads * d)
        if pad:
            out = out[..., :n]
        if fold:
            assert self.o.bias is not None
            return (out + self.o.bias[:, None]).reshape(b, -1, h, w)
        return self.o(out.reshape(b, ch, h, w))


def class_activation_maps(feature: Tensor, weight: Tensor) -> Tensor:
    """CAM of every class (Sec. 4.2.1): ``M^k(x, y) = sum_c w^k_c F^c(x, y)`` -> [B, K, H, W]."""
    return torch.einsum("kc,bchw->bkhw", weight, feature)


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
