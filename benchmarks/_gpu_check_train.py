"""The GPU check's training runs (the torchrun workers) and its decoder comparison."""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mdan_zoo import Preprocessing, get_taxonomy
from mdan_zoo.data import load_dataset
from mdan_zoo.data.dataset import ImageDataset
from mdan_zoo.data.device_decode import EncodedImages, collate_encoded, decode_batch
from mdan_zoo.training import TrainConfig, Trainer, load_checkpoint, train
from mdan_zoo.training._state import flatten_optimizer

INPUT_KEYS = (
    "train_images_per_s",
    "data_wait_share",
    "first_batch_s",
    "loader_images_per_s",
    "loader_images_per_s_per_worker",
    "model_images_per_s",
)


def config(
    out: Path, name: str, sizes: Any, *, epochs: int, smoke: bool, **extra: Any
) -> TrainConfig:
    """The shipped ``fi`` config (the paper's recipe) on the written photos."""
    sets = {
        "name": f"check-{name}",
        "data_root": str(out / "data" / "FI"),
        "pretrained": "none",
        "epochs": epochs,
        "batch_size": sizes.batch,
        "max_steps_per_epoch": sizes.steps,
        "input_size": sizes.size,
        "resize_size": sizes.resize,
        "workers": sizes.workers,
        "amp": "bf16" if torch.cuda.is_available() and not smoke else "off",
        "deterministic": True,
        "output_dir": str(out / "runs" / name),
        "progress": False,
        "eval_test": False,
        "eval_batch_size": sizes.batch,
        **extra,
    }
    if smoke:
        sets.update(backbone="resnet18", model={"fpn_channels": sizes.fpn_channels})
    return TrainConfig.from_file("fi").with_overrides(
        [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sets.items()]
    )


def _rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("epoch", "train_loss", "train_steps", "train_images", "train_seconds", *INPUT_KEYS)
    return [{k: row.get(k) for k in keep} for row in history]


def _differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[list[str], float]:
    """Names whose tensors are not bit-identical, and the largest absolute difference."""
    names = sorted(set(a) | set(b))
    bad = [k for k in names if k not in a or k not in b or not torch.equal(a[k].cpu(), b[k].cpu())]
    worst = 0.0
    for k in bad:
        if k in a and k in b and a[k].shape == b[k].shape and a[k].is_floating_point():
            worst = max(worst, float((a[k].double().cpu() - b[k].double().cpu()).abs().max()))
    return bad, worst


def _optimizer_tensors(ckpt: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt.tensors.items() if k.startswith("optimizer")}


def _collectives(device: torch.device) -> dict[str, Any]:
    """The process group's own check: all_reduce, all_gather_object, barrier."""
    t = torch.full((4,), 1.5, device=device)
    dist.all_reduce(t)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": dist.get_rank()})
    dist.barrier()
    ok = bool(torch.allclose(t.cpu(), torch.full((4,), 1.5 * dist.get_world_size())))
    return {"backend": dist.get_backend(), "world": dist.get_world_size(), "collectives_ok": ok}


def worker(phase: str, out: Path, sizes: Any, *, smoke: bool) -> None:
    """One torchrun process: ``train-1`` (run A, 2 epochs; run B, epoch 1 and its checkpoint's
    round trip) or ``train-2`` (run B resumed for epoch 2 and compared with A; run C with
    ``decode=gpu``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if smoke:
        torch.set_num_threads(1)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not smoke
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    result: dict[str, Any] = {"phase": phase, **_collectives(device)}
    dev = {} if cuda else {"device": "cpu"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if phase == "train-1":
            start = time.perf_counter()
            a = train(config(out, "A", sizes, epochs=2, smoke=smoke, **dev))
            result["A"] = {"history": _rows(a.history), "seconds": time.perf_counter() - start}
            trainer = Trainer(config(out, "B", sizes, epochs=1, smoke=smoke, **dev))
            b = trainer.fit()
            saved = load_checkpoint(out / "runs" / "B", which="last")
            bad_w, worst_w = _differ(trainer.model.state_dict(), saved.model.state_dict())
            live, _ = flatten_optimizer(trainer.optimizer.state_dict())
            bad_o, _ = _differ(live, _optimizer_tensors(saved))
            result["B1"] = {
                "history": _rows(b.history),
                "roundtrip_bitwise": not bad_w and not bad_o,
                "roundtrip_differ": (bad_w + bad_o)[:10],
                "roundtrip_max_abs": worst_w,
            }
        else:
            start = time.perf_counter()
            b2 = train(config(out, "B", sizes, epochs=2, smoke=smoke, **dev), resume=True)
            seconds = time.perf_counter() - start
            ca = load_checkpoint(out / "runs" / "A", which="last")
            cb = load_checkpoint(out / "runs" / "B", which="last")
            bad_w, worst_w = _differ(ca.model.state_dict(), cb.model.state_dict())
            bad_o, worst_o = _differ(_optimizer_tensors(ca), _optimizer_tensors(cb))
            result["B2"] = {
                "history": _rows(b2.history),
                "seconds": seconds,
                "resumed_epochs": [r["epoch"] for r in b2.history],
                "resume_bitwise": not bad_w and not bad_o,
                "resume_differ": (bad_w + bad_o)[:10],
                "resume_differ_count": len(bad_w) + len(bad_o),
                "resume_max_abs": max(worst_w, worst_o),
            }
            start = time.perf_counter()
            c = train(config(out, "C", sizes, epochs=1, smoke=smoke, decode="gpu", **dev))
            result["C"] = {"history": _rows(c.history), "seconds": time.perf_counter() - start}
    result["nondeterministic_ops"] = sorted(
        {str(w.message).split("\n")[0][:300] for w in caught if "determinis" in str(w.message)}
    )
    result["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    if dist.get_rank() == 0:
        (out / f"{phase}.json").write_text(json.dumps(result, indent=2, default=str))
    dist.destroy_process_group()


def summarise_runs(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The train section's record from the two torchrun phases."""
    failures = []
    for phase in (first, second):
        if not phase["collectives_ok"]:
            failures.append(f"{phase['phase']}: the {phase['backend']} all_reduce gave a wrong sum")
    b1, b2 = first["B1"], second["B2"]
    if not b1["roundtrip_bitwise"]:
        failures.append(
            f"the checkpoint does not give back the weights in memory: {b1['roundtrip_differ']}"
        )
    if not b2["resume_bitwise"]:
        ops = sorted(set(first["nondeterministic_ops"]) | set(second["nondeterministic_ops"]))
        failures.append(
            f"resumed run B differs from uninterrupted run A in {b2['resume_differ_count']} tensors "
            f"(max |diff| {b2['resume_max_abs']:.3g}; e.g. {b2['resume_differ'][:3]}); "
            f"ops torch reported as nondeterministic: {ops or 'none'}"
        )
    if b2["resumed_epochs"] != [1, 2]:
        failures.append(f"the resumed run's history has epochs {b2['resumed_epochs']}, not [1, 2]")
    rows = {
        "A": first["A"]["history"],
        "B": b2["history"],
        "C (decode=gpu)": second["C"]["history"],
    }
    steps = (
        sum(r["train_steps"] for r in first["A"]["history"])
        + sum(r["train_steps"] for r in b2["history"])
        + sum(r["train_steps"] for r in second["C"]["history"])
    )
    for name, hist in rows.items():
        if not all(
            r["train_loss"] is not None and r["train_loss"] == r["train_loss"] for r in hist
        ):
            failures.append(f"run {name}: a non-finite training loss")
    return {
        "backend": first["backend"],
        "world": first["world"],
        "optimizer_steps": steps,
        "roundtrip_bitwise": b1["roundtrip_bitwise"],
        "resume_bitwise": b2["resume_bitwise"],
        "resume_max_abs": b2["resume_max_abs"],
        "nondeterministic_ops": sorted(
            set(first["nondeterministic_ops"]) | set(second["nondeterministic_ops"])
        ),
        "runs": rows,
        "peak_memory_gb": max(first["peak_memory_gb"] or 0, second["peak_memory_gb"] or 0) or None,
        "failures": failures,
    }


def compare_decoders(
    root: Path, device: torch.device, *, size: int, resize: int, batch: int, smoke: bool
) -> dict[str, Any]:
    """``decode=cpu`` vs ``decode=gpu`` on the written photos: the same crops and flips (same
    seeds), pixel differences in grey levels, and images/s of each path."""
    tax = get_taxonomy("fi")
    pre = Preprocessing(input_size=size, resize_size=resize)
    listed = load_dataset("fi", root, taxonomy=tax, progress=False)
    samples = listed.samples[: max(batch, 16)]
    cpu_set = ImageDataset(samples, tax, pre.train_transform())
    gpu_set = EncodedImages(ImageDataset(samples, tax), pre)
    want, items = [], []
    for i in range(len(samples)):
        torch.manual_seed(i)
        want.append(cpu_set[i][0])
        torch.manual_seed(i)
        items.append(gpu_set[i])
    enc, _ = collate_encoded(items)
    got = decode_batch(enc, device, pre, dataset=gpu_set.dataset).cpu()
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    grey = ((torch.stack(want) - got) * std * 255).abs()
    diff = {
        "mean": float(grey.mean()),
        "p99_9": float(torch.quantile(grey.flatten()[:: max(1, grey.numel() // 2_000_000)], 0.999)),
        "max": float(grey.max()),
    }
    limit = {"mean": 1.0, "max": 1.0} if device.type == "cpu" else {"mean": 1.0, "max": 48.0}

    def gpu_pass() -> None:
        decode_batch(enc, device, pre, dataset=gpu_set.dataset)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    gpu_pass()
    times = []
    for _ in range(3 if smoke else 10):
        t = time.perf_counter()
        gpu_pass()
        times.append(time.perf_counter() - t)
    cpu_start = time.process_time()
    for i in range(len(samples)):
        cpu_set[i]
    cpu_s = (time.process_time() - cpu_start) / len(samples)
    worker_start = time.process_time()
    for i in range(len(samples)):
        gpu_set[i]
    worker_s = (time.process_time() - worker_start) / len(samples)
    gpu_ips = len(samples) / statistics.median(times)
    failures = [
        f"decode=gpu pixels differ from decode=cpu by {diff[k]:.2f} grey levels ({k}), more than "
        f"{limit[k]:g}"
        for k in ("mean", "max")
        if diff[k] > limit[k]
    ]
    return {
        "images": len(samples),
        "grey_level_diff": diff,
        "tolerance": limit,
        "gpu_decode_images_per_s": gpu_ips,
        "cpu_path_images_per_s_per_core": 1.0 / cpu_s,
        "gpu_path_worker_images_per_s_per_core": 1.0 / worker_s,
        "cpu_cores_for_gpu_decode_rate": gpu_ips * cpu_s,
        "failures": failures,
    }
