"""``mdan-zoo predict``: load the model the user names, predict, print or stream, save overlays.

Exit status: 0 when every image was predicted, 1 when some failed (each reported with its
reason), 2 on usage errors.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .hub import WeightsError, load_pretrained
from .imageio import ImageReadError
from .inputs import expand_image_paths
from .model import MDAN
from .overlay import attention_filename
from .prediction import Prediction, iter_results
from .zoo import create_model

__all__ = ["UsageError", "load_model", "run_cli"]


class UsageError(ValueError):
    """A command-line mistake (exit status 2): unknown model, unreadable weights, bad option."""


def load_model(*, name: str | None, weights: str | None, token: str | bool | None = None) -> MDAN:
    """The model the CLI asks for: a zoo name (``--model``, with its published weights) or a
    checkpoint (``--weights``: a folder written by ``save_pretrained``, a ``.safetensors``
    file or a Hub repo ``org/name[@revision]``); loading errors become :class:`UsageError`."""
    if (name is None) == (weights is None):
        raise UsageError("give exactly one of --model NAME or --weights PATH")
    try:
        if weights is not None:
            return load_pretrained(weights, token=token)
        assert name is not None
        return create_model(name, pretrained=True, token=token)
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
    token: str | bool | None = None,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """``mdan-zoo predict``: 0 when every image was predicted, 1 when some failed (each is
    reported with its reason, the rest still run), 2 on usage errors."""
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
        model = load_model(name=model_name, weights=weights, token=token)
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
