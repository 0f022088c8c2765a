"""The page's HTML, from the prediction results: nothing here computes a probability.

Every string that comes from outside (file names, label names from a downloaded checkpoint) is
HTML-escaped, so a label named ``<script>`` shows as text. The exact probabilities sit in
``data-*`` attributes beside the rounded ones shown, so a test (or a user's script) reads the
numbers the page was given, not a rounding of them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ..prediction import LabelProb, Prediction

__all__ = ["CSS", "model_panel", "results_html", "warning_banner"]

CSS = """
.mdan-warning {border: 3px solid #c62828; background: #ffebee; color: #8e0000; padding: 12px;
  font-weight: 600; border-radius: 6px; margin-bottom: 8px}
.mdan-result {border: 1px solid #ddd; border-radius: 6px; padding: 10px; margin-bottom: 10px}
.mdan-source {font-weight: 600; margin-bottom: 4px; word-break: break-all}
.mdan-path {font-size: 1.15em; margin: 6px 0}
.mdan-error {color: #b71c1c; font-weight: 600}
.mdan-level {width: 100%; border-collapse: collapse; margin: 4px 0 8px 0}
.mdan-level caption {text-align: left; font-weight: 600; font-size: 0.95em}
.mdan-level td {padding: 1px 6px; vertical-align: middle}
.mdan-level td.mdan-name {width: 30%; word-break: break-word}
.mdan-bar {display: inline-block; height: 0.8em; vertical-align: middle; border-radius: 2px}
.mdan-bar-o {background: #1565c0} .mdan-bar-l {background: #2e7d32} .mdan-bar-g {background: #ef6c00}
.mdan-answer {font-weight: 700}
.mdan-muted {color: #666; font-size: 0.9em}
#mdan-attention .thumbnail-item {aspect-ratio: auto !important; height: auto !important}
#mdan-attention .thumbnail-item img {height: auto !important; object-fit: contain !important}
#mdan-attention .grid-container {grid-auto-rows: auto !important; grid-template-rows: none !important}
#mdan-attention .grid-wrap {height: auto !important; max-height: 80vh}
"""

BRANCHES = (
    ("o", "prob", "P_O"),
    ("l", "local_prob", "P_L"),
    ("g", "global_prob", "P_G"),
)
"""(css suffix, LabelProb attribute, heading): P_O = alpha P_L + (1 - alpha) P_G (Sec. 3.2)."""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _bar(kind: str, heading: str, value: float | None) -> str:
    if value is None:
        return '<td class="mdan-muted">n/a</td>'
    width = max(0.0, min(100.0, 100.0 * value))
    return (
        f'<td title="{heading}"><span class="mdan-bar mdan-bar-{kind}" '
        f'style="width:{width * 1.2:.1f}px"></span> {heading} {value:.3f}</td>'
    )


def _label_row(entry: LabelProb, *, answer: bool, branches: bool) -> str:
    attrs = f'data-label="{_esc(entry.label)}" data-po="{entry.prob!r}"'
    if entry.local_prob is not None:
        attrs += f' data-pl="{entry.local_prob!r}"'
    if entry.global_prob is not None:
        attrs += f' data-pg="{entry.global_prob!r}"'
    name_class = "mdan-name mdan-answer" if answer else "mdan-name"
    mark = " &#10003;" if answer else ""
    cells = [f'<td class="{name_class}">{_esc(entry.label)}{mark}</td>']
    for kind, attr, heading in BRANCHES if branches else BRANCHES[:1]:
        cells.append(_bar(kind, heading, getattr(entry, attr)))
    return f'<tr class="mdan-label" {attrs}>{"".join(cells)}</tr>'


def _result(pred: Prediction, *, branches: bool) -> str:
    src = _esc(pred.source)
    if not pred.ok:
        return (
            f'<div class="mdan-result" data-source="{src}" data-ok="false">'
            f'<div class="mdan-source">{src}</div>'
            f'<div class="mdan-error">&#9888; {_esc(pred.error)}</div></div>'
        )
    path = " &gt; ".join(_esc(c.label) for c in pred.consistent)
    note = (
        ""
        if pred.argmax_consistent
        else '<div class="mdan-muted">the per-level top labels break the hierarchy; the path '
        "above is the hierarchy-consistent answer (the highest product of P_O)</div>"
    )
    parts = [
        f'<div class="mdan-result" data-source="{src}" data-ok="true">',
        f'<div class="mdan-source">{src}</div>',
        f'<div class="mdan-path" data-path="{_esc(" > ".join(c.label for c in pred.consistent))}"'
        f' data-joint="{pred.joint_prob!r}">{path} '
        f'<span class="mdan-muted">(joint P_O {pred.joint_prob:.3f})</span></div>',
        note,
    ]
    for depth, level in enumerate(pred.levels):
        answer = pred.consistent[depth].label if depth < len(pred.consistent) else None
        rows = "".join(
            _label_row(t, answer=t.label == answer, branches=branches) for t in level.top_k
        )
        parts.append(
            f'<table class="mdan-level" data-level="{_esc(level.level)}">'
            f"<caption>{_esc(level.level)}</caption>{rows}</table>"
        )
    parts.append("</div>")
    return "".join(parts)


def results_html(predictions: Sequence[Prediction], *, branches: bool = False) -> str:
    """One card per image: the consistent path with its joint P_O, then every level's top
    labels with P_O bars (and P_L, P_G with ``branches``); an unreadable image gets its reason."""
    if not predictions:
        return '<div class="mdan-muted">Drop one or several photos above.</div>'
    body = "".join(_result(p, branches=branches) for p in predictions)
    return f'<div id="mdan-cards" data-count="{len(predictions)}">{body}</div>'


def warning_banner(message: str | None, *, element_id: str | None = None) -> str:
    """The UntrainedWeightsWarning text, loud, or nothing."""
    if message is None:
        return ""
    ident = f' id="{_esc(element_id)}"' if element_id else ""
    return (
        f'<div class="mdan-warning"{ident}>&#9888; UntrainedWeightsWarning: {_esc(message)}</div>'
    )


def model_panel(info: dict[str, Any]) -> str:
    """The side panel: where the weights came from, the preprocessing, the taxonomy tree."""
    rows = "".join(
        f"<tr><td>{_esc(k)}</td><td><code>{_esc(v)}</code></td></tr>" for k, v in info["rows"]
    )
    return (
        '<div id="mdan-model">'
        f"<h3>Model</h3><table>{rows}</table>"
        f"<h4>Taxonomy</h4><pre>{_esc(info['tree'])}</pre></div>"
    )
