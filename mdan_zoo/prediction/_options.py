"""How images are predicted, as one value: built once where a user asks, passed down as is.

``predict``, ``attention_maps``, ``model.predict`` and ``mdan-zoo predict`` build one
:class:`PredictOptions` from their keywords (or flags) and hand it to the pipeline and the
loader unchanged, so a new option is a field here, the code that reads it and, for the command
line, its flag.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PredictOptions"]


@dataclass(frozen=True)
class PredictOptions:
    """Options of a prediction run.

    Attributes:
        top_k: labels listed per level.
        batch_size: images per forward pass.
        device: where to run; the model is moved there. Default: where the model is.
        workers: processes that read and transform the next batches while the model runs (a
            ``torch.utils.data.DataLoader``; pinned memory on GPU); 0 reads in this process.
            None: 0 when everything fits in one batch, else ``default_workers``.
        threads: torch intra-op threads on a CPU while the pipeline runs (None: the cores this
            process may use minus ``workers``, never more than torch's own default, so workers
            and threads never exceed the cores); the caller's count is put back afterwards.
        allow_truncated: decode truncated files instead of refusing them.
        max_pixels: decompression-bomb limit per image (default Pillow's).
        channels_last: run in channels-last memory format (see docs/benchmarks.md); the model's
            weights are converted in place and stay so.
        bf16: autocast to bfloat16 (faster on CPUs with AMX/AVX512-BF16 and on GPUs).
        progress: show a tqdm bar on stderr (when there is more than one batch).
        with_maps: also compute the per-level attention maps (``attention_maps``).
        min_confidence: selective prediction: a level whose consistent-path probability (the
            product of P_O down to it) is below this answers ``"uncertain"``, and the answer
            backs off to the deepest level that clears it (``Prediction.answer``). None: answer
            every level.
        calibration: apply the temperatures a calibrated checkpoint stores (``mdan-zoo
            calibrate``); False gives the raw model's probabilities.
    """

    top_k: int = 3
    batch_size: int = 16
    device: str | torch.device | None = None
    workers: int | None = None
    threads: int | None = None
    allow_truncated: bool = False
    max_pixels: int | None = None
    channels_last: bool = False
    bf16: bool = False
    progress: bool = False
    with_maps: bool = False
    min_confidence: float | None = None
    calibration: bool = True

    def __post_init__(self) -> None:
        for name in ("top_k", "batch_size", "max_pixels"):
            value = getattr(self, name)
            if value is None and name == "max_pixels":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        p = self.min_confidence
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0
        ):
            raise ValueError(
                f"min_confidence must be a probability from 0 to 1 (or None), got {p!r}"
            )
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
            raise ValueError(f"workers must be None or an integer >= 0, got {w!r}")
        t = self.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ValueError(f"threads must be None or a positive integer, got {t!r}")

    def replace(self, **changes: Any) -> PredictOptions:
        """A copy with ``changes`` (field names as keywords)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def given(
        cls,
        caller: str,
        options: Mapping[str, Any],
        *,
        fixed: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> PredictOptions:
        """The options a public entry was called with, over the entry's own ``defaults``;
        ``fixed`` are set by the entry itself. An unknown keyword (or a fixed one) is a
        ``TypeError`` naming ``caller`` and the keyword."""
        fixed = fixed or {}
        names = {f.name for f in dataclasses.fields(cls)} - set(fixed)
        for key in options:
            if key not in names:
                raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}")
        return cls(**{**(defaults or {}), **options, **fixed})


def signature_of(
    fn: Callable[..., Any], *, fixed: tuple[str, ...] = (), **defaults: Any
) -> inspect.Signature:
    """``fn``'s own parameters followed by the options it takes as keywords, for ``help()``."""
    sig = inspect.signature(fn)
    head = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    keywords = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=defaults.get(f.name, f.default),
            annotation=f.type,
        )
        for f in dataclasses.fields(PredictOptions)
        if f.name not in fixed
    ]
    return sig.replace(parameters=[*head, *keywords])
