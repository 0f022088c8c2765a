"""The package's house rules: imports run one way, and no module imports itself in a circle.

The graph counts every import statement in every module, at module level and inside
functions alike; only ``if TYPE_CHECKING:`` blocks (never executed) are left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import mdan_zoo

PACKAGE = Path(mdan_zoo.__file__).parent

# Layer of each top-level entry (a module, or a subpackage with the modules inside it), bottom
# up: an entry imports only entries of its own layer or below, and no two entries import each
# other in a circle. docs/architecture.md ("Layout") lists the same table, one row per entry.
LAYERS: dict[str, int] = {
    # 0: foundations -- label trees, the config, the paper's parts, images, the error family
    "_io": 0,
    "_checks": 0,
    "_version": 0,
    "_checkpointing": 0,
    "_hints": 0,
    "_threads": 0,
    "errors": 0,
    "taxonomy": 0,
    "config": 0,
    "layers": 0,
    "imageio": 0,
    "untrained": 0,
    # 1: data, weights as data, the Hub, predictions: the mixins' machinery receives the network
    #    instead of importing it
    "data": 1,
    "registry": 1,
    "hub": 1,
    "prediction": 1,
    # 2: the network
    "model": 2,
    # 3: the zoo's factories and checkpoints as functions
    "_builder": 3,
    "_timm": 3,
    "zoo": 3,
    # 4: evaluation, training, export for deployment
    "calibration": 4,
    "evaluation": 4,
    "export": 4,
    "training": 4,
    "serve": 4,
    # 5: the command line
    "cli": 5,
    "__main__": 5,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str) -> set[str]:
    """Modules of mdan_zoo that ``path`` (module ``name``) imports, anywhere in its code."""
    is_pkg = path.name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.split(".")[0] == "mdan_zoo":
                target = node.module.removeprefix("mdan_zoo").lstrip(".")
            else:
                target = None
            if target is not None:
                for alias in node.names:  # `from . import x` may name a module
                    sub = f"{target}.{alias.name}" if target else alias.name
                    found.add(sub if _exists(sub) else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mdan_zoo":
                    found.add(alias.name.removeprefix("mdan_zoo").lstrip("."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def _exists(module: str) -> bool:
    if not module:
        return True
    base = PACKAGE.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name == "":  # the package facade imports the public API lazily, by name
            continue
        graph[name] = _imports(path, name)
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[0]
    if top not in LAYERS:
        raise AssertionError(
            f"module {module!r} has no layer: add it to LAYERS here and to the layout table "
            "in docs/architecture.md"
        )
    return LAYERS[top]


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_imports_never_go_up() -> None:
    bad = [
        f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
        for mod, deps in _graph().items()
        for dep in deps
        if dep and _layer(dep) > _layer(mod)
    ]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if not dep or dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for module in graph:
        if module not in state:
            walk(module)


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    """The graph must count an import hidden inside a function (the old loop was one)."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .zoo import mdan\n"
        "def f():\n    from .hub import load_pretrained\n    from . import model\n"
    )
    assert _imports(src, "m") == {"hub", "model"}


def test_no_submodule_is_shadowed_by_a_public_name() -> None:
    modules = {_module_name(p).split(".")[0] for p in PACKAGE.rglob("*.py")}
    assert not modules & set(mdan_zoo.__all__)


def test_the_layout_table_in_the_docs_is_this_one() -> None:
    """docs/architecture.md ("Layout") lists every top-level entry with the layer LAYERS gives
    it, and nothing else, so a newcomer reading it finds the room a change belongs in."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| `([\w.]+)/?` \| .+ \|$", section, flags=re.M)
    listed = {name: int(layer) for layer, name in rows}
    assert len(rows) == len(listed), "a module is listed twice"
    assert listed == LAYERS


def _entry(module: str) -> str:
    return module.split(".")[0]


def test_no_import_cycles_between_packages() -> None:
    """Collapsed to top-level entries (a subpackage counts as one), imports still run one way."""
    graph: dict[str, set[str]] = {}
    for mod, deps in _graph().items():
        graph.setdefault(_entry(mod), set()).update(_entry(d) for d in deps if d)
    for entry, deps in graph.items():
        deps.discard(entry)
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                pytest.fail("package cycle: " + " -> ".join([*stack[stack.index(dep) :], dep]))
            if dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_machinery_stays_inside_its_package() -> None:
    """A `_private` module of a subpackage is imported only from inside that subpackage: other
    rooms use what the package's ``__init__`` (or a public module of it) exports."""
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in _graph().items()
        for dep in deps
        if "." in dep and dep.split(".")[1].startswith("_") and _entry(dep) != _entry(mod)
    ]
    assert not bad, "private modules used across packages:\n" + "\n".join(bad)


def test_the_house_is_small_enough_to_read() -> None:
    """At most 20 modules directly in mdan_zoo/, none over 650 lines anywhere."""
    top = [p for p in PACKAGE.glob("*.py")]
    assert len(top) <= 20, sorted(p.name for p in top)
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert not long, f"modules over 650 lines: {long}"


def test_no_private_name_is_imported_from_another_module() -> None:
    """A ``_name`` is private to its module: what a sibling needs is public in that module
    (which may itself be a private module of the package)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                node.level or "mdan_zoo" in (node.module or "")
            ):
                names = [a.name for a in node.names if a.name.startswith("_")]
                names = [n for n in names if n != "__version__"]
                if names and node.module is not None:
                    bad.append(f"{path.relative_to(PACKAGE)}: {names} from {node.module}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("old", sorted(mdan_zoo._MOVED))
def test_old_module_paths_still_import_with_a_warning(old: str) -> None:
    """Issue 17: the flat 0.2 module paths keep working (names of the new home, every exception
    of the family), so `from mdan_zoo.trainer import NonFiniteLossError` still runs."""
    import importlib
    import sys

    import mdan_zoo.errors as errors

    sys.modules.pop(f"mdan_zoo.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"mdan_zoo.{old} moved to"):
        module = importlib.import_module(f"mdan_zoo.{old}")
    home = importlib.import_module(f"mdan_zoo.{mdan_zoo._MOVED[old]}")
    public = [n for n in vars(home) if not n.startswith("_")]
    assert public and all(getattr(module, n) is getattr(home, n) for n in public)
    for name in errors.__all__:
        assert getattr(module, name) is getattr(errors, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018
