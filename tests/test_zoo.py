"""The zoo without a Hub: factories, registry, local checkpoints, refusals, transfer, CLI, torch.hub."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from zoo_helpers import TINY_PRE, batch, photos, same_state, tiny_mdan

import mdan_zoo
from mdan_zoo import (
    MDAN,
    ChecksumError,
    MDANConfig,
    Taxonomy,
    UnpublishedWeightsError,
    WeightsError,
    create_model,
    get_taxonomy,
    get_weights,
    list_models,
    list_pretrained,
    load_pretrained,
    mdan,
    mdan_fi,
)
from mdan_zoo.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
FACTORIES = [
    "mdan_abstract",
    "mdan_artphoto",
    "mdan_emoset",
    "mdan_emotion6",
    "mdan_fi",
    "mdan_findingemo",
    "mdan_iaps",
    "mdan_webemo",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[MDAN, Path]:
    model = tiny_mdan(seed=1)
    folder = tmp_path_factory.mktemp("ckpt") / "fashion"
    model.save_pretrained(folder, metrics={"accuracy_O": {"2": 91.5}}, training={"epochs": 1})
    return model, folder


# ------------------------------------------------------------------ registry and factories
def test_list_models_and_pretrained() -> None:
    assert list_models() == FACTORIES
    assert list_models("mdan_i*") == ["mdan_iaps"]
    assert list_pretrained() == []  # nothing published: never pretend otherwise
    assert list_pretrained(include_unpublished=True) == FACTORIES


@pytest.mark.parametrize("name", FACTORIES)
def test_registry_entry_matches_the_built_model(name: str) -> None:
    """num_params and class counts of every entry, recomputed from the model (on meta: fast)."""
    entry = get_weights(name)
    with torch.device("meta"):
        model = create_model(name)
    assert model.num_classes == entry.get_taxonomy().num_classes
    assert sum(p.numel() for p in model.parameters()) == entry.num_params
    assert model.config == entry.config and model.preprocessing == entry.preprocessing
    counts = [str(c) for c in model.num_classes]
    if entry.paper_metrics:  # a paper dataset: Table 1 gives every level
        assert sorted(entry.paper_metrics) == sorted(counts), "Table 1 gives every level"
        assert entry.paper_branch_metrics["P_O"]["2"] == entry.paper_metrics["2"], "Table 3 = 1"
    else:  # beyond the paper: no MDAN number, but a named source for the dataset's baselines
        assert entry.baselines and not entry.paper_branch_metrics
    assert not entry.published and entry.revision is None and entry.sha256 is None
    assert entry.reproduced_metrics == {}


def test_paper_numbers_are_table_1() -> None:
    assert dict(get_weights("mdan_webemo").paper_metrics) == {"2": 82.72, "6": 55.65, "25": 34.28}
    assert dict(get_weights("mdan_fi").paper_metrics) == {"2": 91.08, "8": 76.41}
    assert get_weights("mdan_iaps").paper_metrics["8"] == 85.96


def test_pretrained_unpublished_raises_with_the_way_to_reproduce() -> None:
    with pytest.raises(UnpublishedWeightsError, match=r"mdan-zoo train fi --set data_root="):
        mdan_fi(pretrained=True)
    with pytest.raises(ValueError, match="no registry weights"):
        mdan(taxonomy="fi", pretrained=True)


def test_unknown_or_bad_arguments_are_errors() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_classes'"):
        mdan_fi(num_classes=8)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        mdan_fi(True)  # type: ignore[misc]  # keyword-only
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        mdan_fi(pretrained="yes")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no model named 'mdan_foo'"):
        create_model("mdan_foo")
    with pytest.raises(ValueError, match="contradicts"):
        mdan_fi(config=MDANConfig(backbone="resnet50"), backbone="resnet18")
    with pytest.raises(TypeError, match="needs taxonomy="):
        mdan()
    with pytest.raises(ValueError, match="only apply when loading weights"):
        mdan_fi(revision="main")


def test_factory_builds_paper_config_and_own_taxonomy() -> None:
    with torch.device("meta"):
        model = create_model("mdan", taxonomy="emotion6", backbone="resnet18")
    assert model.taxonomy.same_tree(get_taxonomy("emotion6"))
    assert model.config == MDANConfig(backbone="resnet18")


# ------------------------------------------------------------------ save / load
def test_save_writes_hub_layout_and_config_alone_rebuilds(saved: tuple[MDAN, Path]) -> None:
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_config"] == model.config.to_dict()
    assert cfg["architecture"] == "mdan"  # timm's entrypoint
    assert Taxonomy.from_dict(cfg["taxonomy"]).same_tree(model.taxonomy)
    assert cfg["preprocessing"] == TINY_PRE.to_dict()
    assert cfg["metrics"] == {"accuracy_O": {"2": 91.5}} and cfg["training"] == {"epochs": 1}
    assert cfg["mdan_zoo_version"] == mdan_zoo.__version__
    assert cfg["num_params"] == sum(p.numel() for p in model.parameters())
    card = (folder / "README.md").read_text()
    for needle in (
        "library_name: mdan_zoo",
        "Ankle boot",
        "| accuracy_O.2 | 91.5 |",
        "@inproceedings",
        "Intended use",
    ):
        assert needle in card
    assert not list(folder.glob(".*.tmp")), "no temporary files left behind"


def test_reloaded_model_is_exact_and_carries_its_transform(saved: tuple[MDAN, Path]) -> None:
    model, folder = saved
    loaded = MDAN.from_pretrained(folder)
    assert not loaded.training and loaded.transfer_report is None
    assert same_state(model, loaded)
    assert loaded.preprocessing == TINY_PRE
    x = batch(loaded)
    assert x.shape == (3, 3, 64, 64)  # the saved 64 x 64 transform, not the 448 default
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for la, lb in zip(a, b, strict=True):
        assert torch.equal(la.probs, lb.probs) and la.labels == lb.labels


def test_lone_safetensors_file_loads_from_its_header(
    saved: tuple[MDAN, Path], tmp_path: Path
) -> None:
    model, folder = saved
    lone = tmp_path / "fashion-tiny.safetensors"
    lone.write_bytes((folder / "model.safetensors").read_bytes())
    loaded = mdan(weights=lone)
    assert same_state(model, loaded) and loaded.preprocessing == TINY_PRE


def test_pickles_are_refused(tmp_path: Path, saved: tuple[MDAN, Path]) -> None:
    model, _ = saved
    for suffix in (".bin", ".pt", ".pth"):
        path = tmp_path / f"weights{suffix}"
        torch.save(model.state_dict(), path)
        with pytest.raises(WeightsError, match=r"refusing to load .*pickle"):
            mdan(taxonomy="fashion_mnist", weights=path)
    folder = tmp_path / "transformers-style"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="refusing to load 'pytorch_model.bin'"):
        MDAN.from_pretrained(folder)


def test_truncated_safetensors_is_a_clear_error(saved: tuple[MDAN, Path], tmp_path: Path) -> None:
    _, folder = saved
    data = (folder / "model.safetensors").read_bytes()
    lone = tmp_path / "cut.safetensors"
    lone.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        WeightsError, match=r"cut\.safetensors is not a readable safetensors file.*truncated"
    ):
        mdan(weights=lone)
    cut = tmp_path / "cut-folder"
    cut.mkdir()
    (cut / "config.json").write_bytes((folder / "config.json").read_bytes())
    (cut / "model.safetensors").write_bytes(data[:-1000])
    with pytest.raises(ChecksumError, match=r"sha256 mismatch for .*cut-folder/model\.safetensors"):
        MDAN.from_pretrained(cut)


def test_missing_local_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        mdan_fi(weights=tmp_path / "nope.safetensors")
    with pytest.raises(WeightsError, match="has no model.safetensors"):
        MDAN.from_pretrained(tmp_path)


def test_bare_state_dict_file_is_strict(saved: tuple[MDAN, Path], tmp_path: Path) -> None:
    """A safetensors file without an mdan_zoo header: the factory's architecture, strict keys."""
    from safetensors.torch import save_file

    model, _ = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "bare.safetensors")
    loaded = mdan(
        taxonomy="fashion_mnist", config=model.config, weights=tmp_path / "bare.safetensors"
    )
    assert same_state(model, loaded)
    via_hub = load_pretrained(
        tmp_path / "bare.safetensors", taxonomy="fashion_mnist", config=model.config
    )
    assert same_state(model, via_hub)
    # Both ways record where the weights came from (a local file has no revision).
    for m in (loaded, via_hub):
        assert m.checkpoint_source is not None and "bare.safetensors" in m.checkpoint_source
        assert m.checkpoint_revision is None
    del state["global_head.bias"]
    save_file(state, tmp_path / "short.safetensors")
    with pytest.raises(WeightsError, match=r"missing \['global_head\.bias'\]"):
        mdan(taxonomy="fashion_mnist", config=model.config, weights=tmp_path / "short.safetensors")


# ------------------------------------------------------------------ taxonomy mismatch and transfer
def test_taxonomy_mismatch_names_both_trees(saved: tuple[MDAN, Path]) -> None:
    _, folder = saved
    with pytest.raises(
        WeightsError,
        match=r"taxonomy mismatch.*'fashion_mnist' \(2, 4, 10\).*'fi' \(2, 8\).*taxonomy='fi'",
    ):
        mdan_fi(weights=folder)


def test_transfer_keeps_shared_parts_and_copies_matching_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """FI (2 -> 8) weights fine-tuned to Emotion6 (2 -> 6): polarity head kept unchanged; the
    emotion heads re-initialised with anger/disgust/fear/sadness rows copied (same name, same
    parent 'negative'); joy and surprise are new."""
    source = tiny_mdan("fi", seed=3)
    source.save_pretrained(tmp_path / "fi")
    with caplog.at_level(logging.INFO, logger="mdan_zoo.hub._mixin"):
        model = mdan_fi(weights=tmp_path / "fi", taxonomy="emotion6")
    report = model.transfer_report
    assert report.transferred == ("backbone", "f5", "laterals.0", "laterals.1", "local_heads.0")
    assert report.reinitialised == ("local_heads.1", "global_head")
    assert report.copied_rows == {
        "local_heads.1": ("anger", "disgust", "fear", "sadness"),
        "global_head": ("anger", "disgust", "fear", "sadness"),
    }
    assert report.dropped == ()
    assert sum("transfer fi -> emotion6" in r.getMessage() for r in caplog.records) == 1
    src, dst = source.state_dict(), model.state_dict()
    for key in (
        "backbone.conv1.weight",
        "f5.weight",
        "laterals.1.q.weight",
        "local_heads.0.weight",
    ):
        assert torch.equal(src[key], dst[key]), key
    tgt = get_taxonomy("emotion6")
    fi = get_taxonomy("fi")
    for label in ("anger", "sadness"):
        assert torch.equal(
            dst["global_head.weight"][tgt.index(label)], src["global_head.weight"][fi.index(label)]
        )
    joy = tgt.index("joy")
    assert not any(
        torch.equal(dst["local_heads.1.weight"][joy], row) for row in src["local_heads.1.weight"]
    )
    assert model.num_classes == (2, 6) and model(batch(model))[1].probs.shape == (3, 6)


def test_transfer_to_a_deeper_taxonomy_adds_a_level(tmp_path: Path) -> None:
    source = tiny_mdan("fi", seed=4)
    source.save_pretrained(tmp_path / "fi")
    deeper = Taxonomy.from_nested(
        {"positive": {"awe": ["vast", "sublime"], "amusement": ["funny"]},
         "negative": {"fear": ["dread"], "sadness": ["grief", "loss"]}},
        name="deeper",
    )  # fmt: skip
    model = MDAN.from_pretrained(tmp_path / "fi", taxonomy=deeper)
    rep = model.transfer_report
    assert rep.reinitialised == ("laterals.2", "local_heads.1", "local_heads.2", "global_head")
    assert rep.copied_rows == {"local_heads.1": ("awe", "amusement", "fear", "sadness")}
    assert "local_heads.0" in rep.transferred


# ------------------------------------------------------------------ half precision (issue 9, case 9)
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_load_as_float32_and_predict(
    half: torch.dtype, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tiny_mdan(seed=4).to(half)
    folder = source.save_pretrained(tmp_path / "half")
    assert {t.dtype for t in load_file(folder / "model.safetensors").values()} >= {half}
    model = MDAN.from_pretrained(folder)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(
        torch.equal(a.float(), b)
        for a, b in zip(source.parameters(), model.parameters(), strict=True)
    )
    with torch.no_grad():
        probs = model(batch(model))[-1].probs  # forward
    assert probs.dtype == torch.float32 and torch.allclose(probs.sum(1), torch.ones(3))
    assert mdan(weights=folder).state_dict().keys() == model.state_dict().keys()
    preds = model.predict(photos())  # model.predict
    assert len(preds) == 3 and all(p.ok for p in preds)
    image = tmp_path / "coffee.png"
    photos()[1].save(image)
    argv = ["predict", str(image), "--weights", str(folder), "--json", "--no-progress"]
    assert cli_main(argv) == 0  # mdan-zoo predict
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["ok"] and record["consistent"][-1]["label"] == preds[1].consistent[-1].label


def test_dtype_keeps_or_casts(tmp_path: Path) -> None:
    folder = tiny_mdan(seed=4).half().save_pretrained(tmp_path / "half")
    kept = MDAN.from_pretrained(folder, dtype="auto")
    assert {p.dtype for p in kept.parameters()} == {torch.float16}
    assert {b.dtype for b in kept.buffers() if b.is_floating_point()} == {torch.float16}
    x = batch(kept)
    with torch.no_grad():
        assert kept(x.half())[-1].probs.dtype == torch.float32  # Eq. 2 and P_O run in float32
    as_bf16 = load_pretrained(folder, dtype="bfloat16")
    assert {p.dtype for p in as_bf16.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert as_bf16(x.bfloat16())[-1].probs.dtype == torch.float32  # probabilities in float32
    assert {p.dtype for p in MDAN.from_pretrained(folder, dtype=torch.float16).parameters()} == {
        torch.float16
    }
    for bad in ("int8", torch.int32, "fp17"):
        with pytest.raises(ValueError, match="give None .float32., 'auto'"):
            MDAN.from_pretrained(folder, dtype=bad)


# ------------------------------------------------------------------ nothing written for local loads
def test_local_loads_write_nothing_under_hf_home(saved: tuple[MDAN, Path]) -> None:
    """Issue 12, item 2: conftest points HF_HOME at an empty folder; loading local checkpoints
    in every way leaves it empty (no cache folder, no verification record)."""
    model, folder = saved
    home = Path(os.environ["HF_HOME"])
    assert list(home.iterdir()) == []
    for loaded in (
        MDAN.from_pretrained(folder),
        MDAN.from_pretrained(folder / "model.safetensors"),
        load_pretrained(str(folder)),
        mdan(weights=folder),
        create_model("mdan", weights=folder),
    ):
        assert same_state(model, loaded)
    assert list(home.iterdir()) == []


# ------------------------------------------------------------------ the model card (issue 12, item 4)
def test_model_card_is_read_by_huggingface_hub(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    model = tiny_mdan(seed=6)
    metrics = {
        "accuracy_O": {"2": 91.5, "4": 80.25, "10": 70.0},
        "accuracy_L": {"2": 90.0},
        "accuracy_G": {"item": 69.5},  # by level name works too
        "test_images": 1000,
    }
    training = {"dataset": "fashion_mnist", "init_from": "hf-hub:org/base-mdan@main"}
    folder = model.save_pretrained(tmp_path / "m", metrics=metrics, training=training)
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "mdan_zoo" and data.license == "mit"
    assert "visual-emotion-analysis" in data.tags and data.datasets == ["fashion_mnist"]
    assert data.base_model == "org/base-mdan"
    results = {(r.metric_name, r.metric_value, r.dataset_split) for r in data.eval_results}
    assert results == {
        ("P_O (overall) accuracy, family (2 classes)", 91.5, "test"),
        ("P_O (overall) accuracy, group (4 classes)", 80.25, "test"),
        ("P_O (overall) accuracy, item (10 classes)", 70.0, "test"),
        ("P_L (local branch) accuracy, family (2 classes)", 90.0, "test"),
        ("P_G (global branch) accuracy, item (10 classes)", 69.5, "test"),
    }
    assert data.to_dict()["model-index"][0]["name"] == "mdan-fashion_mnist"
    assert "Fine-tuned from [org/base-mdan]" in card.text and "Ankle boot" in card.text
    bare = ModelCard.load(model.save_pretrained(tmp_path / "bare") / "README.md").data
    assert bare.eval_results is None and bare.base_model is None and bare.datasets is None


def test_every_factory_takes_token() -> None:
    import inspect

    expected = list(inspect.signature(mdan).parameters)
    assert "token" in expected
    for name in [*FACTORIES, "create_model"]:
        factory = getattr(mdan_zoo, name)
        params = [p for p in inspect.signature(factory).parameters if p != "name"]
        assert params == expected, name


# ------------------------------------------------------------------ CLI and torch.hub
def test_cli_list_info_download(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mdan_webemo" in out and "82.72 / 55.65 / 34.28" in out and "not published" in out
    assert cli_main(["info", "mdan_emotion6"]) == 0
    out = capsys.readouterr().out
    assert (
        "84.62 / 61.66" in out
        and "- surprise" in out
        and "mdan-zoo train emotion6 --set data_root=" in out
    )
    assert cli_main(["info", "mdan_emotion6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_classes"] == [2, 6]
    assert cli_main(["download", "mdan_fi"]) == 1
    assert "not published" in capsys.readouterr().err
    assert cli_main(["info", "nope"]) == 1


def test_torch_hub_load_local() -> None:
    model = torch.hub.load(str(ROOT), "mdan_webemo", source="local", backbone="resnet18")
    assert isinstance(model, MDAN) and model.num_classes == (2, 6, 25)
    # torch.hub.list/help only take GitHub repos: read hubconf as they do.
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")}
    assert entries == set(FACTORIES) | {"mdan"}
    assert all("MDAN" in getattr(hubconf, n).__doc__ for n in entries)
    assert {"torch", "torchvision", "huggingface_hub", "safetensors"} <= set(hubconf.dependencies)


def test_the_network_module_never_imports_the_hub_at_module_level() -> None:
    import ast

    tree = ast.parse((ROOT / "mdan_zoo" / "model.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top for a in n.names} | {
        n.module or "" for n in top if isinstance(n, ast.ImportFrom)
    }
    assert not names & {"huggingface_hub", "safetensors", "zoo", "registry"}, names
    from_hub = {a.name for n in top if isinstance(n, ast.ImportFrom) and n.module == "hub"
                for a in n.names}  # fmt: skip
    assert from_hub == {"PretrainedMixin"}, from_hub  # the mixin, which receives the class
    from mdan_zoo import MDAN  # the methods come from mixins the network imports

    for method in ("save_pretrained", "from_pretrained", "push_to_hub", "predict"):
        assert callable(getattr(MDAN, method))


@pytest.mark.parametrize("name", mdan_zoo.list_weights())
def test_the_paper_numbers_are_stored_once(name: str) -> None:
    """The shipped training config quotes the paper's accuracies for its dataset; those quotes
    must be the registry's (Table 1 for P_O, Table 3 for P_L and P_G), the one place they are
    stored, so an edit of either cannot drift from the other."""
    from mdan_zoo.registry import dataset_config

    entry = mdan_zoo.get_weights(name)
    path = Path(mdan_zoo.__file__).parent / "configs" / f"{dataset_config(name)}.json"
    paper = json.loads(path.read_text())["paper"]
    quoted = {k: paper[k] for k in ("accuracy_O", "accuracy_L", "accuracy_G") if k in paper}
    if not entry.paper_metrics:
        assert quoted == {}, f"{path.name} quotes paper numbers the registry does not hold"
        return
    assert quoted["accuracy_O"] == dict(entry.paper_metrics)
    assert quoted["accuracy_L"] == dict(entry.paper_branch_metrics["P_L"])
    assert quoted["accuracy_G"] == dict(entry.paper_branch_metrics["P_G"])


def test_the_factory_keywords_are_described_once() -> None:
    """Issue 17: one typed description (FactoryArgs) serves every factory, mdan and
    create_model; help() still lists the keywords, and a mistyped one is a TypeError that
    names the factory and the keyword."""
    import inspect
    import pydoc

    from mdan_zoo._builder import FactoryArgs

    keywords = list(FactoryArgs.__annotations__)
    for name in [*FACTORIES, "mdan"]:
        factory = getattr(mdan_zoo, name)
        assert list(inspect.signature(factory).parameters) == keywords, name
        assert "backbone_weights" in pydoc.render_doc(factory), name
    assert list(inspect.signature(mdan_zoo.create_model).parameters) == ["name", *keywords]
    with pytest.raises(
        TypeError,
        match=r"^mdan_fi\(\) got an unexpected keyword argument "
        r"'backbon' \(did you mean 'backbone'\?\)$",
    ):
        mdan_zoo.mdan_fi(backbon="resnet18")
    with pytest.raises(TypeError, match=r"^mdan_webemo\(\) got an unexpected keyword argument 'x'"):
        mdan_zoo.create_model("mdan_webemo", x=1)
