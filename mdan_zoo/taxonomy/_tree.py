"""Emotion hierarchies: label trees of 1 to 3 levels, coarse to fine.

MDAN predicts one label per affective level (paper Sec. 3). A :class:`Taxonomy` holds the
labels of each level and the parent of every label, and gives what the network and the
evaluation need from the tree: the child-to-parent aggregation of Eq. 2, the ancestors of a
fine label, and a hierarchy-violation check.

Labels are matched by *name* (never by index): public copies of one dataset disagree on index
order. Matching ignores case and accepts the aliases a taxonomy declares (``sad`` ->
``sadness``).

Trees come from files and checkpoints made by others, so every builder checks each field's
type and the size limits below *before* it copies anything, in time linear in the input
(``docs/taxonomy.md``, "Limits").
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from numbers import Integral
from pathlib import Path
from typing import Any

from .._checks import kind, preview, read_json_file, short
from .._hints import docs_url
from .._io import atomic_write_text
from ._rules import (
    MAX_ALIASES,
    MAX_CLASSES_PER_LEVEL,
    MAX_JSON_STRINGS,
    MAX_LABELS,
    MAX_LEVELS,
    MAX_NAME_LENGTH,
    MAX_TAXONOMY_FILE_BYTES,
    TaxonomyError,
    check_counts,
    check_depth,
    check_labels,
    check_list,
    check_name,
    check_parent,
    check_sizes,
    checked_aliases,
    default_level_names,
    tolist,
)

__all__ = [
    "MAX_ALIASES",
    "MAX_CLASSES_PER_LEVEL",
    "MAX_LABELS",
    "MAX_LEVELS",
    "MAX_NAME_LENGTH",
    "MAX_TAXONOMY_FILE_BYTES",
    "Taxonomy",
    "TaxonomyError",
]


_DICT_KEYS = ("name", "levels", "aliases")
_LEVEL_KEYS = ("name", "labels", "parents")


@dataclass(frozen=True)
class Taxonomy:
    """A label tree of 1-3 levels, coarse to fine, each label with one parent at the level above.

    Build one with :meth:`from_nested` (a nested dict), :meth:`from_dict` / :meth:`from_json`
    (the JSON layout written by :meth:`to_dict`), or take a built-in with :func:`get_taxonomy`.

    Attributes:
        name: a short id (``"webemo"``), recorded in checkpoints.
        level_names: one name per level, coarse to fine (``("polarity", "emotion")``).
        labels: the label names of each level, coarse to fine, in class-index order.
        parents: for each level, the parent's class index at the level above for every label;
            empty for level 0.
        aliases: extra spellings, lower-case alias -> canonical label name.
    """

    name: str
    level_names: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    parents: tuple[tuple[int, ...], ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aliases", checked_aliases(self.aliases))
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_levels(
        cls,
        levels: Sequence[Sequence[str]],
        parents: Sequence[Mapping[str, str]],
        *,
        name: str = "custom",
        level_names: Sequence[str] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> Taxonomy:
        """Build from label lists and, for each level below the first, a child -> parent-name map."""
        check_list(levels, "levels", "a list of label lists, coarse to fine")
        check_depth(len(levels))
        check_sizes(
            [check_list(lv, f"level {d}", "a list of labels") for d, lv in enumerate(levels)]
        )
        check_list(
            parents, "parents", "a list of child -> parent maps, one per level below the first"
        )
        if len(parents) != len(levels) - 1:
            raise TaxonomyError(
                f"{len(levels)} levels need {len(levels) - 1} parent maps (one per level below the "
                f"first), got {len(parents)}"
            )
        if level_names is None:
            level_names = default_level_names(len(levels))
        check_list(level_names, "level_names", "a list of strings, one per level")
        for depth, level_name in enumerate(level_names):
            check_name(level_name, f"the name of level {depth}")
        for depth, level in enumerate(levels):
            check_labels(level, depth, level_names)
        index_parents: list[tuple[int, ...]] = [()]
        for depth in range(1, len(levels)):
            above = {label: i for i, label in enumerate(levels[depth - 1])}
            mapping = parents[depth - 1]
            if not isinstance(mapping, Mapping):
                raise TaxonomyError(
                    f"parents[{depth - 1}] (the parents of level {depth}) must be a dict "
                    f"child -> parent name, got {kind(mapping)}"
                )
            row = []
            for label in levels[depth]:
                if label not in mapping:
                    raise TaxonomyError(
                        f"label {label!r} at level {depth} ({level_names[depth]!r}) has no parent: "
                        f"every label below the first level needs exactly one parent"
                    )
                parent = check_parent(mapping[label], label, depth)
                if parent not in above:
                    raise TaxonomyError(
                        f"label {label!r} at level {depth} names an unknown parent {parent!r}: "
                        f"parents must be labels of level {depth - 1} {preview(list(above))}"
                    )
                row.append(above[parent])
            if len(mapping) != len(levels[depth]):  # every label is in it: the rest are extra
                names = set(levels[depth])
                extra = list(itertools.islice((k for k in mapping if k not in names), 20))
                raise TaxonomyError(
                    f"parent map of level {depth} names {len(mapping) - len(names):,} label(s) "
                    f"that are not on that level: {preview(extra)}"
                )
            index_parents.append(tuple(row))
        return cls(
            name=name,
            level_names=tuple(level_names),
            labels=tuple(tuple(level) for level in levels),
            parents=tuple(index_parents),
            aliases=checked_aliases(aliases or {}),
        )

    @classmethod
    def from_nested(
        cls,
        tree: Mapping[str, Any] | Sequence[str],
        *,
        name: str = "custom",
        level_names: Sequence[str] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> Taxonomy:
        """Build from a nested dict, coarse to fine.

        ``["a", "b"]`` is one level; ``{"pos": ["joy", "awe"], "neg": ["fear"]}`` two;
        ``{"pos": {"joy": ["zest"], ...}, ...}`` three. Every branch must reach the same depth.
        """
        levels: list[list[str]] = []
        seen: list[set[str]] = []
        parents: list[dict[str, str]] = []
        total = [0]

        def walk(node: Any, depth: int, parent: str | None) -> None:
            if depth >= MAX_LEVELS:
                check_depth(depth + 1)
            while len(levels) <= depth:
                levels.append([])
                seen.append(set())
                parents.append({})
            if isinstance(node, Mapping):
                items: Iterable[tuple[Any, Any]] = node.items()
            elif isinstance(node, (list, tuple)):
                items = ((leaf, None) for leaf in node)
            else:
                raise TaxonomyError(
                    f"under {parent!r}: expected a dict or a list of labels, got {kind(node)}"
                )
            # Sizes first: a node with a million children is refused before it is copied.
            total[0] += len(node)
            check_counts(depth, len(levels[depth]) + len(node), total[0])
            for label, children in items:
                check_name(label, f"a label under {parent!r} at level {depth}")
                if label.lower() in seen[depth]:
                    raise TaxonomyError(
                        f"duplicate label {label!r} at level {depth}: names must be unique "
                        f"within a level (case is ignored)"
                    )
                seen[depth].add(label.lower())
                levels[depth].append(label)
                if parent is not None:
                    parents[depth][label] = parent
                if children is not None:
                    walk(children, depth + 1, label)
            if len(node) == 0:
                where = f"parent {parent!r}" if parent is not None else "the root"
                raise TaxonomyError(
                    f"{where} has no children: every label above the finest level needs at least one child"
                )

        walk(tree, 0, None)
        # Branches must all reach the finest level.
        depth = len(levels)
        for d in range(depth - 1):
            have_children = set(parents[d + 1].values())
            for label in levels[d]:
                if label not in have_children:
                    raise TaxonomyError(
                        f"label {label!r} at level {d} has no children: every label above the finest "
                        f"level needs at least one child (all branches must be {depth} levels deep)"
                    )
        return cls.from_levels(
            levels, parents[1:], name=name, level_names=level_names, aliases=aliases
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Taxonomy:
        """Build from the layout of :meth:`to_dict`, or from a nested tree (see :meth:`from_nested`)."""
        if isinstance(data, (list, tuple)):
            return cls.from_nested(data)
        if not isinstance(data, Mapping):
            raise TaxonomyError(
                "a taxonomy must be an object {'name', 'levels', 'aliases'}, a nested tree "
                f"(dict) or a list of labels, got {kind(data)}"
            )
        if not isinstance(data.get("levels"), list):
            return cls.from_nested(data)
        unknown = [k for k in data if k not in _DICT_KEYS]
        if unknown:
            raise TaxonomyError(
                f"unknown taxonomy field(s) {preview(unknown)}; the fields are {list(_DICT_KEYS)}"
            )
        specs = data["levels"]
        check_depth(len(specs))
        # Pass 1, sizes only: nothing is copied before every level is known to be in bounds.
        for depth, spec in enumerate(specs):
            if not isinstance(spec, Mapping) or "labels" not in spec:
                raise TaxonomyError(
                    f"levels[{depth}]: expected an object with 'labels', got {kind(spec)}"
                )
            unknown = [k for k in spec if k not in _LEVEL_KEYS]
            if unknown:
                raise TaxonomyError(
                    f"levels[{depth}]: unknown field(s) {preview(unknown)}; the fields are "
                    f"{list(_LEVEL_KEYS)}"
                )
            check_list(spec["labels"], f"levels[{depth}]['labels']", "a list of label strings")
        check_sizes([spec["labels"] for spec in specs])
        names = [
            check_name(spec.get("name", default), f"levels[{depth}]['name']")
            for depth, (spec, default) in enumerate(
                zip(specs, default_level_names(len(specs)), strict=True)
            )
        ]
        labels: list[list[str]] = []
        parent_maps: list[dict[str, str]] = []
        for depth, spec in enumerate(specs):
            level_labels = spec["labels"]
            # Duplicates must be caught before a dict folds them.
            check_labels(level_labels, depth, names)
            labels.append(list(level_labels))
            if depth == 0:
                if spec.get("parents") not in (None, []):
                    raise TaxonomyError(
                        "levels[0]['parents']: the first level has no parents; remove the field"
                    )
                continue
            plist = spec.get("parents")
            if not isinstance(plist, list) or len(plist) != len(level_labels):
                got = f"{len(plist)} entries" if isinstance(plist, list) else kind(plist)
                raise TaxonomyError(
                    f"levels[{depth}]['parents'] ({names[depth]!r}) must list one parent name per "
                    f"label ({len(level_labels)}), got {got}"
                )
            for label, parent in zip(level_labels, plist, strict=True):
                check_parent(parent, label, depth)
            parent_maps.append(dict(zip(level_labels, plist, strict=True)))
        return cls.from_levels(
            labels,
            parent_maps,
            name=check_name(data.get("name", "custom"), "the taxonomy 'name'"),
            level_names=names,
            aliases=checked_aliases(data.get("aliases", {})),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Taxonomy:
        """Read a taxonomy JSON file (either layout of :meth:`from_dict`).

        Files over :data:`MAX_TAXONOMY_FILE_BYTES`, non-UTF-8 text, bad JSON and too deeply
        nested JSON are refused with a :class:`TaxonomyError` naming the file.
        """
        data = read_json_file(
            path,
            error=TaxonomyError,
            what="taxonomy file",
            max_bytes=MAX_TAXONOMY_FILE_BYTES,
            max_strings=MAX_JSON_STRINGS,
        )
        try:
            return cls.from_dict(data)
        except TaxonomyError as err:
            if isinstance(data, dict) and {"dataset", "taxonomy"} <= set(data):
                raise TaxonomyError(
                    f"taxonomy file {path} is a training config (it has 'dataset' and "
                    "'taxonomy' keys), not a label tree: its 'taxonomy' must name a built-in "
                    "tree or another file, the one written by Taxonomy.to_json "
                    f"({docs_url('finetune.md#1-write-the-taxonomy')})"
                ) from None
            raise TaxonomyError(f"taxonomy file {path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready layout: name, levels (name, labels, parent names) and aliases."""
        levels = []
        for depth, labels in enumerate(self.labels):
            spec: dict[str, Any] = {"name": self.level_names[depth], "labels": list(labels)}
            if depth > 0:
                above = self.labels[depth - 1]
                spec["parents"] = [above[p] for p in self.parents[depth]]
            levels.append(spec)
        return {"name": self.name, "levels": levels, "aliases": dict(sorted(self.aliases.items()))}

    def to_nested(self) -> dict[str, Any] | list[str]:
        """The tree as a nested dict (leaves as lists), the input form of :meth:`from_nested`."""

        def build(depth: int, idx: Iterable[int]) -> Any:
            if depth == self.num_levels - 1:
                return [self.labels[depth][i] for i in idx]
            below = self._child_index[depth + 1]
            return {self.labels[depth][i]: build(depth + 1, below[i]) for i in idx}

        return build(0, range(self.num_classes[0]))

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON, atomically (a crash never leaves half a file)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    # ------------------------------------------------------------------ queries
    @property
    def num_levels(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> tuple[int, ...]:
        """Classes per level, coarse to fine."""
        return tuple(len(level) for level in self.labels)

    @property
    def fine_labels(self) -> tuple[str, ...]:
        return self.labels[-1]

    def level_index(self, level: int | str) -> int:
        """A level given by position (negative counts from the finest) or by name."""
        if isinstance(level, str):
            if level not in self.level_names:
                raise KeyError(f"no level named {level!r}; levels are {list(self.level_names)}")
            return self.level_names.index(level)
        if not -self.num_levels <= level < self.num_levels:
            raise IndexError(f"level {level} out of range for a {self.num_levels}-level taxonomy")
        return level % self.num_levels

    def canonical(self, label: str) -> str:
        """The canonical spelling of ``label`` (through aliases; case ignored), or KeyError."""
        found = self._lookup(label)
        if found is None:
            raise KeyError(self._unknown_message(label))
        return found

    def index(self, label: str, level: int | str | None = None) -> int:
        """Class index of ``label`` at ``level`` (default: the finest level that has it).

        Case is ignored and aliases are followed; an unknown name raises ``KeyError`` listing
        the known labels.
        """
        name = self.canonical(label)
        levels = range(self.num_levels) if level is None else [self.level_index(level)]
        for depth in reversed(list(levels)):
            found = self._positions[depth].get(name)
            if found is not None:
                return found
        where = "any level" if level is None else f"level {level}"
        raise KeyError(
            f"label {label!r} is not on {where}; labels there: {preview(self._known(level), 50)}"
        )

    def children(self, level: int, index: int) -> list[int]:
        """Class indices at ``level + 1`` whose parent is ``index`` at ``level``."""
        level = self.level_index(level)
        if level == self.num_levels - 1:
            return []
        return list(self._child_index[level + 1][index])

    def ancestor_indices(self, fine_index: int) -> tuple[int, ...]:
        """Class index at every level, coarse to fine, of the path that ends at ``fine_index``."""
        path = [fine_index]
        for depth in range(self.num_levels - 1, 0, -1):
            path.append(self.parents[depth][path[-1]])
        return tuple(reversed(path))

    def ancestors(self, label: str) -> tuple[str, ...]:
        """Names of the path from the coarsest level down to the fine ``label`` (included)."""
        idx = self.index(label, level=-1)
        return tuple(self.labels[d][i] for d, i in enumerate(self.ancestor_indices(idx)))

    def aggregation_matrix(self, level: int) -> list[list[float]]:
        """Eq. 2 as a 0/1 matrix ``A[k][j]`` = 1 if finest class k descends from class j at level."""
        level = self.level_index(level)
        paths = [self.ancestor_indices(k) for k in range(self.num_classes[-1])]
        n = self.num_classes[level]
        return [[1.0 if path[level] == j else 0.0 for j in range(n)] for path in paths]

    def aggregate(self, fine_probs: Any, level: int) -> Any:
        """Eq. 2: probabilities over the finest level summed into ``level`` (tensor or array)."""
        level = self.level_index(level)
        if level == self.num_levels - 1:
            return fine_probs
        mat = self.aggregation_matrix(level)
        if hasattr(fine_probs, "new_tensor"):  # torch.Tensor without importing torch here
            return fine_probs @ fine_probs.new_tensor(mat)
        import numpy as np

        return np.asarray(fine_probs) @ np.asarray(mat, dtype=float)

    def is_consistent(self, path: Sequence[int]) -> bool:
        """True if class indices ``path`` (one per level, coarse to fine) follow the tree."""
        if len(path) != self.num_levels:
            raise ValueError(f"need one index per level ({self.num_levels}), got {len(path)}")
        return all(
            self.parents[d][int(path[d])] == int(path[d - 1]) for d in range(1, self.num_levels)
        )

    def violations(self, predictions: Sequence[Sequence[int]]) -> list[bool]:
        """Per sample: True if its per-level predictions break the hierarchy.

        ``predictions`` holds one sequence (list, array or tensor) of class indices per level,
        coarse to fine, all of the same length. A sample violates the hierarchy if any label's
        parent is not the label predicted at the level above.
        """
        if len(predictions) != self.num_levels:
            raise ValueError(
                f"need predictions for {self.num_levels} levels, got {len(predictions)}"
            )
        cols = [[int(v) for v in tolist(level)] for level in predictions]
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError("every level needs the same number of predictions")
        return [not self.is_consistent([c[i] for c in cols]) for i in range(n)]

    def violation_rate(self, predictions: Sequence[Sequence[int]]) -> float:
        """Fraction of samples whose per-level predictions break the hierarchy."""
        flags = self.violations(predictions)
        return sum(flags) / len(flags) if flags else 0.0

    def fingerprint(self) -> str:
        """A short hash of the tree (labels and parents, not aliases) for checkpoint matching."""
        import hashlib

        body = json.dumps([self.labels, self.parents], separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def same_tree(self, other: Taxonomy) -> bool:
        """True if both have the same labels in the same order with the same parents."""
        return self.labels == other.labels and self.parents == other.parents

    def describe(self) -> str:
        """The tree as indented text, for CLIs and model cards."""
        lines = [f"{self.name}: " + " -> ".join(str(n) for n in self.num_classes)]

        def emit(depth: int, idx: Iterable[int], indent: int) -> None:
            for i in idx:
                lines.append("  " * indent + f"- {self.labels[depth][i]}")
                if depth + 1 < self.num_levels:
                    emit(depth + 1, self._child_index[depth + 1][i], indent + 1)

        emit(0, range(self.num_classes[0]), 1)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    # ------------------------------------------------------------------ internals
    # Look-up tables built once, on first use (linear in the labels; a scan per query made
    # describe(), children() and name matching quadratic on large trees).
    @cached_property
    def _by_name(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for level in self.labels:
            for name in level:
                table.setdefault(name.lower(), name)
        return table

    @cached_property
    def _positions(self) -> list[dict[str, int]]:
        return [{name: i for i, name in enumerate(level)} for level in self.labels]

    @cached_property
    def _child_index(self) -> list[list[list[int]]]:
        """``[depth][parent]`` -> class indices at ``depth`` under that parent (depth >= 1)."""
        table: list[list[list[int]]] = [[]]
        for depth in range(1, self.num_levels):
            under: list[list[int]] = [[] for _ in self.labels[depth - 1]]
            for i, p in enumerate(self.parents[depth]):
                under[p].append(i)
            table.append(under)
        return table

    def _lookup(self, label: str) -> str | None:
        key = label.strip().lower()
        return self._by_name.get(key, self.aliases.get(key))

    def _known(self, level: int | str | None) -> list[str]:
        if level is None:
            return sorted({n for lv in self.labels for n in lv})
        return list(self.labels[self.level_index(level)])

    def _unknown_message(self, label: str) -> str:
        return (
            f"unknown label {label!r} for taxonomy {self.name!r}; known labels: "
            f"{preview(self._known(None), 50)}; aliases: {preview(sorted(self.aliases), 50)}"
        )

    def _validate(self) -> None:
        """The rules of docs/taxonomy.md for a directly built instance, in linear time."""
        check_name(self.name, "the taxonomy name")
        check_list(self.labels, "labels", "a list of label lists, coarse to fine")
        check_depth(len(self.labels))
        check_sizes(
            [check_list(lv, f"level {d}", "a list of labels") for d, lv in enumerate(self.labels)]
        )
        check_list(self.level_names, "level_names", "a list of strings, one per level")
        if len(self.level_names) != len(self.labels):
            raise TaxonomyError(
                f"{len(self.labels)} levels but {len(self.level_names)} level names"
            )
        for depth, level_name in enumerate(self.level_names):
            check_name(level_name, f"the name of level {depth}")
        if len(set(self.level_names)) != len(self.level_names):
            raise TaxonomyError(f"duplicate level names {list(self.level_names)}")
        check_list(self.parents, "parents", "one list of parent indices per level")
        if len(self.parents) != len(self.labels):
            raise TaxonomyError("need one parent row per level (empty for the first)")
        for depth, labels in enumerate(self.labels):
            check_labels(labels, depth, self.level_names)
            row = self.parents[depth]
            check_list(row, f"parents[{depth}]", "a list of parent class indices")
            if depth == 0:
                if row:
                    raise TaxonomyError("labels of the first level have no parents")
                continue
            if len(row) != len(labels):
                raise TaxonomyError(f"level {depth}: one parent per label is needed")
            n_above = len(self.labels[depth - 1])
            for label, p in zip(labels, row, strict=True):
                if isinstance(p, bool) or not isinstance(p, Integral) or not 0 <= p < n_above:
                    raise TaxonomyError(
                        f"label {label!r} at level {depth} names an unknown parent index {short(p)}"
                    )
            have_children = set(row)
            childless = [j for j in range(n_above) if j not in have_children]
            if childless:
                raise TaxonomyError(
                    f"label {self.labels[depth - 1][childless[0]]!r} at level {depth - 1} has no "
                    f"children: every label above the finest level needs at least one child"
                )
        names = {n for level in self.labels for n in level}
        lowered = {n.lower() for n in names}
        for alias, target in self.aliases.items():
            if target not in names:
                raise TaxonomyError(f"alias {alias!r} points to unknown label {target!r}")
            if alias in lowered and alias != target.lower():
                raise TaxonomyError(f"alias {alias!r} shadows a real label of the same name")
