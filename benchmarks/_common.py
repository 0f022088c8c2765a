"""Shared measuring habits of the benchmark scripts (not a module of the package).

Every script imports this before torch: it sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting OpenMP
threads sleep instead of spinning, so CPU time counts work only) unless the caller set it.
Timings are steady state: warm-up rounds first, then at least 5 interleaved rounds (A, B, C,
A, B, C, ...) so that load from other processes hits every contender alike; medians; CPU time
(``time.process_time``) first, wall time beside it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MIN_ROUNDS = 5


@dataclass(frozen=True)
class Timing:
    cpu: float  # median process CPU seconds
    wall: float  # median wall seconds


def interleaved(
    runners: Mapping[str, Callable[[], object]], *, rounds: int, warmup: int = 1
) -> dict[str, Timing]:
    """Median CPU and wall seconds of each runner over ``rounds`` interleaved rounds, after
    ``warmup`` unmeasured rounds."""
    for _ in range(warmup):
        for fn in runners.values():
            fn()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            cpu, wall = time.process_time(), time.perf_counter()
            fn()
            runs[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    return {
        name: Timing(
            cpu=statistics.median(r[0] for r in rs), wall=statistics.median(r[1] for r in rs)
        )
        for name, rs in runs.items()
    }


def rounds_arg(value: str) -> int:
    rounds = int(value)
    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds (medians of fewer say little)")
    return rounds


def header(what: str) -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"# {what}\n# torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"load average {load:.1f}"
    )


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


def reset_peak() -> int:
    """Set this process's peak RSS (VmHWM) to its current RSS; returns that RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS:")


def peak_above(rest: int) -> int:
    """Peak RSS in bytes above ``rest`` since :func:`reset_peak`."""
    return _status("VmHWM:") - rest


def in_fork(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` in a forked child (fresh heap, nothing freed before to hide growth); its
    pickled result. Call it before this process runs multi-threaded torch work (a fork after
    OpenMP has started its threads is unsafe)."""
    import pickle

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        code = 0
        try:
            payload = pickle.dumps((True, fn(*args)))
        except BaseException as err:  # noqa: BLE001 - reported by the parent
            payload, code = pickle.dumps((False, repr(err))), 1
        with os.fdopen(write, "wb") as fh:
            fh.write(payload)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    ok, value = pickle.loads(data)
    if not ok:
        raise SystemExit(f"measurement in a child process failed: {value}")
    return value
