"""The weights registry: every named set of MDAN weights, described as data.

An entry says where the weights live (Hub repo, pinned commit, file, sha256), what they expect
(taxonomy, architecture config, preprocessing), what the paper reports for that configuration
(Table 1 and Table 3, kept apart from anything we reproduce), how to train them and under which
terms. No checkpoint of the paper's six configurations is published yet: those entries say
``status="not published"`` and their revision and sha256 are ``None`` -- never a made-up value.
Loading one raises :class:`UnpublishedWeightsError`, which says how to train one.

This module imports neither torch nor the Hub, so listing the zoo is instant.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._hints import docs_url
from .config import MDANConfig, Preprocessing
from .errors import UnpublishedWeightsError
from .taxonomy import Taxonomy, get_taxonomy

__all__ = [
    "CITATION",
    "WeightsEntry",
    "format_table",
    "UnpublishedWeightsError",
    "get_weights",
    "list_weights",
]

Status = Literal["published", "not published"]

CITATION = """@inproceedings{xu2022mdan,
  title     = {{MDAN}: Multi-level Dependent Attention Network for Visual Emotion Analysis},
  author    = {Xu, Liwen and Wang, Zhengtao and Wu, Bin and Lui, Simon},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""
"""BibTeX of the paper every entry cites."""

_PAPER_NUM_PARAMS = 48_790_000
"""Table 1: MDAN on ResNet-101, "48.79M" parameters (same figure for every dataset)."""

_PAPER_GFLOPS = 101.4
"""Table 1: MDAN on ResNet-101 at 448 x 448, 101.4 GFLOPs."""


@dataclass(frozen=True)
class WeightsEntry:
    """One named set of weights.

    Attributes:
        name: the registry name, also the factory's name (``"mdan_webemo"``).
        dataset: the dataset the weights are (to be) trained on, as the paper names it.
        taxonomy: name of the built-in taxonomy (:func:`~mdan_zoo.taxonomy.get_taxonomy`).
        config: the architecture (the paper's full model on ResNet-101).
        preprocessing: the input the weights expect (Sec. 5.2: 448 x 448, ImageNet statistics).
        hub_repo: the Hub repository the weights are (to be) published to.
        revision: full 40-hex commit of ``hub_repo`` to download; ``None`` until published.
        filename: the weights file in the repository (safetensors only).
        sha256: SHA-256 of ``filename``; ``None`` until published.
        status: ``"published"`` or ``"not published"``.
        paper_metrics: Table 1 accuracy (%) of P_O per number of classes, e.g. ``{"2": 82.72}``;
            empty for datasets the paper did not use.
        paper_branch_metrics: Table 3 accuracy (%) per branch (``"P_L"``, ``"P_G"``, ``"P_O"``)
            and number of classes, where the paper gives them.
        reproduced_metrics: what our published checkpoint measures (same keys), else empty.
        reproduced_mean / reproduced_std: the mean and sample std (%) over the runs of the
            paper's protocol (3 seeds, or the 5 folds of the small sets) per branch
            (``"P_L"``, ``"P_G"``, ``"P_O"``) and number of classes, as ``mdan-zoo report``
            prints them and ``mdan-zoo export`` of the runs' folder records them
            (``metrics["runs"]["mean"]`` / ``["std"]`` in the export's config.json); empty
            until such runs are published.
        reproduced_runs: the runs behind them (``metrics["runs"]["names"]``: ``seed-0``,
            ``fold-3``...; the published checkpoint is ``metrics["runs"]["exported"]``);
            empty until published.
        paper_num_params: Table 1 parameter count (48.79M for MDAN, every dataset).
        paper_gflops: Table 1 GFLOPs at 448 x 448.
        num_params: our count for this entry's model (a test recomputes it).
        recipe: how the weights are (to be) trained (Sec. 5.2) and the trainer config to use.
        license: licence of the weights once published; see ``license_note``.
        license_note: the dataset terms that bind the weights.
        citation: BibTeX to cite.
        baselines: for datasets beyond the paper, what their own papers report (``source``,
            ``protocol``, then one line of accuracies per set and number of classes); the MDAN
            paper has no number on them, though another paper may have re-run MDAN.
    """

    name: str
    dataset: str
    taxonomy: str
    config: MDANConfig
    preprocessing: Preprocessing
    hub_repo: str
    revision: str | None
    filename: str
    sha256: str | None
    status: Status
    paper_metrics: Mapping[str, float]
    paper_branch_metrics: Mapping[str, Mapping[str, float]]
    reproduced_metrics: Mapping[str, float] = field(default_factory=dict)
    reproduced_mean: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reproduced_std: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reproduced_runs: tuple[str, ...] = ()
    paper_num_params: int = _PAPER_NUM_PARAMS
    paper_gflops: float = _PAPER_GFLOPS
    num_params: int = 0
    recipe: Mapping[str, Any] = field(default_factory=dict)
    license: str = "mit"
    license_note: str = ""
    citation: str = CITATION
    baselines: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status == "published":
            if not (self.revision and len(self.revision) == 40 and self.sha256):
                raise ValueError(
                    f"registry entry {self.name!r}: a published entry needs a full 40-hex "
                    "revision and a sha256"
                )
        elif self.revision is not None or self.sha256 is not None:
            raise ValueError(
                f"registry entry {self.name!r} is not published: revision and sha256 must be None"
            )
        if not self.filename.endswith(".safetensors"):
            raise ValueError(f"registry entry {self.name!r}: weights must be a .safetensors file")

    @property
    def published(self) -> bool:
        return self.status == "published"

    @property
    def hub_ref(self) -> str:
        """``hf-hub:org/name@revision`` (without ``@`` while unpublished)."""
        return f"hf-hub:{self.hub_repo}" + (f"@{self.revision}" if self.revision else "")

    def get_taxonomy(self) -> Taxonomy:
        return get_taxonomy(self.taxonomy)

    def reproduce_hint(self) -> str:
        """What to do instead of downloading, for error messages and the CLI."""
        return (
            f"train it with `mdan-zoo train {self.recipe.get('trainer_config', 'CONFIG')} "
            f"--set data_root=/path/to/{self.dataset}` (a config that ships with mdan_zoo; "
            f"the paper's protocol and the rest in {docs_url('reproduce.md')}), "
            f"then load the result with `{self.name}(weights='path/to/run')` or "
            f"`MDAN.from_pretrained('path/to/run')` (the run's validation-selected epoch); "
            "`mdan-zoo export path/to/run OUT_DIR` makes the Hub-layout folder to publish, and a "
            ".safetensors file you already have loads the same way"
        )

    def require_published(self) -> None:
        """Raise :class:`UnpublishedWeightsError` unless a checkpoint is published."""
        if not self.published:
            raise UnpublishedWeightsError(
                f"no checkpoint of {self.name!r} ({self.dataset}, {self.taxonomy} taxonomy) is "
                f"published yet (registry status: {self.status}), so it cannot be downloaded, and pretrained=True "
                f"will not hand you random weights instead. To get one, "
                f"{self.reproduce_hint()}."
            )

    def download_source(self, revision: str | None = None) -> tuple[str, str | None, str | None]:
        """``(hf-hub ref, revision, expected sha256)`` to fetch the published checkpoint, at
        ``revision`` (default: the pinned commit); raises :class:`UnpublishedWeightsError`
        first. The registry's sha256 belongs to its pinned commit: another revision is checked
        against the sha256 its own config.json records."""
        self.require_published()
        expected = self.sha256 if revision in (None, self.revision) else None
        return f"hf-hub:{self.hub_repo}", revision or self.revision, expected

    def describe(self) -> str:
        """Human-readable entry: checkpoint, taxonomy tree, paper and reproduced metrics."""
        tax = self.get_taxonomy()
        counts = list(tax.num_classes)
        lines = [
            f"{self.name}: MDAN on {self.dataset} ({self.config.backbone}), status: {self.status}",
            f"  hub repo:   {self.hub_repo}",
            f"  revision:   {self.revision or '- (not published)'}",
            f"  file:       {self.filename}",
            f"  sha256:     {self.sha256 or '- (not published)'}",
            f"  parameters: {self.num_params:,} (ours); paper Table 1: "
            f"{self.paper_num_params / 1e6:.2f}M, {self.paper_gflops} GFLOPs",
            f"  input:      resize {self.preprocessing.resize_size}, crop "
            f"{self.preprocessing.input_size}, mean {list(self.preprocessing.mean)}, "
            f"std {list(self.preprocessing.std)}",
            f"  licence:    {self.license} ({self.license_note})",
            "",
            "taxonomy " + tax.describe(),
            "",
            "accuracy (%) by number of classes " + " / ".join(str(c) for c in counts),
        ]
        rows = [("paper, Table 1 (P_O)", self.paper_metrics)]
        rows += [(f"paper, Table 3 ({k})", v) for k, v in self.paper_branch_metrics.items()]
        rows.append(("reproduced", self.reproduced_metrics))
        for label, values in rows:
            cells = [f"{values[str(c)]:.2f}" if str(c) in values else "-" for c in counts]
            lines.append(f"  {label:<24} " + " / ".join(cells))
        if self.baselines:
            lines += ["", "published results on this dataset (not from the MDAN paper):"]
            lines += [f"  {k}: {v}" for k, v in self.baselines.items()]
        n = len(self.reproduced_runs)
        for tag, values in self.reproduced_mean.items():
            std = self.reproduced_std.get(tag, {})
            cells = [
                f"{values[str(c)]:.2f} ± {std[str(c)]:.2f}"
                if str(c) in values and std.get(str(c)) is not None
                else (f"{values[str(c)]:.2f}" if str(c) in values else "-")
                for c in counts
            ]
            lines.append(f"  {f'reproduced {tag}, {n} runs':<24} " + " / ".join(cells))
        if n:
            lines.append(f"  runs: {', '.join(self.reproduced_runs)}")
        lines += ["", "recipe:"]
        lines += [f"  {k}: {v}" for k, v in self.recipe.items()]
        if not self.published:
            lines += ["", f"No checkpoint yet: {self.reproduce_hint()}."]
        lines += ["", "cite:", self.citation]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (for ``mdan-zoo info`` and the docs)."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "status": self.status,
            "hub_repo": self.hub_repo,
            "revision": self.revision,
            "filename": self.filename,
            "sha256": self.sha256,
            "taxonomy": self.taxonomy,
            "num_classes": list(self.get_taxonomy().num_classes),
            "architecture": self.config.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "paper_metrics": dict(self.paper_metrics),
            "paper_branch_metrics": {k: dict(v) for k, v in self.paper_branch_metrics.items()},
            "reproduced_metrics": dict(self.reproduced_metrics),
            "reproduced_mean": {k: dict(v) for k, v in self.reproduced_mean.items()},
            "reproduced_std": {k: dict(v) for k, v in self.reproduced_std.items()},
            "reproduced_runs": list(self.reproduced_runs),
            "paper_num_params": self.paper_num_params,
            "paper_gflops": self.paper_gflops,
            "num_params": self.num_params,
            "recipe": dict(self.recipe),
            "license": self.license,
            "license_note": self.license_note,
            "citation": self.citation,
        }


# ---------------------------------------------------------------------------- the entries
_LARGE_RECIPE = {  # Sec. 5.2, large-scale datasets
    "optimizer": "SGD",
    "momentum": 0.9,
    "weight_decay": 1e-3,
    "batch_size": 64,
    "epochs": 30,
    "lr_backbone": 1e-3,
    "lr_new": 1e-2,
    "lr_schedule": "divide by 10 every 10 epochs",
    "init": "ImageNet-pretrained ResNet-101",
    "train_transform": "random 448x448 crop + horizontal flip, per-channel normalisation",
}
_SMALL_RECIPE = {  # Sec. 5.2, small datasets start from an FI model
    **_LARGE_RECIPE,
    "lr_backbone": 1e-4,
    "lr_new": 1e-3,
    "init": "the FI model (mdan_fi)",
    "evaluation": "stratified 5-fold cross-validation, mean and std",
}
_DATASET_TERMS = (
    "The weights are trained on {dataset}, whose images are distributed for non-commercial "
    "research; use the weights under the same terms."
)


@dataclass(frozen=True)
class _Row:
    """One registry row as a keyword record. ``table1``: the paper's Table 1 accuracy of P_O per
    number of classes; ``table3``: Table 3's accuracy of P_L and P_G (its P_O column is Table
    1's, so it is not stored again); ``num_params``: our count for the paper configuration
    (tests/test_zoo.py rebuilds every model and checks it)."""

    name: str
    dataset: str
    taxonomy: str
    recipe: Mapping[str, Any]
    split: str
    num_params: int
    table1: Mapping[str, float] = field(default_factory=dict)
    table3: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


_ROWS = [
    _Row(
        name="mdan_webemo", dataset="WEBEmo", taxonomy="webemo", recipe=_LARGE_RECIPE,
        split="official 80/20 train/test split, run once", num_params=50_980_986,
        table1={"2": 82.72, "6": 55.65, "25": 34.28},
        table3={"P_L": {"2": 82.53, "6": 53.88, "25": 34.03},
                "P_G": {"2": 79.91, "6": 53.34, "25": 32.95}},
    ),
    _Row(
        name="mdan_fi", dataset="FI", taxonomy="fi", recipe=_LARGE_RECIPE,
        split="80/5/15 train/val/test, mean of 3 runs", num_params=48_823_378,
        table1={"2": 91.08, "8": 76.41},
        table3={"P_L": {"2": 89.50, "8": 75.21}, "P_G": {"2": 87.39, "8": 72.75}},
    ),
    _Row(
        name="mdan_emotion6", dataset="Emotion6", taxonomy="emotion6", recipe=_LARGE_RECIPE,
        split="80/20 seeded split, mean of 3 runs", num_params=48_817_230,
        table1={"2": 84.62, "6": 61.66},
        table3={"P_L": {"2": 84.44, "6": 60.73}, "P_G": {"2": 81.48, "6": 58.83}},
    ),
    _Row(
        name="mdan_artphoto", dataset="ArtPhoto", taxonomy="artphoto", recipe=_SMALL_RECIPE,
        split="5-fold cross-validation", num_params=48_823_378,
        table1={"2": 91.50, "8": 78.12},
        table3={"P_L": {"2": 92.50}, "P_G": {"2": 89.38}},
    ),
    _Row(
        name="mdan_iaps", dataset="IAPSsubset", taxonomy="iaps", recipe=_SMALL_RECIPE,
        split="5-fold cross-validation", num_params=48_823_378,
        table1={"2": 96.73, "8": 85.96},
        table3={"P_L": {"2": 95.75}, "P_G": {"2": 95.25}},
    ),
    _Row(
        name="mdan_abstract", dataset="Abstract", taxonomy="abstract", recipe=_SMALL_RECIPE,
        split="5-fold cross-validation", num_params=48_823_378,
        table1={"2": 83.80, "8": 72.34},
        table3={"P_L": {"2": 84.15}, "P_G": {"2": 80.64}},
    ),
    _Row(
        name="mdan_emoset", dataset="EmoSet", taxonomy="emoset", recipe=_LARGE_RECIPE,
        split="the release's train/val/test JSON files (EmoSet-118K)", num_params=48_823_378,
    ),
    _Row(
        name="mdan_findingemo", dataset="FindingEmo", taxonomy="plutchik3",
        recipe=_LARGE_RECIPE, split="seeded stratified 80/5/15 (the release ships no split), run once",
        num_params=50_979_962,
    ),
]  # fmt: skip


def _branch_metrics(row: _Row) -> dict[str, dict[str, float]]:
    """Table 3 with its P_O column read from Table 1 (the same numbers, stored once)."""
    if not row.table3:
        return {}
    counts = row.table3["P_L"]
    return {
        "P_L": dict(row.table3["P_L"]),
        "P_G": dict(row.table3["P_G"]),
        "P_O": {c: row.table1[c] for c in counts},
    }


# What the datasets beyond the paper report (the MDAN paper has no number on them): the numbers
# a reproduction must beat, with the protocol they come from.
_BASELINES: dict[str, dict[str, str]] = {
    "mdan_emoset": {
        "source": "Yang et al., EmoSet: A Large-scale Visual Emotion Dataset with Rich "
        "Attributes, ICCV 2023 (arXiv 2307.07961), Tables 3-5",
        "protocol": "EmoSet-118K split 80/5/15 (train/val/test), Adam, 224 x 224 input; "
        "MDAN's recipe is SGD at 448 px, so these are numbers to beat, not a like-for-like "
        "target",
        "EmoSet-8 accuracy (%)": "ResNet-50 74.04, WSCNet 76.32, PDANet 76.95, Stimuli-aware "
        "78.40, MDAN (re-run by EmoSet's authors) 75.75",
        "FI-8 accuracy (%)": "ResNet-50 67.53, Stimuli-aware 72.42",
        "EmoSet-2 accuracy (%)": "Stimuli-aware 94.58, MDAN (re-run by EmoSet's authors) 93.71",
    },
    "mdan_findingemo": {
        "Mertens et al., FindingEmo, NeurIPS 2024 D&B (arXiv 2402.01355), baselines section": (
            "Emo8/Emo24 classification (F1, accuracy) and valence/arousal regression of "
            "ImageNet CNNs, EmoNet, CLIP and DINOv2 features"
        ),
    },
}


def dataset_config(name: str) -> str:
    """The shipped trainer config of registry entry ``name`` (``mdan_fi`` -> ``fi``)."""
    return name.removeprefix("mdan_")


def _entries() -> dict[str, WeightsEntry]:
    out = {}
    for row in _ROWS:
        name, dataset = row.name, row.dataset
        out[name] = WeightsEntry(
            name=name,
            dataset=dataset,
            taxonomy=row.taxonomy,
            config=MDANConfig(fpn_channels=1024),  # the paper size (Table 1)
            preprocessing=Preprocessing(),
            hub_repo=f"mdan-zoo/{name.replace('_', '-')}-resnet101",
            revision=None,
            filename="model.safetensors",
            sha256=None,
            status="not published",
            paper_metrics=dict(row.table1),
            paper_branch_metrics=_branch_metrics(row),
            num_params=row.num_params,
            # the shipped config's name: `mdan-zoo train <name>` (mdan_zoo/configs/<name>.json)
            recipe={**row.recipe, "split": row.split, "trainer_config": dataset_config(name)},
            license="mit",
            license_note=_DATASET_TERMS.format(dataset=dataset),
            baselines=_BASELINES.get(name, {}),
        )
    return out


_REGISTRY: dict[str, WeightsEntry] = _entries()


def list_weights(pattern: str = "*", *, published_only: bool = False) -> list[str]:
    """Registry names matching the shell ``pattern``, sorted; ``published_only`` keeps those
    with a downloadable checkpoint."""
    return sorted(
        n
        for n, e in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (e.published or not published_only)
    )


def format_table(pattern: str = "*") -> str:
    """The registry as a text table (``mdan-zoo list``)."""
    header = f"{'name':<15} {'dataset':<11} {'classes':<10} {'status':<14} paper acc. (P_O, %)"
    lines = [header]
    for name in list_weights(pattern):
        e = _REGISTRY[name]
        counts = e.get_taxonomy().num_classes
        acc = " / ".join(
            f"{e.paper_metrics[str(c)]:.2f}" if str(c) in e.paper_metrics else "-" for c in counts
        )
        classes = "/".join(str(c) for c in counts)
        lines.append(f"{name:<15} {e.dataset:<11} {classes:<10} {e.status:<14} {acc}")
    return "\n".join(lines)


def get_weights(name: str) -> WeightsEntry:
    """The registry entry ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no weights named {name!r} in the registry; known: {sorted(_REGISTRY)}"
        ) from None
