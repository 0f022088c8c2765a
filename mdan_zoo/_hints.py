"""Where a message sends the user: the documentation's web address (an installed wheel carries
no ``docs/`` folder) and the exact ``pip install`` that brings a missing optional package."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["DOCS_URL", "docs_url", "require"]

DOCS_URL = "https://github.com/mdan-zoo/mdan_zoo/blob/main/docs/"


def docs_url(page: str) -> str:
    """The web address of ``page`` (``"training.md#small-datasets"``) of the documentation."""
    return DOCS_URL + page


def require(*modules: str, extra: str, what: str) -> list[ModuleType]:
    """Import ``modules`` for ``what`` (``"ONNX export"``); :class:`MissingDependencyError`
    naming every missing one and ``pip install 'mdan_zoo[<extra>]'`` otherwise."""
    found, missing = [], []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: pip install 'mdan_zoo[{extra}]'",
            extra=extra,
            packages=tuple(missing),
        )
    return found
