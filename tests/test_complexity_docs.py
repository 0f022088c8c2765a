"""The parameter and MAC counts docs/architecture.md prints, recomputed from today's network on
the meta device (shapes only): every built-in at 448 px, and the Fig. 2 mappings."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mdan_zoo import MDAN, MDANConfig, get_taxonomy, get_weights, list_weights
from mdan_zoo.config import MAPPINGS
from mdan_zoo.layers import MHCCA

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
DATASETS = {"FI": "fi", "WEBEmo": "webemo", "Emotion6": "emotion6"}


def _table(heading: str) -> list[list[str]]:
    """The cells of the first table under ``heading`` in architecture.md."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return [r for r in rows[2:]]  # header and rule dropped


@cache
def _build(taxonomy: str, config: MDANConfig, fold: bool | None = None) -> MDAN:
    with torch.device("meta"):
        model = MDAN(get_taxonomy(taxonomy), config)
    for m in model.modules():
        if isinstance(m, MHCCA):
            m.fold = fold
    return model.to("meta").eval()


@cache
def _count(taxonomy: str, config: MDANConfig, fold: bool | None = None) -> tuple[float, float]:
    """(M parameters, GMACs) at 448 x 448, as benchmarks/complexity.py counts them."""
    model = _build(taxonomy, config, fold)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 448, 448, device="meta"))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return params, counter.get_total_flops() / 2e9


def test_every_builtin_counts_as_the_docs_print() -> None:
    rows = _table("### Every built-in at 448 x 448")
    names = [re.match(r"`?(\w+)`?", r[0]).group(1) for r in rows]  # type: ignore[union-attr]
    assert sorted(names) == list_weights()  # one row per registry entry, none missing
    for name, row in zip(names, rows, strict=True):
        entry = get_weights(name)
        # the counts depend on the tree's shape only: one build per class counts (FI's 2 -> 8
        # serves ArtPhoto, IAPS, Abstract and EmoSet too)
        shape = next(
            get_weights(n).taxonomy
            for n in list_weights()
            if get_weights(n).get_taxonomy().num_classes == entry.get_taxonomy().num_classes
        )
        params, gmacs = _count(shape, entry.config)
        _, literal = _count(shape, entry.config, False)
        want = [f"{params:.2f}", f"{gmacs:.1f}", f"{2 * gmacs:.1f}", f"{literal:.1f}"]
        want.append(f"{2 * literal:.1f}")
        assert row[1:6] == want, name
        assert f"{entry.num_params / 1e6:.2f}" == row[1], name  # the registry's own count


def test_every_mapping_counts_as_the_docs_print() -> None:
    rows = _table("### Size of every setting")
    assert len(rows) == len(DATASETS) * len(MAPPINGS)
    for row in rows:
        tax = DATASETS[row[0]]
        name = re.match(r"\((\w)\)", row[1]).group(1)  # type: ignore[union-attr]
        full = MDANConfig(mapping=name)
        table2 = full.replace(mhcca=False, lcam=False, alpha=1.0)
        params_full = sum(p.numel() for p in _build(tax, full).parameters()) / 1e6
        params_t2 = sum(p.numel() for p in _build(tax, table2).parameters()) / 1e6
        assert [row[2], row[4]] == [f"{params_full:.2f}", f"{params_t2:.2f}"], row
    # the compute of one dataset's six (the others differ only in the classifier sizes)
    for row in rows[: len(MAPPINGS)]:
        name = row[1][1]
        _, full = _count(DATASETS[row[0]], MDANConfig(mapping=name))
        _, t2 = _count(
            DATASETS[row[0]], MDANConfig(mapping=name, mhcca=False, lcam=False, alpha=1.0)
        )
        assert [row[3], row[5]] == [f"{full:.1f}", f"{t2:.1f}"], row
