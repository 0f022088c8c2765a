"""Predictions people can use: named labels per level, a hierarchy-consistent answer, attention maps.

:func:`predict` takes file paths, folders, PIL images, numpy arrays, tensors or lists of them,
applies the model's own eval transform (``model.eval_transform()``), runs batches under
``torch.inference_mode`` and returns one :class:`Prediction` per image: for every affective
level the top-k labels by name with their overall probability P_O (Sec. 3.2:
``P_O = alpha P_L + (1 - alpha) P_G``), the plain per-level argmax, and the
**hierarchy-consistent** answer: the fine label whose path (the label and its ancestors)
maximises the joint probability ``prod_levels P_O[level][path[level]]``. The per-level argmax
can break the hierarchy (``positive`` above ``sadness``); the consistent answer never does.

A file that cannot be read (or runs out of memory while decoded, or comes out of the model as
NaN) gives a :class:`Prediction` with ``error`` set and no levels; the other images of the batch
are unaffected. Images are read by DataLoader worker processes while the model runs
(:mod:`mdan_zoo.prediction._loader`); inputs and results stream, so a million files cost no more
memory than a hundred. The result types live in :mod:`mdan_zoo.prediction._results`.

:func:`attention_maps` returns the per-level spatial attention of Sec. 4.2 (the L-CAM map M
where the level applies L-CAM, otherwise the CAM of the predicted class) upsampled onto the part
of the photo the model saw, and draws Fig. 8-style overlays (the photo, then one map per level).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .._threads import default_threads, using_threads
from ..untrained import warn_if_untrained
from ._inputs import iter_inputs
from ._loader import LoadedBatch, batch_loader, default_workers
from ._options import PredictOptions, signature_of
from ._results import AttentionMaps, LabelProb, LevelAttention, LevelPrediction, Prediction

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
    "default_workers",
    "iter_batches",
    "iter_results",
    "PredictOptions",
    "predict",
]

# Typed loosely on purpose: this module works on any MDAN (or a ``torch.compile`` of one, or an
# ONNX runtime wrapper) without importing the network, which imports this module for its mixin.
Model = Any
ModelOutput = Any


log = logging.getLogger(__name__)

NON_FINITE = (
    "the model's probabilities for this image are NaN or infinite: its weights or its "
    "preprocessing (config.json mean / std) hold NaN or inf; check or re-download the checkpoint"
)


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
    model: Model,
    out: ModelOutput,
    sources: Sequence[str],
    top_k: int,
    min_confidence: float | None = None,
) -> list[Prediction]:
    tax = model.taxonomy
    probs = [lv.probs.float().cpu() for lv in out]
    local = [lv.local_probs.float().cpu() for lv in out]  # P_L and P_G, shown beside P_O
    glob = [lv.global_probs.float().cpu() for lv in out]

    def entry(depth: int, i: int, j: int) -> LabelProb:
        return LabelProb(
            out[depth].labels[j],
            float(probs[depth][i, j]),
            float(local[depth][i, j]),
            float(glob[depth][i, j]),
        )

    best, joint = consistent_paths(model, probs)
    argmax = [p.argmax(dim=1) for p in probs]
    finite = torch.stack([torch.isfinite(p).all(dim=1) for p in probs]).all(dim=0)
    results = []
    for i, source in enumerate(sources):
        if not finite[i]:
            results.append(Prediction(source=source, error=NON_FINITE))
            continue
        levels = []
        for depth, (lv, p) in enumerate(zip(out, probs, strict=True)):
            k = min(top_k, p.shape[1])
            top = tuple(entry(depth, i, j) for j in p[i].topk(k).indices.tolist())
            j = int(argmax[depth][i])
            levels.append(LevelPrediction(lv.name, lv.labels[j], float(p[i, j]), top))
        path = tax.ancestor_indices(int(best[i]))
        consistent = tuple(entry(d, i, c) for d, c in enumerate(path))
        argmax_path = [int(a[i]) for a in argmax]
        path_probs = tuple(itertools.accumulate((c.prob for c in consistent), lambda a, b: a * b))
        results.append(
            Prediction(
                source=source,
                levels=tuple(levels),
                consistent=consistent,
                joint_prob=float(joint[i]),
                argmax_consistent=tax.is_consistent(argmax_path),
                path_probs=path_probs,
                min_confidence=min_confidence,
            )
        )
    return results


def iter_batches(
    model: Any, inputs: Any, options: PredictOptions | None = None
) -> Iterator[list[AttentionMaps]]:
    """The engine behind :func:`predict`, :func:`attention_maps` and ``mdan-zoo predict``: one
    list of results per batch, in input order, as the batches finish.

    ``inputs`` may be a generator: it is consumed as the loader needs it, so neither the inputs
    nor the results pile up in memory. ``options.workers`` processes read and transform the
    next batches while the model runs. Without ``options.with_maps`` each result carries only
    its ``prediction``."""
    opts = options or PredictOptions()
    mdan = _unwrap(model)
    warn_if_untrained(mdan)  # random weights, confident labels: say so once per model
    if opts.device is not None:
        model.to(opts.device)
    dev = _model_device(mdan)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    stream = ((i, name, item) for i, (name, item) in enumerate(iter_inputs(inputs)))
    head = list(itertools.islice(stream, opts.batch_size + 1))
    single = len(head) <= opts.batch_size  # nothing to overlap, no bar worth drawing
    workers = opts.workers
    if workers is None:
        workers = 0 if single else default_workers(dev)
    threads = opts.threads  # within the cores beside the workers (mdan_zoo._threads)
    if threads is None:
        threads = default_threads(workers)
    budget = using_threads(threads) if dev.type == "cpu" else contextlib.nullcontext()
    loader = batch_loader(
        itertools.chain(head, stream),
        mdan.eval_transform(),
        opts,
        workers=workers,
        pin_memory=dev.type == "cuda",
    )
    was_training = mdan.training
    model.eval()
    bar = None
    if opts.progress and not single:
        from tqdm.auto import tqdm

        bar = tqdm(unit="img", desc="predict", leave=False)
    try:
        with budget:
            for batch in loader:
                yield _run_batch(model, mdan, batch, dev, opts)
                if bar is not None:
                    bar.update(len(batch.entries))
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()


def _run_batch(
    model: Any, mdan: Model, batch: LoadedBatch, dev: torch.device, opts: PredictOptions
) -> list[AttentionMaps]:
    """Forward one loaded batch; results for every entry, failed ones included, in order."""
    top_k, with_maps = opts.top_k, opts.with_maps
    kept = [(i, n) for i, n, why in batch.entries if why is None]
    done: dict[int, AttentionMaps] = {}
    if batch.x is not None:
        x = batch.x.to(dev, non_blocking=True)
        if opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(dev.type, dtype=torch.bfloat16, enabled=opts.bf16),
        ):
            if opts.calibration:
                out = model(x, return_cams=with_maps)
            else:  # the raw model: the stored temperatures are not applied
                out = model(x, return_cams=with_maps, calibration=False)
        preds = _predictions_from_output(
            mdan, out, [n for _, n in kept], top_k, opts.min_confidence
        )
        for row, ((index, name), pred) in enumerate(zip(kept, preds, strict=True)):
            if with_maps and pred.ok:
                crop, maps = _maps_for(mdan, out, row, batch.photos[row])
                done[index] = AttentionMaps(name, crop, maps, pred)
            else:
                done[index] = AttentionMaps(name, None, (), pred, error=pred.error)
    results = []
    for index, name, why in batch.entries:
        if why is not None:
            failed = Prediction(source=name, error=why)
            results.append(AttentionMaps(name, None, (), failed, error=why))
        else:
            results.append(done[index])
    return results


def iter_results(
    model: Any, inputs: Any, options: PredictOptions | None = None
) -> Iterator[AttentionMaps]:
    """:func:`iter_batches` one result at a time (same arguments): results come out in input
    order as their batch finishes; only a few batches of images are ever in memory."""
    for batch in iter_batches(model, inputs, options):
        yield from batch


def predict(model: Model, inputs: Any, **options: Any) -> list[Prediction]:
    """Predict every image in ``inputs``; one :class:`Prediction` per image, in input order.

    Args:
        model: an :class:`~mdan_zoo.model.MDAN` (or ``torch.compile`` of one).
        inputs: a file path, a folder (its image files, recursively, sorted), a glob, a PIL
            image, a numpy array ``[H, W(, C)]``, a tensor ``[C, H, W]`` or ``[B, C, H, W]``
            (un-normalised: uint8 0..255 or float 0..1), or a list (or generator) of these.
        options: the keywords of :class:`PredictOptions` (``top_k``, ``batch_size``,
            ``device``, ``workers``, ``threads``, ``allow_truncated``, ``max_pixels``,
            ``channels_last``, ``bf16``, ``progress``, ``min_confidence``, ``calibration``), each
            explained there.

    Unreadable inputs (and images whose probabilities come out NaN or infinite) give a
    :class:`Prediction` with ``error`` set; the rest are predicted. The model is put in eval
    mode for the call and restored afterwards.
    """
    opts = PredictOptions.given("predict", options, fixed={"with_maps": False})
    return [r.prediction for r in iter_results(model, inputs, opts)]


predict.__signature__ = signature_of(predict, fixed=("with_maps",))  # type: ignore[attr-defined]

_MAPS = {"with_maps": True, "channels_last": False, "bf16": False}


def attention_maps(model: Model, inputs: Any, **options: Any) -> list[AttentionMaps]:
    """Per-level attention maps (Sec. 4.2, Fig. 8) and the prediction of each image.

    Inputs and options as :func:`predict` (``batch_size`` 8 by default; no ``channels_last``
    or ``bf16``). Each map is the L-CAM map M that the level applied (levels with L-CAM) or the
    CAM of the level's predicted class (levels without it), min-max scaled to [0, 1] and
    upsampled (bilinear) onto the centre crop of the photo that the eval transform fed to the
    network. ``.save(path)`` writes the Fig. 8-style PNG.
    """
    opts = PredictOptions.given("attention_maps", options, fixed=_MAPS, defaults={"batch_size": 8})
    return list(iter_results(model, inputs, opts))


attention_maps.__signature__ = signature_of(  # type: ignore[attr-defined]
    attention_maps, fixed=tuple(_MAPS), batch_size=8
)


def crop_box(model: Model, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box ``(left, top, right, bottom)`` of a ``size = (W, H)`` photo that the eval
    transform (resize the shorter side to ``resize_size``, centre-crop ``input_size``) keeps."""
    pre = model.preprocessing
    w, h = size
    scale = pre.eval_scale(w, h)
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
    tax = model.taxonomy
    by_local = getattr(model.config, "lcam_parent", "local") == "local"
    maps = []
    for depth, lv in enumerate(out):
        p = lv.probs[row].float()
        k = int(p.argmax())
        parent: str | None = None
        if lv.lcam is not None:  # M fused the CAMs of the classes under the level above's pick
            raw, kind = lv.lcam[row], "L-CAM"
            if depth == 0:
                classes = tuple(lv.labels)
            else:
                above = out[depth - 1]
                pick = int((above.local_probs if by_local else above.probs)[row].argmax())
                parent = above.labels[pick]
                under = tax.parents[depth]
                classes = tuple(lv.labels[c] for c in range(len(lv.labels)) if under[c] == pick)
        elif lv.cams is not None:
            raw, kind, classes = lv.cams[row, k], "CAM", (lv.labels[k],)
        else:  # pragma: no cover - return_cams=True always fills cams
            raise RuntimeError("the model returned no CAMs; was it called with return_cams=True?")
        up = F.interpolate(
            raw.float()[None, None], size=(h, w), mode="bilinear", align_corners=False
        )
        heat = _minmax(up[0, 0]).cpu().numpy().astype(np.float32)
        maps.append(LevelAttention(lv.name, lv.labels[k], float(p[k]), kind, heat, classes, parent))
    return crop, tuple(maps)


class PredictMixin:
    """``model.predict`` and ``model.attention_maps`` for :class:`~mdan_zoo.model.MDAN`.

    A mixin, so the network module imports prediction and never the other way round.
    """

    def predict(self, inputs: Any, **options: Any) -> list[Prediction]:
        """Per-level top-k labels + the hierarchy-consistent answer, one :class:`Prediction`
        per image; options as :func:`mdan_zoo.predict`."""
        return predict(self, inputs, **options)

    def attention_maps(self, inputs: Any, **options: Any) -> list[AttentionMaps]:
        """Per-level L-CAM / CAM maps (Fig. 8), one :class:`AttentionMaps` per image; options
        as :func:`mdan_zoo.attention_maps`."""
        return attention_maps(self, inputs, **options)


PredictMixin.predict.__signature__ = signature_of(  # type: ignore[attr-defined]
    PredictMixin.predict, fixed=("with_maps",)
)
PredictMixin.attention_maps.__signature__ = signature_of(  # type: ignore[attr-defined]
    PredictMixin.attention_maps, fixed=tuple(_MAPS), batch_size=8
)
