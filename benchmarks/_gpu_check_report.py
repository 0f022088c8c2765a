"""The GPU check's Markdown report (``gpu_check.md``), from its JSON record."""

from __future__ import annotations

from typing import Any

from _gpu_check_models import BASE_NAME, INFERENCE_MODES, MDAN_NAME


def _num(v: Any, digits: int = 1) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"
    return str(v)


def _g(v: float) -> str:
    return f"{v:.3g}"


def _state(entry: dict[str, Any]) -> str:
    if entry.get("ok") is None:
        return f"skipped ({entry.get('skipped', '')})"
    return "ok" if entry["ok"] else "**FAILED**"


def markdown(record: dict[str, Any]) -> str:
    sec = record["sections"]
    env = sec.get("env", {})
    where = env.get("gpu") or f"{env.get('device', '?')} (smoke)" if env else "?"
    lines = [
        f"# GPU check: {where}",
        "",
        f"torch {env.get('torch', '?')}, torchvision {env.get('torchvision', '?')}, CUDA "
        f"{env.get('cuda', '-')}, {env.get('cpus', '?')} CPUs, load average "
        f"{_num(list(env.get('load_average', [None]))[0], 2)}, {env.get('date_utc', '?')} UTC; "
        f"{'smoke run (tiny sizes, CPU)' if record['smoke'] else 'full run'}; "
        f"{record.get('total_s', '?')} s"
        + (f" of a {record['budget_s']:.0f} s budget." if record["budget_s"] < 1e8 else "."),
        "",
        "| section | result | s | notes |",
        "|---|---|---:|---|",
    ]
    for name, entry in sec.items():
        note = "; ".join(entry.get("failures", [])) or entry.get("error", "") or _note(name, entry)
        lines.append(f"| {name} | {_state(entry)} | {entry['seconds']} | {note[:400]} |")
    train = sec.get("train", {})
    if train.get("runs"):
        lines += ["", "## Training runs (torchrun, one process)", ""]
        lines.append(
            "| run | epoch | steps | loss | images/s | data wait | first batch s | loader images/s "
            "(per worker) | model images/s |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for run, hist in train["runs"].items():
            for r in hist:
                lines.append(
                    f"| {run} | {r['epoch']} | {r['train_steps']} | {_num(r['train_loss'], 4)} | "
                    f"{_num(r['train_images_per_s'])} | {_num(100 * (r['data_wait_share'] or 0), 0)}% | "
                    f"{_num(r['first_batch_s'])} | {_num(r['loader_images_per_s'])} "
                    f"({_num(r['loader_images_per_s_per_worker'])}) | {_num(r['model_images_per_s'])} |"
                )
    models = sec.get("models", {})
    if models.get("rows"):
        lines += _model_table(models)
    return "\n".join(lines) + "\n"


def _note(name: str, entry: dict[str, Any]) -> str:
    if name == "env":
        return ", ".join(
            f"{k} {entry[k]}"
            for k in ("gpu", "gpu_memory_gb", "capability", "nccl", "bf16")
            if k in entry
        )
    if name == "gpu_tests":
        return entry.get("summary", "")
    if name == "train":
        return (
            f"{entry.get('backend')} x{entry.get('world')}, {entry.get('optimizer_steps')} optimizer "
            f"steps; checkpoint round trip bitwise {_num(entry.get('roundtrip_bitwise'))}; resumed "
            f"= uninterrupted bitwise {_num(entry.get('resume_bitwise'))}"
        )
    if name == "decode":
        d = entry.get("grey_level_diff", {})
        return (
            f"gpu vs cpu pixels: mean {_num(d.get('mean'), 3)}, max {_num(d.get('max'))} grey levels; "
            f"decode=gpu {_num(entry.get('gpu_decode_images_per_s'), 0)} images/s on the device, "
            f"decode=cpu {_num(entry.get('cpu_path_images_per_s_per_core'), 0)} images/s per CPU core "
            f"(so {_num(entry.get('cpu_cores_for_gpu_decode_rate'))} cores for the device's rate)"
        )
    return ""


def _model_table(models: dict[str, Any]) -> list[str]:
    rows, mem, big = models["rows"], models.get("memory", {}), models.get("largest_batch", {})
    names = models.get("names", {})
    a_name, b_name = names.get(MDAN_NAME, MDAN_NAME), names.get(BASE_NAME, BASE_NAME)
    lines = [
        "",
        f"## {a_name} vs {b_name}, batch {models['batch']}, {models['size']} px",
        "",
        f"MACs per image: training {_g(models['gmacs_train'][MDAN_NAME])} vs "
        f"{_g(models['gmacs_train'][BASE_NAME])} G, forward {_g(models['gmacs_forward'][MDAN_NAME])}"
        f" vs {_g(models['gmacs_forward'][BASE_NAME])} G. Ratios: MDAN time / ResNet time, and "
        "that divided by the MAC ratio (per MAC).",
        "",
        f"| measure | {a_name} | {b_name} | time ratio | per MAC |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {"train": "training images/s (bf16 autocast on GPU)"}
    labels.update({f"infer_{m}": f"inference images/s, {m}" for m in INFERENCE_MODES})
    for key, label in labels.items():
        r = rows.get(key, {})
        lines.append(
            f"| {label} | {_num(r.get(MDAN_NAME, r.get('skipped')))} | {_num(r.get(BASE_NAME))} | "
            f"{_num(r.get('time_ratio'), 3)} | {_num(r.get('per_mac'), 3)} |"
        )
    for label in ("plain", "checkpointing"):
        for key, what in (
            (label, "per extra image"),
            (f"{label}_peak_per_image_mb", "peak / batch"),
        ):
            a, b = mem.get(MDAN_NAME, {}).get(key), mem.get(BASE_NAME, {}).get(key)
            if key != label and a is None and b is None:
                continue
            ratio = a / b if isinstance(a, float) and isinstance(b, float) and b else None
            lines.append(
                f"| training memory, MB {what} ({label}) | {_num(a)} | {_num(b)} | "
                f"{_num(ratio, 3)} | |"
            )
    if MDAN_NAME in big:
        a, b = big[MDAN_NAME], big[BASE_NAME]
        cap = lambda e: f"{e['fits']}{'+ (search cap)' if e['capped'] else ''}"  # noqa: E731
        lines.append(f"| largest training batch that fits | {cap(a)} | {cap(b)} | | |")
    if models.get("compile_seconds"):
        c = models["compile_seconds"]
        lines.append(
            f"| torch.compile, first call s | {_num(c.get(MDAN_NAME))} | {_num(c.get(BASE_NAME))} | | |"
        )
    return lines
