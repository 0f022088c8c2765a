"""The five-minute GPU check: does the paper's recipe run on this GPU, and how fast (issue 24).

One command, everything generated on the spot (JPEG files written to ``--out``, random
weights: no dataset, no download, no ImageNet weights):

    PYTHONPATH=$PWD python benchmarks/gpu_check.py --out gpu-check/
    PYTHONPATH=$PWD python benchmarks/gpu_check.py --smoke --out /tmp/smoke  # CPU, < 1 min idle

Sections, in this order (each recorded with its time; a failure is recorded and the next
section still runs; the exit status is 1 when any failed):

1. ``env``: torch, CUDA, the GPU, bf16 support, the CPU count and load.
2. ``gpu_tests``: ``pytest -m gpu tests/test_gpu.py`` (on a GPU every test must pass, none skip).
3. ``train``: the shipped ``fi`` config (paper-size ``mdan_fi()``: ResNet-101, width 1024,
   448 px crops of 512 px resizes, batch 64, bf16 autocast, ``deterministic=true``) on written
   JPEGs, through ``torchrun --nproc_per_node 1`` with an NCCL process group (the trainer then
   wraps the model in DDP and runs its collectives, as with many GPUs): run A trains 2 epochs
   uninterrupted; run B trains epoch 1 (its checkpoint reloaded and compared bit for bit with
   the weights and optimizer state in memory), then a second torchrun resumes it for epoch 2,
   and its weights and optimizer state are compared bit for bit with run A's; run C trains with
   ``decode=gpu``. Each run's epoch log gives the data-wait share and loader vs model images/s.
4. ``decode``: the same photos through ``decode=cpu`` (Pillow in a worker) and ``decode=gpu``
   (nvJPEG and tensor kernels on the GPU): pixel differences, and images/s of each.
5. ``models``: MDAN FI vs torchvision's ResNet-101 side by side: training images/s (bf16),
   inference images/s (eager, channels_last, torch.compile, bf16), each also per MAC; peak
   memory per training image (with and without ``set_grad_checkpointing`` where the model has
   it); the largest training batch that fits.

``--smoke`` runs the same code on the CPU with tiny sizes (gloo, ResNet-18, 64 px, a few steps,
torch.compile with the ``eager`` backend); ``tests/test_gpu_check.py`` runs it, so the check
cannot rot. Results: ``gpu_check.json`` and ``gpu_check.md`` in ``--out`` (rewritten after
every section, so a killed run keeps what it measured), subprocess logs in ``--out/logs``.
``--budget-s`` (default 300; none with ``--smoke``) skips what would start after the budget is
spent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _gpu_check_data import write_photos  # noqa: E402
from _gpu_check_models import compare_models  # noqa: E402
from _gpu_check_train import compare_decoders, summarise_runs  # noqa: E402

SECTIONS = ("env", "gpu_tests", "train", "decode", "models")


@dataclass(frozen=True)
class Sizes:
    """How big the check is: the paper's sizes on a GPU, tiny ones for ``--smoke``."""

    size: int
    resize: int
    batch: int
    steps: int  # optimizer steps per epoch (runs A and B: 2 epochs each)
    files: int  # JPEG files written (unique pictures hard-linked to this many names)
    unique: int
    backbone: str
    fpn_channels: int
    baseline: str
    compile_backend: str
    workers: int
    timed_steps: int
    max_batch: int  # the largest-batch search stops here


def sizes(smoke: bool, batch: int | None, steps: int | None) -> Sizes:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if smoke:
        s = Sizes(32, 36, 4, 2, 48, 12, "resnet18", 32, "resnet18", "eager", 1, 2, 8)
    else:
        workers = max(1, min(16, (cpus or 2) - 2))
        s = Sizes(448, 512, 64, 48, 4000, 400, "resnet101", 1024, "resnet101", "inductor",
                  workers, 10, 4096)  # fmt: skip
    changes = {k: v for k, v in (("batch", batch), ("steps", steps)) if v is not None}
    return Sizes(**{**asdict(s), **changes})


class Check:
    """The record of one run of the check, written out after every section."""

    def __init__(self, out: Path, smoke: bool, budget_s: float) -> None:
        self.out, self.smoke, self.start = out, smoke, time.perf_counter()
        self.deadline = self.start + budget_s
        self.record: dict[str, Any] = {"smoke": smoke, "budget_s": budget_s, "sections": {}}

    def run(self, name: str, fn: Any, *args: Any) -> None:
        entry: dict[str, Any] = {}
        begun = time.perf_counter()
        if begun > self.deadline:
            entry = {"ok": None, "skipped": f"over the {self.record['budget_s']:.0f} s budget"}
        else:
            try:
                entry = {"ok": True, **fn(self, *args)}
                entry["ok"] = entry.get("ok", True) and not entry.get("failures")
            except Exception as err:  # noqa: BLE001 - recorded, and the next section runs
                entry = {"ok": False, "error": f"{type(err).__name__}: {err}"}
                entry["traceback"] = traceback.format_exc()[-4000:]
        entry["seconds"] = round(time.perf_counter() - begun, 1)
        self.record["sections"][name] = entry
        self.record["total_s"] = round(time.perf_counter() - self.start, 1)
        self.write()
        state = {True: "ok", False: "FAILED", None: "skipped"}[entry["ok"]]
        print(f"[gpu_check] {name}: {state} ({entry['seconds']} s)", flush=True)

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def write(self) -> None:
        from _gpu_check_report import markdown

        self.out.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("gpu_check.json", json.dumps(self.record, indent=2, default=str) + "\n"),
            ("gpu_check.md", markdown(self.record)),
        ):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.out / name)


def env_section(check: Check, device: torch.device) -> dict[str, Any]:
    import torchvision

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "device": str(device),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            nccl=".".join(map(str, torch.cuda.nccl.version())),
            bf16=torch.cuda.is_bf16_supported(),
        )
    return info


def gpu_tests_section(check: Check) -> dict[str, Any]:
    log = check.out / "logs" / "gpu_tests.txt"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    cmd.append("tests/test_gpu.py")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    counts = {k: 0 for k in ("passed", "failed", "skipped", "error")}
    for part in tail.replace("=", " ").split(","):
        words = part.split()
        for i, w in enumerate(words[1:], 1):
            key = w.rstrip("s") if w.rstrip("s") in counts else w
            if key in counts and words[i - 1].isdigit():
                counts[key] = int(words[i - 1])
    failures = []
    if proc.returncode not in (0, 5) or counts["failed"] or counts["error"]:
        failures.append(f"pytest exit {proc.returncode}: {tail} (see {log})")
    if not check.smoke and counts["skipped"]:
        failures.append(f"{counts['skipped']} gpu tests skipped on a GPU machine (see {log})")
    return {"summary": tail, **counts, "failures": failures, "log": str(log)}


def _torchrun(check: Check, phase: str, args: argparse.Namespace, s: Sizes) -> dict[str, Any]:
    """One ``torchrun --nproc_per_node 1`` of this script's worker ``phase``."""
    result = check.out / f"{phase}.json"
    log = check.out / "logs" / f"{phase}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmd += [__file__, "--worker", phase, "--out", str(check.out)]
    cmd += ["--batch", str(s.batch), "--steps", str(s.steps)] + (["--smoke"] if check.smoke else [])
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8", PYTHONPATH=str(REPO))
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0 or not result.is_file():
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"torchrun {phase} exited {proc.returncode}; log {log}:\n{tail}")
    return json.loads(result.read_text(encoding="utf-8"))


def train_section(check: Check, args: argparse.Namespace, s: Sizes) -> dict[str, Any]:
    data = check.out / "data" / "FI"
    t0 = time.perf_counter()
    write_photos(data, files=s.files, unique=s.unique, seed=0)
    written_s = time.perf_counter() - t0
    first = _torchrun(check, "train-1", args, s)
    second = _torchrun(check, "train-2", args, s)
    out = summarise_runs(first, second)
    out["photos_written_s"] = round(written_s, 1)
    return out


def decode_section(check: Check, device: torch.device, s: Sizes) -> dict[str, Any]:
    data = check.out / "data" / "FI"
    write_photos(data, files=s.files, unique=s.unique, seed=0)  # kept from `train` if it ran
    return compare_decoders(data, device, size=s.size, resize=s.resize, batch=s.batch,
                            smoke=check.smoke)  # fmt: skip


def models_section(check: Check, device: torch.device, s: Sizes) -> dict[str, Any]:
    return compare_models(device, s, deadline=check.deadline)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the results and data")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (seconds)")
    ap.add_argument("--batch", type=int, help="training batch (default 64; smoke 4)")
    ap.add_argument("--steps", type=int, help="optimizer steps per epoch (default 48; smoke 2)")
    ap.add_argument(
        "--budget-s", type=float, help="skip what would start later (default 300; --smoke: none)"
    )
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {SECTIONS}")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # torchrun's child: a training phase
    args = ap.parse_args()
    s = sizes(args.smoke, args.batch, args.steps)
    if args.worker:
        from _gpu_check_train import worker

        worker(args.worker, args.out, s, smoke=args.smoke)
        return
    if torch.cuda.is_available() and not args.smoke:
        device = torch.device("cuda", 0)
    elif args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    else:
        raise SystemExit("no CUDA GPU here: this check needs one (or run it with --smoke)")
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--sections: unknown {sorted(unknown)}; choose from {SECTIONS}")
    budget = args.budget_s if args.budget_s is not None else (1e9 if args.smoke else 300.0)
    check = Check(args.out, args.smoke, budget)
    check.record["sizes"] = asdict(s)
    wanted = args.sections.split(",")
    plan = [
        ("env", env_section, (device,)),
        ("gpu_tests", gpu_tests_section, ()),
        ("train", train_section, (args, s)),
        ("decode", decode_section, (device, s)),
        ("models", models_section, (device, s)),
    ]
    for name, fn, extra in plan:
        if name in wanted:
            check.run(name, fn, *extra)
    print((args.out / "gpu_check.md").read_text(encoding="utf-8"))
    failed = [k for k, v in check.record["sections"].items() if v["ok"] is False]
    if failed:
        print(f"[gpu_check] FAILED: {', '.join(failed)} (details in {args.out / 'gpu_check.json'})")
        sys.exit(1)


if __name__ == "__main__":
    main()
