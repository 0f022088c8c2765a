"""The built-in label trees, one row each in :data:`BUILTIN`: a new built-in tree is one row.

Each row holds the labels per level (coarse to fine), the parent of each label below the first
level, the level names and the aliases a file or a user may write instead of a label.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._tree import Taxonomy

__all__ = ["BUILTIN", "BuiltinTree", "as_taxonomy", "get_taxonomy", "list_taxonomies"]


@dataclass(frozen=True)
class BuiltinTree:
    """One built-in tree as data: ``parents[d]`` maps each label of level ``d + 1`` to its
    parent at level ``d``; the order of its keys is the order of the labels."""

    top: tuple[str, ...]
    parents: tuple[Mapping[str, str], ...]
    level_names: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def build(self, name: str) -> Taxonomy:
        levels = [list(self.top), *(list(p) for p in self.parents)]
        return Taxonomy.from_levels(
            levels,
            [dict(p) for p in self.parents],
            name=name,
            level_names=list(self.level_names),
            aliases=dict(self.aliases),
        )


_WEBEMO_FINE = [  # index order of the released category.txt (typos kept: they are the ids)
    ("affection", "love"), ("cheerfullness", "joy"), ("confusion", "sadness"),
    ("contentment", "joy"), ("disappointment", "sadness"), ("disgust", "anger"),
    ("enthrallment", "joy"), ("envy", "anger"), ("exasperation", "anger"),
    ("gratitude", "love"), ("horror", "fear"), ("irritabilty", "anger"), ("lust", "love"),
    ("neglect", "sadness"), ("nervousness", "fear"), ("optimism", "joy"), ("pride", "joy"),
    ("rage", "anger"), ("relief", "joy"), ("sadness", "sadness"), ("shame", "sadness"),
    ("suffering", "sadness"), ("surprise", "surprise"), ("sympathy", "sadness"),
    ("zest", "joy"),
]  # fmt: skip
_WEBEMO_MID = [
    ("love", "positive"), ("joy", "positive"), ("surprise", "positive"),
    ("anger", "negative"), ("sadness", "negative"), ("fear", "negative"),
]  # fmt: skip
_MIKELS = [
    ("amusement", "positive"), ("anger", "negative"), ("awe", "positive"),
    ("contentment", "positive"), ("disgust", "negative"), ("excitement", "positive"),
    ("fear", "negative"), ("sadness", "negative"),
]  # fmt: skip
_EMOTION6 = [
    ("anger", "negative"), ("disgust", "negative"), ("fear", "negative"),
    ("joy", "positive"), ("sadness", "negative"), ("surprise", "positive"),
]  # fmt: skip
_PLUTCHIK = [  # Plutchik's wheel: primary -> (basic, mild, intense), in the wheel's order
    ("joy", ("joy", "serenity", "ecstasy")),
    ("trust", ("trust", "acceptance", "admiration")),
    ("fear", ("fear", "apprehension", "terror")),
    ("surprise", ("surprise", "distraction", "amazement")),
    ("sadness", ("sadness", "pensiveness", "grief")),
    ("disgust", ("disgust", "boredom", "loathing")),
    ("anger", ("anger", "annoyance", "rage")),
    ("anticipation", ("anticipation", "interest", "vigilance")),
]
# Surprise and anticipation are positive by the data: the mean valence (-3..3) of FindingEmo
# images labelled with them is +0.48 and +0.56 (docs/taxonomy.md; the table comes from
# mdan_zoo.data.findingemo.valence_table()).
_PLUTCHIK_POLARITY = {
    "joy": "positive", "trust": "positive", "fear": "negative", "surprise": "positive",
    "sadness": "negative", "disgust": "negative", "anger": "negative", "anticipation": "positive",
}  # fmt: skip
_FASHION = [  # index order of the Fashion-MNIST idx files
    ("T-shirt/top", "tops"), ("Trouser", "bottoms_and_dresses"), ("Pullover", "tops"),
    ("Dress", "bottoms_and_dresses"), ("Coat", "tops"), ("Sandal", "shoes"), ("Shirt", "tops"),
    ("Sneaker", "shoes"), ("Bag", "bags"), ("Ankle boot", "shoes"),
]  # fmt: skip
_FASHION_MID = [
    ("tops", "clothing"), ("bottoms_and_dresses", "clothing"), ("shoes", "footwear_and_bags"),
    ("bags", "footwear_and_bags"),
]  # fmt: skip

_POLARITY = ("positive", "negative")
_MIKELS_TREE = BuiltinTree(
    _POLARITY,
    (dict(_MIKELS),),
    ("polarity", "emotion"),
    {"sad": "sadness", "content": "contentment", "amused": "amusement",
     "excited": "excitement", "angry": "anger", "fearful": "fear", "scary": "fear"},
)  # fmt: skip
_PLUTCHIK_FINE = {e: p for p, emotions in _PLUTCHIK for e in emotions}

# name -> tree; the Mikels datasets share one tree (each keeps its own name)
BUILTIN: dict[str, BuiltinTree] = {
    "webemo": BuiltinTree(
        _POLARITY,
        (dict(_WEBEMO_MID), dict(_WEBEMO_FINE)),
        ("polarity", "secondary", "tertiary"),
        {"cheerfulness": "cheerfullness", "irritability": "irritabilty"},
    ),
    "mikels": _MIKELS_TREE,
    "fi": _MIKELS_TREE,
    "artphoto": _MIKELS_TREE,
    "iaps": _MIKELS_TREE,
    "abstract": _MIKELS_TREE,
    "emotion6": BuiltinTree(
        _POLARITY,
        (dict(_EMOTION6),),
        ("polarity", "emotion"),
        {"happiness": "joy", "happy": "joy", "sad": "sadness", "angry": "anger"},
    ),
    "fashion_mnist": BuiltinTree(
        ("clothing", "footwear_and_bags"),
        (dict(_FASHION_MID), dict(_FASHION)),
        ("family", "group", "item"),
        {"t-shirt": "T-shirt/top", "tshirt": "T-shirt/top", "ankle_boot": "Ankle boot"},
    ),
    "emoset": _MIKELS_TREE,
    "plutchik": BuiltinTree(
        tuple(p for p, _ in _PLUTCHIK), (_PLUTCHIK_FINE,), ("primary", "emotion")
    ),
    "plutchik3": BuiltinTree(
        _POLARITY,
        (_PLUTCHIK_POLARITY, _PLUTCHIK_FINE),
        ("polarity", "primary", "emotion"),
    ),
}


def list_taxonomies() -> list[str]:
    """Names accepted by :func:`get_taxonomy`."""
    return list(BUILTIN)


def get_taxonomy(name: str) -> Taxonomy:
    """A built-in taxonomy: ``webemo`` (2/6/25), ``mikels`` and its datasets ``fi``,
    ``artphoto``, ``iaps``, ``abstract``, ``emoset`` (2/8), ``emotion6`` (2/6), ``fashion_mnist``
    (2/4/10, the real three-level hierarchy used by the demo and the tests), ``plutchik`` (8/24:
    Plutchik's primaries and their three intensities, FindingEmo's labels) and ``plutchik3``
    (2/8/24: the same with polarity on top)."""
    tree = BUILTIN.get(name.lower())
    if tree is None:
        raise KeyError(f"no built-in taxonomy {name!r}; choose one of {list_taxonomies()}")
    return tree.build(name.lower())


def as_taxonomy(taxonomy: Taxonomy | str | os.PathLike[str]) -> Taxonomy:
    """A :class:`Taxonomy` from itself, a built-in name (``"fi"``) or a taxonomy JSON path."""
    if isinstance(taxonomy, Taxonomy):
        return taxonomy
    if isinstance(taxonomy, os.PathLike) or (
        isinstance(taxonomy, str) and taxonomy.lower().endswith(".json")
    ):
        return Taxonomy.from_json(taxonomy)
    if isinstance(taxonomy, str):
        return get_taxonomy(taxonomy)
    raise TypeError(
        f"taxonomy must be a Taxonomy, a built-in name or a .json path, got {type(taxonomy).__name__}"
    )
