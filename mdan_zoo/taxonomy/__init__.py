"""Label trees: the emotion hierarchies of the paper's benchmarks and of your own data.

A :class:`Taxonomy` is the coarse-to-fine tree of Sec. 3 that MDAN's levels predict; it builds
the aggregation of Eq. 2 (finer probabilities summed into their parents), finds ancestors and
counts hierarchy violations. The machinery is private: ``_tree`` (the tree), ``_builtin``
(the built-in trees, one row each), ``_rules`` (the checks a tree from a file must pass).
"""

from ._builtin import BUILTIN, BuiltinTree, as_taxonomy, get_taxonomy, list_taxonomies
from ._tree import (
    MAX_ALIASES,
    MAX_CLASSES_PER_LEVEL,
    MAX_LABELS,
    MAX_LEVELS,
    MAX_NAME_LENGTH,
    MAX_TAXONOMY_FILE_BYTES,
    Taxonomy,
    TaxonomyError,
)

__all__ = [
    "BUILTIN",
    "BuiltinTree",
    "MAX_ALIASES",
    "MAX_CLASSES_PER_LEVEL",
    "MAX_LABELS",
    "MAX_LEVELS",
    "MAX_NAME_LENGTH",
    "MAX_TAXONOMY_FILE_BYTES",
    "Taxonomy",
    "TaxonomyError",
    "as_taxonomy",
    "get_taxonomy",
    "list_taxonomies",
]
