"""Taxonomy: built-ins match ../shared/design/taxonomies.md, Eq. 2, violations, bad trees, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mdan_zoo import Taxonomy, TaxonomyError, get_taxonomy, list_taxonomies

# The WEBEmo table of taxonomies.md: index, fine label (released spelling), parent, polarity.
WEBEMO_TABLE = """
0 affection love positive
1 cheerfullness joy positive
2 confusion sadness negative
3 contentment joy positive
4 disappointment sadness negative
5 disgust anger negative
6 enthrallment joy positive
7 envy anger negative
8 exasperation anger negative
9 gratitude love positive
10 horror fear negative
11 irritabilty anger negative
12 lust love positive
13 neglect sadness negative
14 nervousness fear negative
15 optimism joy positive
16 pride joy positive
17 rage anger negative
18 relief joy positive
19 sadness sadness negative
20 shame sadness negative
21 suffering sadness negative
22 surprise surprise positive
23 sympathy sadness negative
24 zest joy positive
"""
MIKELS_POS = {"amusement", "awe", "contentment", "excitement"}
MIKELS_NEG = {"anger", "disgust", "fear", "sadness"}
FASHION = [
    ("T-shirt/top", "tops", "clothing"),
    ("Trouser", "bottoms_and_dresses", "clothing"),
    ("Pullover", "tops", "clothing"),
    ("Dress", "bottoms_and_dresses", "clothing"),
    ("Coat", "tops", "clothing"),
    ("Sandal", "shoes", "footwear_and_bags"),
    ("Shirt", "tops", "clothing"),
    ("Sneaker", "shoes", "footwear_and_bags"),
    ("Bag", "bags", "footwear_and_bags"),
    ("Ankle boot", "shoes", "footwear_and_bags"),
]


def _path_names(tax: Taxonomy, fine: int) -> tuple[str, ...]:
    return tuple(tax.labels[d][i] for d, i in enumerate(tax.ancestor_indices(fine)))


# ---------------------------------------------------------------------- built-ins
def test_webemo_matches_the_released_index_order_and_parrott_tree() -> None:
    tax = get_taxonomy("webemo")
    rows = [line.split() for line in WEBEMO_TABLE.strip().splitlines()]
    assert tax.num_classes == (2, 6, 25)
    assert tax.labels[0] == ("positive", "negative")
    assert tax.labels[2] == tuple(r[1] for r in rows)
    for idx, fine, parent, polarity in rows:
        assert tax.index(fine, level=2) == int(idx)
        assert _path_names(tax, int(idx)) == (polarity, parent, fine)
    assert set(tax.labels[1]) == {"love", "joy", "surprise", "anger", "sadness", "fear"}
    positives = [f for _, f, _, pol in rows if pol == "positive"]
    assert len(positives) == 11 and len(rows) - len(positives) == 14
    # Spelling aliases of taxonomies.md resolve to the released (typo) ids.
    assert tax.canonical("cheerfulness") == "cheerfullness"
    assert tax.canonical("Irritability") == "irritabilty"
    assert tax.index("cheerfulness") == 1 and tax.index("irritability") == 11


@pytest.mark.parametrize("name", ["mikels", "fi", "artphoto", "iaps", "abstract"])
def test_mikels_datasets(name: str) -> None:
    tax = get_taxonomy(name)
    assert tax.name == name and tax.num_classes == (2, 8)
    assert tax.labels[0] == ("positive", "negative")
    assert tax.labels[1] == tuple(sorted(MIKELS_POS | MIKELS_NEG))  # alphabetical, as FI folders
    for label in MIKELS_POS:
        assert tax.ancestors(label) == ("positive", label)
    for label in MIKELS_NEG:
        assert tax.ancestors(label) == ("negative", label)
    # ArtPhoto prefixes and the Abstract CSV use `sad` and `Content`; FI copies capitalise.
    assert tax.canonical("sad") == "sadness" and tax.canonical("Sad") == "sadness"
    assert tax.canonical("Content") == "contentment"
    assert tax.index("Amusement") == tax.labels[1].index("amusement")


def test_emotion6() -> None:
    tax = get_taxonomy("emotion6")
    assert tax.labels == (
        ("positive", "negative"),
        ("anger", "disgust", "fear", "joy", "sadness", "surprise"),
    )
    pos = {tax.labels[1][i] for i in tax.children(0, 0)}
    assert pos == {"joy", "surprise"}
    assert {tax.labels[1][i] for i in tax.children(0, 1)} == {"anger", "disgust", "fear", "sadness"}


def test_fashion_mnist_tree_follows_the_data_files() -> None:
    tax = get_taxonomy("fashion_mnist")
    assert tax.num_classes == (2, 4, 10)
    assert tax.labels[2] == tuple(f for f, _, _ in FASHION)
    for i, (fine, mid, top) in enumerate(FASHION):
        assert _path_names(tax, i) == (top, mid, fine)
    assert tax.ancestors("Sneaker") == ("footwear_and_bags", "shoes", "Sneaker")


def test_list_and_unknown_builtin() -> None:
    assert set(list_taxonomies()) >= {"webemo", "mikels", "fi", "emotion6", "fashion_mnist"}
    with pytest.raises(KeyError, match="choose one of"):
        get_taxonomy("no_such_tree")


def test_unknown_label_lists_known_ones() -> None:
    tax = get_taxonomy("emotion6")
    with pytest.raises(KeyError, match="unknown label 'bliss'.*known labels"):
        tax.index("bliss")


# ---------------------------------------------------------------------- Eq. 2 and violations
def test_aggregate_is_the_sum_over_children() -> None:
    tax = get_taxonomy("webemo")
    p = torch.softmax(torch.randn(5, 25), dim=1)
    for level in (0, 1):
        got = tax.aggregate(p, level)
        want = torch.zeros(5, tax.num_classes[level])
        for k in range(25):
            want[:, tax.ancestor_indices(k)[level]] += p[:, k]
        torch.testing.assert_close(got, want)
        np.testing.assert_allclose(tax.aggregate(p.numpy(), level), want.numpy(), rtol=1e-5)
    torch.testing.assert_close(tax.aggregate(p, 2), p)


def test_children_and_parents_agree() -> None:
    tax = get_taxonomy("webemo")
    for level in (0, 1):
        for j in range(tax.num_classes[level]):
            for k in tax.children(level, j):
                assert tax.parents[level + 1][k] == j
    assert sorted(sum((tax.children(1, j) for j in range(6)), [])) == list(range(25))


def test_violations() -> None:
    tax = get_taxonomy("fashion_mnist")
    # Sneaker path (1, 2, 7) is consistent; Sneaker under clothing or under tops is not.
    preds = [[1, 0, 1, 0], [2, 2, 0, 1], [7, 7, 7, 3]]
    assert tax.violations(preds) == [False, True, True, False]
    assert tax.violation_rate(torch.tensor(preds)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="3 levels"):
        tax.violations(preds[:2])


# ---------------------------------------------------------------------- building and JSON
def test_nested_levels_and_dict_builders_agree() -> None:
    nested = {"pos": {"joy": ["zest", "relief"], "love": ["lust"]}, "neg": {"fear": ["horror"]}}
    a = Taxonomy.from_nested(nested, name="t", level_names=["p", "s", "t"])
    b = Taxonomy.from_levels(
        [["pos", "neg"], ["joy", "love", "fear"], ["zest", "relief", "lust", "horror"]],
        [
            {"joy": "pos", "love": "pos", "fear": "neg"},
            {"zest": "joy", "relief": "joy", "lust": "love", "horror": "fear"},
        ],
        name="t",
        level_names=["p", "s", "t"],
    )
    assert a == b
    assert a.parents == ((), (0, 0, 1), (0, 0, 1, 2))
    assert Taxonomy.from_dict(a.to_dict()) == a
    assert Taxonomy.from_nested(a.to_nested(), name="t", level_names=["p", "s", "t"]) == a


@pytest.mark.parametrize("tree", [["a", "b", "c"], {"x": ["a"], "y": ["b", "c"]}])
def test_one_and_two_level_trees(tree: object) -> None:
    tax = Taxonomy.from_nested(tree)  # type: ignore[arg-type]
    assert tax.num_levels == (1 if isinstance(tree, list) else 2)
    assert tax.fine_labels == ("a", "b", "c")


@pytest.mark.parametrize("name", list_taxonomies())
def test_json_round_trip_is_exact(name: str, tmp_path) -> None:
    tax = get_taxonomy(name)
    path = tmp_path / "tax.json"
    tax.to_json(path)
    back = Taxonomy.from_json(path)
    assert back == tax and back.aliases == tax.aliases and back.level_names == tax.level_names
    text = path.read_text()
    back.to_json(path)
    assert path.read_text() == text  # byte-exact on the second trip
    assert json.loads(text)["levels"][0]["labels"] == list(tax.labels[0])
    assert back.fingerprint() == tax.fingerprint()


def test_from_json_errors(tmp_path) -> None:
    with pytest.raises(TaxonomyError, match="not found"):
        Taxonomy.from_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TaxonomyError, match="not valid JSON"):
        Taxonomy.from_json(bad)


# ---------------------------------------------------------------------- bad trees
LEVELS2 = [["a", "b"], ["x", "y", "z"]]


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        # duplicate names within a level (nested, flat and JSON layouts; case ignored)
        (
            lambda: Taxonomy.from_nested({"a": ["joy", "awe"], "b": ["joy", "fear"]}),
            r"duplicate label 'joy' at level 1.*unique within a level",
        ),
        (
            lambda: Taxonomy.from_levels([["a", "A"]], []),
            r"duplicate label 'A' at level 0.*unique within a level",
        ),
        (
            lambda: Taxonomy.from_dict(
                {
                    "levels": [
                        {"labels": ["a", "b"]},
                        {"labels": ["x", "x", "y"], "parents": ["a", "b", "b"]},
                    ]
                }
            ),
            r"duplicate label 'x' at level 1.*unique within a level",
        ),
        # a label with no parent
        (
            lambda: Taxonomy.from_levels(LEVELS2, [{"x": "a", "y": "b"}]),
            r"label 'z' at level 1.*has no parent.*exactly one parent",
        ),
        (
            lambda: Taxonomy.from_dict(
                {
                    "levels": [
                        {"labels": ["a", "b"]},
                        {"labels": ["x", "y"], "parents": ["a", None]},
                    ]
                }
            ),
            r"label 'y' at level 1 has no parent",
        ),
        # an unknown parent
        (
            lambda: Taxonomy.from_levels(LEVELS2, [{"x": "a", "y": "b", "z": "q"}]),
            r"label 'z' at level 1 names an unknown parent 'q'",
        ),
        # an empty level
        (
            lambda: Taxonomy.from_levels([["a", "b"], []], [{}]),
            r"level 1 .*is empty",
        ),
        (lambda: Taxonomy.from_levels([], []), r"at least one level"),
        # a childless parent
        (
            lambda: Taxonomy.from_levels(LEVELS2, [{"x": "a", "y": "a", "z": "a"}]),
            r"label 'b' at level 0 has no children",
        ),
        (
            lambda: Taxonomy.from_nested({"a": ["x", "y"], "b": []}),
            r"parent 'b' has no children",
        ),
        (
            lambda: Taxonomy.from_nested({"a": {"x": ["p", "q"]}, "b": ["y", "z"]}),
            r"label 'y' at level 1 has no children.*3 levels deep",
        ),
        # more than three levels
        (
            lambda: Taxonomy.from_nested(
                {"a": {"b": {"c": ["d", "e"]}, "f": {"g": ["h"]}}, "i": {"j": {"k": ["l"]}}}
            ),
            r"4 levels: MDAN supports at most 3",
        ),
        (
            lambda: Taxonomy.from_levels([["a", "b"]] * 4, [{}] * 3),
            r"4 levels: MDAN supports at most 3",
        ),
        # fewer than two classes at a level
        (
            lambda: Taxonomy.from_nested({"only": ["x", "y"]}),
            r"level 0 .*has 1 class \('only'\).*at least 2 classes",
        ),
        (
            lambda: Taxonomy.from_levels([["a", "b"], ["x"]], [{"x": "a"}]),
            r"level 1 .*has 1 class \('x'\).*at least 2 classes",
        ),
        (lambda: Taxonomy.from_nested(["solo"]), r"has 1 class \('solo'\)"),
    ],
)
def test_bad_trees_name_the_label_and_the_rule(build, pattern: str) -> None:
    with pytest.raises(TaxonomyError, match=pattern):
        build()


def test_taxonomy_error_is_a_value_error() -> None:
    assert issubclass(TaxonomyError, ValueError)


def test_alias_must_point_to_a_label() -> None:
    with pytest.raises(TaxonomyError, match="alias 'glad' points to unknown label 'happy'"):
        Taxonomy.from_nested(["joy", "fear"], aliases={"glad": "happy"})
