"""The README.md model card written beside every checkpoint, built with huggingface_hub's
``ModelCard`` / ``ModelCardData``: the Hub reads its metadata (library, licence, tags,
datasets, base model) and its metrics, one ``EvalResult`` per level and branch (``model-index``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from ..registry import CITATION
from ..taxonomy import Taxonomy
from ._checkpoint import config_section
from ._refs import is_hub_ref

__all__ = ["card_data", "model_card"]

_BRANCHES = {"L": "P_L (local branch)", "G": "P_G (global branch)", "O": "P_O (overall)"}
_GENERIC_DATASETS = {"folder", "csv", "fashion_mnist_demo"}


def card_data(config: Mapping[str, Any], *, base_model: str | None = None) -> Any:
    """The card's ``huggingface_hub.ModelCardData`` for a checkpoint config."""
    from huggingface_hub import ModelCardData

    tax = Taxonomy.from_dict(config["taxonomy"])
    training = config.get("training") or {}
    dataset = training.get("dataset") if isinstance(training.get("dataset"), str) else None
    init = training.get("init_from")
    if base_model is None and isinstance(init, str) and is_hub_ref(init):
        base_model = init[len("hf-hub:") :] if init.startswith("hf-hub:") else init
        base_model = base_model.partition("@")[0]
    results = _eval_results(config.get("metrics") or {}, tax, dataset)
    extra: dict[str, Any] = {"base_model_relation": "finetune"} if base_model else {}
    return ModelCardData(
        library_name="mdan_zoo",
        license="mit",
        pipeline_tag="image-classification",
        tags=["visual-emotion-analysis", "mdan", "hierarchical-classification", "safetensors"],
        datasets=[dataset] if dataset and dataset not in _GENERIC_DATASETS else None,
        base_model=base_model,
        model_name=f"mdan-{tax.name}" if results else None,
        eval_results=results or None,
        **extra,
    )


def _eval_results(metrics: Mapping[str, Any], tax: Taxonomy, dataset: str | None) -> list[Any]:
    """One EvalResult per ``accuracy_<L|G|O>`` and ``ece_<L|G|O>`` entry and level (keyed by class count or level
    name, as ``export.run_metrics`` and the docs write them)."""
    from huggingface_hub import EvalResult

    split = "test" if "test_images" in metrics else None
    out = []
    kinds = (("accuracy", "accuracy", "accuracy"), ("ece", "ece", "ECE (%, 15 bins)"))
    for (prefix, metric, what), (branch, label) in itertools.product(kinds, _BRANCHES.items()):
        per_level = metrics.get(f"{prefix}_{branch}")
        if not isinstance(per_level, Mapping):
            continue
        for key, value in per_level.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            depth = _level(tax, str(key))
            level = (
                f"{tax.level_names[depth]} ({tax.num_classes[depth]} classes)"
                if depth is not None
                else str(key)
            )
            out.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=dataset or tax.name,
                    dataset_name=dataset or f"{tax.name} taxonomy",
                    dataset_split=split,
                    metric_type=metric,
                    metric_value=value,
                    metric_name=f"{label} {what}, {level}",
                )
            )
    return out


def _level(tax: Taxonomy, key: str) -> int | None:
    for depth, (name, count) in enumerate(zip(tax.level_names, tax.num_classes, strict=True)):
        if key in (name, str(count)):
            return depth
    return None


def model_card(config: Mapping[str, Any], *, base_model: str | None = None) -> str:
    """The README.md model card for a checkpoint config (``ModelCard`` text: YAML metadata,
    then the description); ``base_model`` names the Hub repo it was fine-tuned from."""
    from huggingface_hub import ModelCard

    arch = config[config_section(config["format_version"])]
    tax = Taxonomy.from_dict(config["taxonomy"])
    pre = config["preprocessing"]
    metrics = config.get("metrics") or {}
    training = config.get("training") or {}
    counts = " -> ".join(str(n) for n in tax.num_classes)
    data = card_data(config, base_model=base_model)
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# MDAN on the `{tax.name}` taxonomy ({arch['backbone']})",
        "",
        "MDAN, the Multi-level Dependent Attention Network for visual emotion analysis "
        "(Xu et al., CVPR 2022), saved with mdan_zoo "
        f"{config.get('mdan_zoo_version', '')}. It predicts one label per level of the "
        f"taxonomy below ({counts} classes, coarse to fine).",
        "",
        "```python",
        "from mdan_zoo import MDAN",
        "model = MDAN.from_pretrained('path/or/org-name')  # add revision='<commit>' to pin",
        "transform = model.eval_transform()",
        "```",
        "",
        "## Taxonomy",
        "",
        "```",
        tax.describe(),
        "```",
        "",
        "## Metrics",
        "",
    ]
    shown = {k: v for k, v in metrics.items() if k != "warnings"}
    if shown:
        lines += ["| metric | value |", "|---|---|"]
        for key, value in _flatten(shown):
            lines.append(f"| {key} | {value} |")
    else:
        lines.append("No metrics were recorded with this checkpoint.")
    lines += [
        "",
        "## Preprocessing",
        "",
        (
            f"Resize the shorter side to {pre['resize_size']} ({pre['interpolation']}), "
            if pre["resize_size"] is not None
            else "Keep the image's own size (scaled up only below the crop size), "
        )
        + f"centre-crop {pre['input_size']} x {pre['input_size']}, scale to [0, 1], normalise with mean "
        f"{pre['mean']} and std {pre['std']} (`model.eval_transform()` does all of it).",
        "",
        *_calibration_section(arch),
        "## Training",
        "",
    ]
    if training:
        lines += [f"- {k}: {v}" for k, v in _flatten(training)]
    else:
        lines.append("Not recorded.")
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Research on visual emotion analysis: the emotion an image is likely to evoke in viewers, "
        "as labelled in the training data. Emotion labels are subjective and culturally "
        "dependent, and the benchmark datasets are small, web-sourced and skewed; do not use the "
        "predictions to make decisions about people, and measure accuracy on your own data before "
        "relying on it. Images from the benchmark datasets are licensed for non-commercial research.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    warnings = metrics.get("warnings") or []
    if warnings:  # what the run found wrong with its own verdict, right under the description
        lines[8:8] = [
            "## Warnings",
            "",
            "The training run that made this checkpoint found:",
            "",
            *[f"- **Warning:** {w}" for w in warnings],
            "",
        ]
    if data.base_model:
        base = data.base_model
        lines[6:6] = [f"Fine-tuned from [{base}](https://huggingface.co/{base}).", ""]
    return str(ModelCard("\n".join(lines)).content)


def _calibration_section(arch: Mapping[str, Any]) -> list[str]:
    local = arch.get("local_temperatures")
    if not local:
        return []
    values = ", ".join(f"{t:.3f}" for t in local)
    return [
        "## Calibration",
        "",
        f"Temperature scaling fitted on the validation split: local logits divided by {values} "
        f"(coarse to fine), global logits by {arch.get('global_temperature', 1.0):.3f}. "
        "`model.predict` applies them; `calibration=False` (`--no-calibration`) gives the raw "
        "model.",
        "",
    ]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flatten(value, prefix=f"{name}.")
        else:
            out.append((name, value))
    return out
