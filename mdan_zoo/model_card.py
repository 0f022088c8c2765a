"""The README.md model card written beside every checkpoint (YAML header for the Hub)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .registry import CITATION
from .taxonomy import Taxonomy

__all__ = ["model_card"]


def model_card(config: Mapping[str, Any]) -> str:
    """The README.md model card for a checkpoint config (YAML header for the Hub)."""
    arch = config["architecture"]
    tax = Taxonomy.from_dict(config["taxonomy"])
    pre = config["preprocessing"]
    metrics = config.get("metrics") or {}
    training = config.get("training") or {}
    counts = " -> ".join(str(n) for n in tax.num_classes)
    lines = [
        "---",
        "library_name: mdan_zoo",
        "license: mit",
        "pipeline_tag: image-classification",
        "tags:",
        "- visual-emotion-analysis",
        "- mdan",
        "- hierarchical-classification",
        "- safetensors",
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
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        for key, value in _flatten(metrics):
            lines.append(f"| {key} | {value} |")
    else:
        lines.append("No metrics were recorded with this checkpoint.")
    lines += [
        "",
        "## Preprocessing",
        "",
        f"Resize the shorter side to {pre['resize_size']} ({pre['interpolation']}), centre-crop "
        f"{pre['input_size']} x {pre['input_size']}, scale to [0, 1], normalise with mean "
        f"{pre['mean']} and std {pre['std']} (`model.eval_transform()` does all of it).",
        "",
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
    return "\n".join(lines)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flatten(value, prefix=f"{name}.")
        else:
            out.append((name, value))
    return out
