"""CPU threads budgeted against the cores this process may use.

torch runs one intra-op thread per core by default, and every DataLoader worker is one more
busy process: on a 2-core machine, 2 threads plus 4 workers fight over 2 cores, and a shared
machine loses more. :func:`thread_budget` splits the cores: by default workers plus intra-op
threads never exceed them (one core stays with the model), and on a machine that is already
busy (a 1-minute load average above the cores plus one) the model runs one thread: threads
that wait for each other at every operation, on cores other processes hold, spin instead of
working (README.md, measured 2026-12-02: the quick demo on a loaded 2-core machine used 3.8x
the CPU time with 2 threads than with 1). ``threads=N`` (``--threads N``) asks for N intra-op
threads and leaves the workers the rest. :func:`using_threads` sets torch's
count for a block and puts the caller's back afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

__all__ = ["available_cores", "busy", "default_threads", "thread_budget", "using_threads"]

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def busy(cores: int | None = None, load: float | None = None) -> bool:
    """Whether other work already fills the cores: the 1-minute load average is above
    ``cores + 1`` (this process's own threads alone cannot push it there)."""
    cores = cores or available_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on Unix
            return False
    return load > cores + 1


def thread_budget(
    threads: int | None,
    workers: int,
    *,
    cores: int | None = None,
    load: float | None = None,
) -> tuple[int, int]:
    """``(intra-op threads, DataLoader workers)`` for a process that asked for ``workers``.

    ``threads`` None: workers keep at least one core free for the model (at most
    ``cores - 1``) and the model gets the cores left (never more than torch's own default),
    so the two never exceed ``cores``; one thread when the machine is :func:`busy` (``load``:
    the 1-minute load average, default the system's).
    ``threads`` given: that many intra-op threads, and the workers at most what is left.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    cores = cores or available_cores()
    if threads is None:
        import torch

        workers = min(workers, cores - 1) if cores > 1 else 0
        threads = max(1, min(torch.get_num_threads(), cores - workers))  # never more than torch's
        if threads > 1 and busy(cores, load):
            threads = 1
    else:
        workers = min(workers, max(0, cores - threads))
    return threads, workers


def default_threads(workers: int) -> int:
    """The intra-op threads a pipeline with ``workers`` decoding processes runs by default:
    the cores they leave (never more than torch's default), one on a :func:`busy` machine."""
    import torch

    threads = max(1, min(torch.get_num_threads(), available_cores() - workers))
    return 1 if threads > 1 and busy() else threads


@contextlib.contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block, then put back."""
    import torch

    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
