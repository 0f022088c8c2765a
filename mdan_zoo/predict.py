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

import glob
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ._io import atomic_path
from .imageio import IMAGE_EXTENSIONS, ImageReadError, read_image, to_pil_image

if TYPE_CHECKING:
    from .model import MDAN, MDANOutput

__all__ = [
    "AttentionMaps",
    "LabelProb",
    "LevelAttention",
    "LevelPrediction",
    "Prediction",
    "attention_maps",
    "consistent_paths",
    "crop_box",
    "expand_image_paths",
    "iter_results",
    "predict",
    "render_overlay",
]

log = logging.getLogger(__name__)

ImageLike = Any  # str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------- results
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


# ---------------------------------------------------------------------------- inputs
def expand_image_paths(
    specs: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (searched recursively for image extensions) and globs -> image paths.

    Returns ``(paths, problems)``: a spec that matches nothing is a problem ``(spec, reason)``,
    not an exception, so one typo does not stop a batch. Explicitly named files are kept
    whatever their extension (reading them says whether they are images).
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for spec in specs:
        spec_path = Path(spec)
        if spec_path.is_dir():
            found = sorted(
                p
                for p in spec_path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                problems.append(
                    (str(spec), f"folder has no image files ({', '.join(IMAGE_EXTENSIONS)})")
                )
            for p in found:
                add(p)
        elif spec_path.exists() or spec_path.is_symlink():
            add(spec_path)
        elif glob.has_magic(str(spec)):
            matches = sorted(glob.glob(str(spec), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                problems.append((str(spec), "the pattern matches no files"))
            for p in files:
                add(p)
        else:
            problems.append((str(spec), "no such file or folder"))
    return paths, problems


def _flatten_inputs(inputs: Any) -> list[tuple[str, Any]]:
    """Inputs -> ``[(source name, item)]``; folders and globs expand to their files."""
    if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray)) or (
        isinstance(inputs, torch.Tensor) and inputs.ndim in (2, 3)
    ):
        inputs = [inputs]
    elif isinstance(inputs, torch.Tensor):
        if inputs.ndim != 4:
            raise ValueError(
                f"a tensor input must be one image [C, H, W] or a batch [B, C, H, W], "
                f"got shape {tuple(inputs.shape)}"
            )
        inputs = list(inputs.unbind(0))
    elif not isinstance(inputs, Sequence):
        raise TypeError(
            f"inputs must be a path, PIL image, array, tensor or a list of them, got {type(inputs).__name__}"
        )
    items: list[tuple[str, Any]] = []
    counters = {"image": 0, "array": 0, "tensor": 0}
    for item in inputs:
        if isinstance(item, ImageReadError):  # a spec that matched nothing, reported in place
            items.append((item.path, item))
            continue
        if isinstance(item, (str, os.PathLike)):
            p = Path(item)
            if p.is_dir() or (not p.exists() and glob.has_magic(str(item))):
                files, problems = expand_image_paths([item])
                items.extend((str(f), f) for f in files)
                items.extend((spec, ImageReadError(spec, why)) for spec, why in problems)
            else:
                items.append((str(item), p))
            continue
        kind = (
            "image"
            if isinstance(item, Image.Image)
            else "tensor"
            if isinstance(item, torch.Tensor)
            else "array"
        )
        items.append((f"<{kind} {counters[kind]}>", item))
        counters[kind] += 1
    return items


def _load(name: str, item: Any, *, allow_truncated: bool, max_pixels: int | None) -> Image.Image:
    if isinstance(item, ImageReadError):
        raise item
    if isinstance(item, Path):
        return read_image(item, allow_truncated=allow_truncated, max_pixels=max_pixels)
    return to_pil_image(item, name=name)


# ---------------------------------------------------------------------------- core
def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _unwrap(model: Any) -> MDAN:
    """The MDAN behind a ``torch.compile`` wrapper (it carries taxonomy and preprocessing)."""
    return getattr(model, "_orig_mod", model)


def consistent_paths(
    model: MDAN, probs: Sequence[torch.Tensor]
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
    model: MDAN, out: MDANOutput, sources: Sequence[str], top_k: int
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
    items = _flatten_inputs(inputs)
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
    model: MDAN,
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
    model: MDAN,
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


# ---------------------------------------------------------------------------- attention maps
def crop_box(model: MDAN, size: tuple[int, int]) -> tuple[int, int, int, int]:
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
    model: MDAN, out: MDANOutput, row: int, photo: Image.Image
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


def jet(values: np.ndarray) -> np.ndarray:
    """The classic 'jet' colour map (blue -> cyan -> yellow -> red) of CAM figures:
    ``[H, W]`` in [0, 1] -> ``uint8 [H, W, 3]``. Written out so no plotting library is needed."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # r, g, b peaks at 3/4, 1/2, 1/4 of the range
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(img: Image.Image, panel: int) -> Image.Image:
    w, h = img.size
    scale = panel / max(w, h)
    return img.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
    )


def render_overlay(
    image: Image.Image,
    levels: Sequence[LevelAttention],
    *,
    panel_size: int = 256,
    alpha: float = 0.5,
) -> Image.Image:
    """The photo then each level's heat map blended over it, side by side, each panel fitted
    into ``panel_size`` x ``panel_size`` with a two-line caption underneath (Fig. 8 layout)."""
    gap, caption = 8, max(30, panel_size // 7)
    font = _font(max(10, caption // 2 - 2))
    photo = _fit(image.convert("RGB"), panel_size)
    pw, ph = photo.size
    panels = [(photo, "input", f"{image.size[0]}x{image.size[1]}")]
    base = np.asarray(photo, dtype=np.float32)
    for lv in levels:
        heat_small = Image.fromarray((np.clip(lv.map, 0, 1) * 255).astype(np.uint8)).resize(
            (pw, ph), Image.Resampling.BILINEAR
        )
        colour = jet(np.asarray(heat_small, dtype=np.float32) / 255.0).astype(np.float32)
        blend = ((1.0 - alpha) * base + alpha * colour).round().clip(0, 255).astype(np.uint8)
        panels.append(
            (Image.fromarray(blend), f"{lv.level} ({lv.kind})", f"{lv.label} {lv.prob:.2f}")
        )
    width = len(panels) * pw + (len(panels) + 1) * gap
    height = ph + caption + 2 * gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (panel, line1, line2) in enumerate(panels):
        x = gap + i * (pw + gap)
        sheet.paste(panel, (x, gap))
        draw.text((x, gap + ph + 2), line1, fill=(0, 0, 0), font=font)
        draw.text((x, gap + ph + 2 + caption // 2), line2, fill=(40, 40, 40), font=font)
    return sheet


def attention_filename(source: str, used: set[str]) -> str:
    """A file name for the overlay of ``source``, unique within ``used`` (which it updates)."""
    stem = Path(source).stem if not source.startswith("<") else source.strip("<>").replace(" ", "_")
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "image"
    name = f"{stem}_attention.png"
    n = 1
    while name in used:
        n += 1
        name = f"{stem}_{n}_attention.png"
    used.add(name)
    return name


# ---------------------------------------------------------------------------- command line
class UsageError(ValueError):
    """A command-line mistake (exit status 2): unknown model, unreadable weights, bad option."""


def load_model(*, name: str | None, weights: str | None) -> MDAN:
    """The model the CLI asks for: a zoo name (``--model``, with its published weights) or a
    checkpoint (``--weights``: a folder written by ``save_pretrained``, a ``.safetensors``
    file or a Hub repo ``org/name[@revision]``); loading errors become :class:`UsageError`."""
    if (name is None) == (weights is None):
        raise UsageError("give exactly one of --model NAME or --weights PATH")
    from .hub import WeightsError, load_pretrained
    from .zoo import create_model

    try:
        if weights is not None:
            return load_pretrained(weights)
        assert name is not None
        return create_model(name, pretrained=True)
    except (LookupError, ValueError, TypeError, WeightsError, OSError) as err:
        what = f"--weights {weights}" if weights is not None else f"--model {name}"
        reason = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise UsageError(f"cannot load {what}: {reason}") from None


def _format_block(pred: Prediction, attention: str | None) -> str:
    if not pred.ok:
        return f"{pred.source}\n  ERROR      {pred.error}\n"
    width = max(len("answer"), *(len(lv.level) for lv in pred.levels))
    path = " > ".join(c.label for c in pred.consistent)
    note = "" if pred.argmax_consistent else "  [per-level argmax breaks the hierarchy]"
    lines = [pred.source, f"  {'answer':<{width}}  {path}  (joint P_O {pred.joint_prob:.3f}){note}"]
    for lv in pred.levels:
        tops = "   ".join(f"{t.label} {t.prob:.3f}" for t in lv.top_k)
        lines.append(f"  {lv.level:<{width}}  {tops}")
    if attention is not None:
        lines.append(f"  {'attention':<{width}}  {attention}")
    return "\n".join(lines) + "\n"


def run_cli(
    images: Sequence[str],
    *,
    model_name: str | None,
    weights: str | None,
    top_k: int = 3,
    batch_size: int = 16,
    device: str | None = None,
    json_lines: bool = False,
    save_attention: str | None = None,
    allow_truncated: bool = False,
    max_pixels: int | None = None,
    progress: bool = True,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """``mdan-zoo predict``: 0 when every image was predicted, 1 when some failed (each is
    reported with its reason, the rest still run), 2 on usage errors."""
    import json
    import sys

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if top_k < 1 or batch_size < 1:
            raise UsageError("--top-k and --batch-size must be positive integers")
        if max_pixels is not None and max_pixels < 1:
            raise UsageError("--max-pixels must be a positive integer")
        if device is not None:
            try:
                torch.empty(0, device=device)
            except (RuntimeError, AssertionError) as exc:
                raise UsageError(f"--device {device} is not usable here: {exc}") from None
        if save_attention:
            try:
                Path(save_attention).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"--save-attention {save_attention} is not a writable folder ({exc})"
                ) from None
        files, problems = expand_image_paths(images)
        model = load_model(name=model_name, weights=weights)
    except UsageError as exc:
        print(f"mdan-zoo predict: error: {exc}", file=err)
        return 2
    inputs: list[Any] = list(files) + [ImageReadError(spec, why) for spec, why in problems]
    attention_dir = Path(save_attention) if save_attention else None
    used_names: set[str] = set()
    failed = done = 0
    show_bar = progress and len(inputs) > batch_size
    for result in iter_results(
        model,
        inputs,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        with_maps=attention_dir is not None,
        allow_truncated=allow_truncated,
        max_pixels=max_pixels,
        progress=show_bar,
    ):
        pred = result.prediction
        saved: str | None = None
        if attention_dir is not None and result.ok:
            target = attention_dir / attention_filename(pred.source, used_names)
            saved = str(result.save(target))
        if pred.ok:
            done += 1
        else:
            failed += 1
        if json_lines:
            record = pred.to_dict()
            if saved is not None:
                record["attention"] = saved
            print(json.dumps(record), file=out, flush=True)
        else:
            out.write(_format_block(pred, saved))
            out.flush()
    total = done + failed
    print(
        f"{total} image(s): {done} predicted, {failed} failed"
        + (f"; attention maps in {attention_dir}" if attention_dir is not None and done else ""),
        file=err,
    )
    return 1 if failed else 0
