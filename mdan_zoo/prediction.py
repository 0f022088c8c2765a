"""Predictions people can use: named labels per level, a hierarchy-consistent answer, attention maps.

:func:`predict` takes file paths, folders, PIL images, numpy arrays, tensors or lists of them,
applies the model's own eval transform (``model.eval_transform()``), runs batches under
``torch.inference_mode`` and returns one :class:`Prediction` per image: for every affective
level the top-k labels by name with their overall probability P_O (Sec. 3.2:
``P_O = alpha P_L + (1 - alpha) P_G``), the plain per-level argmax, and the
**hierarchy-consistent** answer: the fine label whose path (the label and its ancestors)
maximises the joint probability ``prod_levels P_O[level][path[level]]``. The per-level argmax
can break the hierarchy (``positive`` above ``sadness``); the consistent answer never does.

A file that cannot be read gives a :class:`Prediction` with ``error`` set and no levels; the
other images of the batch are unaffected.

:func:`attention_maps` returns the per-level spatial attention of Sec. 4.2 (the L-CAM map M
where the level applies L-CAM, otherwise the CAM of the predicted class) upsampled onto the part
of the photo the model saw, and draws Fig. 8-style overlays (the photo, then one map per level).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ._io import atomic_path
from .imageio import ImageReadError, read_image, to_pil_image
from .inputs import flatten_inputs
from .overlay import render_overlay

__all__ = [
    "AttentionMaps",
    "LabelProb",
    "LevelAttention",
    "LevelPrediction",
    "PredictMixin",
    "Prediction",
    "attention_maps",
    "consistent_paths",
    "crop_box",
    "iter_results",
    "predict",
]

# Typed loosely on purpose: this module works on any MDAN (or a ``torch.compile`` of one, or an
# ONNX runtime wrapper) without importing the network, which imports this module for its mixin.
Model = Any
ModelOutput = Any


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelProb:
    """A label name with its probability (P_O at its level)."""

    label: str
    prob: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prob": self.prob}


@dataclass(frozen=True)
class LevelPrediction:
    """One affective level of one image.

    Attributes:
        level: the level's name in the taxonomy (``"polarity"``, ``"emotion"``, ...).
        label: the plain argmax of P_O at this level.
        prob: its P_O.
        top_k: the ``top_k`` most probable labels, most probable first.
    """

    level: str
    label: str
    prob: float
    top_k: tuple[LabelProb, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "label": self.label,
            "prob": self.prob,
            "top_k": [t.to_dict() for t in self.top_k],
        }


@dataclass(frozen=True)
class Prediction:
    """What the model says about one image (or why it could not say anything).

    Attributes:
        source: the file path, or ``<image N>`` / ``<array N>`` / ``<tensor N>`` for in-memory
            inputs (N counts the inputs from 0).
        levels: one :class:`LevelPrediction` per level, coarse to fine (plain argmax + top-k).
        consistent: the hierarchy-consistent answer, coarse to fine: a fine label and its
            ancestors, chosen to maximise the product of their P_O; each with its own P_O.
        joint_prob: that product.
        argmax_consistent: whether the plain per-level argmax already follows the hierarchy
            (then ``consistent`` and the argmax labels agree).
        error: why the image could not be read (then ``levels`` and ``consistent`` are empty).
    """

    source: str
    levels: tuple[LevelPrediction, ...] = ()
    consistent: tuple[LabelProb, ...] = ()
    joint_prob: float | None = None
    argmax_consistent: bool | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the image was read and predicted."""
        return self.error is None

    @property
    def label(self) -> str | None:
        """The finest label of the hierarchy-consistent answer (None on error)."""
        return self.consistent[-1].label if self.consistent else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the CLI's ``--json`` line)."""
        if self.error is not None:
            return {"source": self.source, "ok": False, "error": self.error}
        return {
            "source": self.source,
            "ok": True,
            "label": self.label,
            "consistent": [c.to_dict() for c in self.consistent],
            "joint_prob": self.joint_prob,
            "argmax_consistent": self.argmax_consistent,
            "levels": [lv.to_dict() for lv in self.levels],
        }


@dataclass
class LevelAttention:
    """The spatial attention of one level (Sec. 4.2).

    Attributes:
        level: the level's name.
        label: the predicted label at this level (argmax of P_O) the map is about.
        prob: its P_O.
        kind: ``"L-CAM"`` (the fused map M the level applied, Sec. 4.2.2) or ``"CAM"`` (the
            class activation map of ``label``, Sec. 4.2.1, where the level has no L-CAM).
        map: ``float32 [H, W]`` in [0, 1] (min-max scaled per image), the size of
            :attr:`AttentionMaps.image`.
    """

    level: str
    label: str
    prob: float
    kind: str
    map: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "label": self.label,
            "prob": self.prob,
            "kind": self.kind,
            "size": [int(self.map.shape[1]), int(self.map.shape[0])],
        }


@dataclass
class AttentionMaps:
    """Attention maps of one image, with its prediction.

    Attributes:
        source: as in :class:`Prediction`.
        image: the part of the photo the model saw (the eval transform's centre crop), upright
            RGB at the photo's own resolution; every map has its size.
        levels: one :class:`LevelAttention` per level, coarse to fine.
        prediction: the :class:`Prediction` of the same forward pass.
        error: why the image could not be read (then ``image`` is None and ``levels`` empty).
    """

    source: str
    image: Image.Image | None
    levels: tuple[LevelAttention, ...]
    prediction: Prediction
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def overlay(self, *, panel_size: int = 256, alpha: float = 0.5) -> Image.Image:
        """Fig. 8 as one picture: the photo, then one heat-map overlay per level, captioned
        with the level name, the predicted label, its P_O and the map kind."""
        if self.image is None:
            raise ValueError(f"no attention maps for {self.source}: {self.error}")
        if panel_size < 32:
            raise ValueError(f"panel_size must be at least 32 pixels, got {panel_size}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        return render_overlay(self.image, self.levels, panel_size=panel_size, alpha=alpha)

    def save(self, path: str | os.PathLike[str], *, panel_size: int = 256) -> Path:
        """Write :meth:`overlay` as a PNG (atomically) and return its path."""
        path = Path(path)
        picture = self.overlay(panel_size=panel_size)
        with atomic_path(path) as tmp:
            picture.save(tmp, format="PNG")
        return path

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "ok": self.ok}
        if self.error is not None:
            data["error"] = self.error
        else:
            data["levels"] = [lv.to_dict() for lv in self.levels]
        return data


def _load(name: str, item: Any, *, allow_truncated: bool, max_pixels: int | None) -> Image.Image:
    if isinstance(item, ImageReadError):
        raise item
    if isinstance(item, Path):
        return read_image(item, allow_truncated=allow_truncated, max_pixels=max_pixels)
    return to_pil_image(item, name=name)


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _unwrap(model: Any) -> Model:
    """The MDAN behind a ``torch.compile`` wrapper (it carries taxonomy and preprocessing)."""
    return getattr(model, "_orig_mod", model)


def consistent_paths(
    model: Model, probs: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """For P_O of every level (coarse to fine), the fine class whose ancestor path maximises
    the joint probability, and that joint probability: ``([B], [B])``.

    Computed in log space as ``sum_level log P_O[level][ancestor(fine, level)]`` over every fine
    class (each fine class has exactly one path, so this searches every consistent answer).
    """
    n_fine = probs[-1].shape[1]
    fine = torch.arange(n_fine, device=probs[-1].device)
    log_joint = torch.zeros(probs[-1].shape[0], n_fine, device=probs[-1].device)
    for depth, p in enumerate(probs):
        anc = model.fine_to_level(fine, depth)
        log_joint = log_joint + torch.log(p.float().clamp_min(1e-30))[:, anc]
    best = log_joint.argmax(dim=1)
    return best, log_joint.gather(1, best[:, None])[:, 0].exp()


def _predictions_from_output(
    model: Model, out: ModelOutput, sources: Sequence[str], top_k: int
) -> list[Prediction]:
    tax = model.taxonomy
    probs = [lv.probs.float().cpu() for lv in out]
    best, joint = consistent_paths(model, probs)
    argmax = [p.argmax(dim=1) for p in probs]
    results = []
    for i, source in enumerate(sources):
        levels = []
        for depth, (lv, p) in enumerate(zip(out, probs, strict=True)):
            k = min(top_k, p.shape[1])
            values, indices = p[i].topk(k)
            top = tuple(
                LabelProb(lv.labels[j], float(v))
                for v, j in zip(values.tolist(), indices.tolist(), strict=True)
            )
            j = int(argmax[depth][i])
            levels.append(LevelPrediction(lv.name, lv.labels[j], float(p[i, j]), top))
        path = tax.ancestor_indices(int(best[i]))
        consistent = tuple(
            LabelProb(tax.labels[d][c], float(probs[d][i, c])) for d, c in enumerate(path)
        )
        argmax_path = [int(a[i]) for a in argmax]
        results.append(
            Prediction(
                source=source,
                levels=tuple(levels),
                consistent=consistent,
                joint_prob=float(joint[i]),
                argmax_consistent=tax.is_consistent(argmax_path),
            )
        )
    return results


def _check_args(top_k: int, batch_size: int) -> None:
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _batches(items: list[tuple[int, str, Any]], size: int) -> Iterator[list[tuple[int, str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def iter_results(
    model: Any,
    inputs: Any,
    *,
    top_k: int = 3,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    with_maps: bool = False,
    allow_truncated: bool = False,
    max_pixels: int | None = None,
    channels_last: bool = False,
    bf16: bool = False,
    progress: bool = False,
) -> Iterator[AttentionMaps]:
    """The engine behind :func:`predict` and :func:`attention_maps`, as a generator: results
    come out in input order, one batch at a time, so a caller (the CLI) can report as it goes
    and only one batch of images is ever in memory. Without ``with_maps`` each result carries
    only its ``prediction``."""
    _check_args(top_k, batch_size)
    mdan = _unwrap(model)
    if device is not None:
        model.to(device)
    dev = _model_device(mdan)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    transform = mdan.eval_transform()
    items = flatten_inputs(inputs)
    was_training = mdan.training
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), unit="img", desc="predict", leave=False)
    try:
        for chunk in _batches([(i, n, it) for i, (n, it) in enumerate(items)], batch_size):
            results: dict[int, AttentionMaps] = {}
            tensors: list[torch.Tensor] = []
            photos: list[Image.Image] = []
            kept: list[tuple[int, str]] = []
            for index, name, item in chunk:
                try:
                    photo = _load(
                        name, item, allow_truncated=allow_truncated, max_pixels=max_pixels
                    )
                    tensors.append(transform(photo))
                except ImageReadError as err:
                    log.debug("skipping %s: %s", name, err.reason)
                    failed = Prediction(source=name, error=err.reason)
                    results[index] = AttentionMaps(name, None, (), failed, error=err.reason)
                    continue
                photos.append(photo)
                kept.append((index, name))
            if kept:
                x = torch.stack(tensors).to(dev)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with (
                    torch.inference_mode(),
                    torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16),
                ):
                    out = model(x, return_cams=with_maps)
                preds = _predictions_from_output(mdan, out, [n for _, n in kept], top_k)
                for row, ((index, name), pred) in enumerate(zip(kept, preds, strict=True)):
                    if with_maps:
                        crop, maps = _maps_for(mdan, out, row, photos[row])
                        results[index] = AttentionMaps(name, crop, maps, pred)
                    else:
                        results[index] = AttentionMaps(name, None, (), pred)
            if bar is not None:
                bar.update(len(chunk))
            for index, _, _ in chunk:
                yield results[index]
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()


def predict(
    model: Model,
    inputs: Any,
    *,
    top_k: int = 3,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    allow_truncated: bool = False,
    max_pixels: int | None = None,
    channels_last: bool = False,
    bf16: bool = False,
    progress: bool = False,
) -> list[Prediction]:
    """Predict every image in ``inputs``; one :class:`Prediction` per image, in input order.

    Args:
        model: an :class:`~mdan_zoo.model.MDAN` (or ``torch.compile`` of one).
        inputs: a file path, a folder (its image files, recursively, sorted), a glob, a PIL
            image, a numpy array ``[H, W(, C)]``, a tensor ``[C, H, W]`` or ``[B, C, H, W]``
            (un-normalised: uint8 0..255 or float 0..1), or a list of these.
        top_k: labels listed per level.
        batch_size: images per forward pass (images are read one batch at a time).
        device: where to run; the model is moved there. Default: where the model is.
        allow_truncated: decode truncated files instead of refusing them.
        max_pixels: decompression-bomb limit per image (default Pillow's).
        channels_last: run in channels-last memory format (see docs/benchmarks.md); the
            model's weights are converted in place and stay so.
        bf16: autocast to bfloat16 (faster on CPUs with AMX/AVX512-BF16 and on GPUs).
        progress: show a tqdm bar on stderr.

    Unreadable inputs give a :class:`Prediction` with ``error`` set; the rest are predicted.
    The model is put in eval mode for the call and restored afterwards.
    """
    runs = iter_results(
        model,
        inputs,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        with_maps=False,
        allow_truncated=allow_truncated,
        max_pixels=max_pixels,
        channels_last=channels_last,
        bf16=bf16,
        progress=progress,
    )
    return [r.prediction for r in runs]


def attention_maps(
    model: Model,
    inputs: Any,
    *,
    top_k: int = 3,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    allow_truncated: bool = False,
    max_pixels: int | None = None,
    progress: bool = False,
) -> list[AttentionMaps]:
    """Per-level attention maps (Sec. 4.2, Fig. 8) and the prediction of each image.

    Inputs and arguments as :func:`predict`. Each map is the L-CAM map M that the level
    applied (levels with L-CAM) or the CAM of the level's predicted class (levels without it),
    min-max scaled to [0, 1] and upsampled (bilinear) onto the centre crop of the photo that
    the eval transform fed to the network. ``.save(path)`` writes the Fig. 8-style PNG.
    """
    return list(
        iter_results(
            model,
            inputs,
            top_k=top_k,
            batch_size=batch_size,
            device=device,
            with_maps=True,
            allow_truncated=allow_truncated,
            max_pixels=max_pixels,
            channels_last=False,
            bf16=False,
            progress=progress,
        )
    )


def crop_box(model: Model, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box ``(left, top, right, bottom)`` of a ``size = (W, H)`` photo that the eval
    transform (resize the shorter side to ``resize_size``, centre-crop ``input_size``) keeps."""
    pre = model.preprocessing
    w, h = size
    scale = pre.resize_size / min(w, h)
    side_w = min(w, pre.input_size / scale)
    side_h = min(h, pre.input_size / scale)
    left = (w - side_w) / 2
    top = (h - side_h) / 2
    return (
        round(left),
        round(top),
        round(left) + max(1, round(side_w)),
        round(top) + max(1, round(side_h)),
    )


def _minmax(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def _maps_for(
    model: Model, out: ModelOutput, row: int, photo: Image.Image
) -> tuple[Image.Image, tuple[LevelAttention, ...]]:
    crop = photo.crop(crop_box(model, photo.size))
    w, h = crop.size
    maps = []
    for lv in out:
        p = lv.probs[row].float()
        k = int(p.argmax())
        if lv.lcam is not None:
            raw, kind = lv.lcam[row], "L-CAM"
        elif lv.cams is not None:
            raw, kind = lv.cams[row, k], "CAM"
        else:  # pragma: no cover - return_cams=True always fills cams
            raise RuntimeError("the model returned no CAMs; was it called with return_cams=True?")
        up = F.interpolate(
            raw.float()[None, None], size=(h, w), mode="bilinear", align_corners=False
        )
        heat = _minmax(up[0, 0]).cpu().numpy().astype(np.float32)
        maps.append(LevelAttention(lv.name, lv.labels[k], float(p[k]), kind, heat))
    return crop, tuple(maps)


class PredictMixin:
    """``model.predict`` and ``model.attention_maps`` for :class:`~mdan_zoo.model.MDAN`.

    A mixin, so the network module imports prediction and never the other way round.
    """

    def predict(
        self,
        inputs: Any,
        *,
        top_k: int = 3,
        batch_size: int = 16,
        device: str | torch.device | None = None,
    ) -> list[Prediction]:
        """Per-level top-k labels + the hierarchy-consistent answer, one :class:`Prediction`
        per image; see :func:`mdan_zoo.predict`."""
        return predict(self, inputs, top_k=top_k, batch_size=batch_size, device=device)

    def attention_maps(
        self, inputs: Any, *, batch_size: int = 8, device: str | torch.device | None = None
    ) -> list[AttentionMaps]:
        """Per-level L-CAM / CAM maps (Fig. 8), one :class:`AttentionMaps` per image; see
        :func:`mdan_zoo.attention_maps`."""
        return attention_maps(self, inputs, batch_size=batch_size, device=device)
