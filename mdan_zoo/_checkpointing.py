"""Gradient checkpointing that changes nothing but memory: the same outputs, gradients and
BatchNorm statistics as without it.

``torch.utils.checkpoint`` (non-reentrant) stores a block's inputs instead of its activations and
runs the block again in the backward pass. Run naively, that second run updates every BatchNorm's
running mean, variance and ``num_batches_tracked`` a second time in each training step (timm's
``checkpoint_seq`` has that drift); here the recomputation puts the module's buffers back as they
were, so a checkpointed step leaves exactly the state an ordinary one leaves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpointed"]


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Whatever the recomputation writes into ``module``'s buffers is undone on exit."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _contexts(module: nn.Module) -> tuple[Any, Any]:
    return contextlib.nullcontext(), _buffers_kept(module)


def checkpointed(module: nn.Module, *args: Tensor, call: Callable[..., Any] | None = None) -> Any:
    """``call(*args)`` (default ``module(*args)``) with its activations recomputed in backward.

    ``module`` owns the buffers ``call`` may update (BatchNorm statistics). Under
    ``torch.compile`` the compiler's own recomputation is used (it takes no ``context_fn``).
    """
    fn = call if call is not None else module
    if torch.compiler.is_compiling():
        return checkpoint(fn, *args, use_reentrant=False)
    return checkpoint(fn, *args, use_reentrant=False, context_fn=partial(_contexts, module))
