"""The rooms (docs/architecture.md), checked on the source with `ast`: no import cycle among the modules
of growth/ and analysis/ (function-local imports count), imports between packages only in the
directions of ALLOWED (type-checking imports count too), each package's docstring naming the same
directions, and no module over 300 lines."""

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("growth", "analysis")
MAX_LINES = 300
LONG_ALLOWED = {"growth/config.py"}  # the schema is one file on purpose

# What each package may import besides its own modules, from the bottom up. `growth` is its top-level
# modules (config, errors, presets, validate); nothing in growth/ imports analysis/, nothing but
# experiments/ imports growth.interop. Every package has a row; its __init__ docstring names the same set.
_G = ("growth", "growth.distributed", "growth.store", "growth.data", "growth.models", "growth.training")
ALLOWED: dict[str, set[str]] = {
    "growth": set(),
    "growth.distributed": {"growth"},
    "growth.store": {"growth", "growth.distributed"},
    "growth.data": {"growth", "growth.store"},
    "growth.models": {"growth"},
    "growth.training": {"growth", "growth.distributed", "growth.store", "growth.models"},
    "growth.widen": {"growth", "growth.models", "growth.training"},
    "growth.measure": {"growth", "growth.models", "growth.widen"},
    "growth.experiment": {*_G, "growth.widen", "growth.measure"},
    "growth.interop": {*_G, "growth.widen", "growth.experiment"} - {"growth.distributed"},
    "analysis": set(),
    "analysis.loading": {"growth.measure", "growth.widen"},
    "analysis.ranking": {"analysis.loading", "growth.measure", "growth.widen"},
    "analysis.output": {"analysis.loading", "analysis.ranking", "growth.measure", "growth.store", "growth.widen"},
    "analysis.axes": {"analysis.loading", "analysis.ranking", "analysis.output", "growth.measure", "growth.widen"},
    "analysis.claims": {"analysis.ranking", "analysis.axes", "growth", "growth.measure"},
    "analysis.report": {
        *("analysis.loading", "analysis.ranking", "analysis.output", "analysis.claims"),
        *("growth.store", "growth.widen"),
    },
    "analysis.study": {
        *("analysis.loading", "analysis.output", "analysis.axes", "analysis.claims", "analysis.report"),
        *("growth.store", "growth.experiment"),
    },
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _targets(name: str, path: Path, typing_too: bool = False) -> set[str]:
    """The internal modules `name` imports, each with the packages whose __init__ the import runs;
    with `typing_too`, those imported under `if TYPE_CHECKING:` as well."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }  # imports under `if TYPE_CHECKING:` never run
    for node in ast.walk(tree):
        if id(node) in typing_only and not typing_too:
            continue
        if isinstance(node, ast.Import):
            wanted = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            wanted = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in wanted:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in MODULES and prefix != name:
                    found.add(prefix)
    return found


GRAPH = {name: _targets(name, path) for name, path in MODULES.items()}
FULL_GRAPH = {name: _targets(name, path, typing_too=True) for name, path in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _package(name: str) -> str:
    """The room of a module: growth.data.corpus -> growth.data; growth.config (top level) -> growth."""
    parts = name.split(".")
    room = ".".join(parts[:2])
    return room if room in MODULES and _is_package(room) else parts[0]


def _violations(graph: dict[str, set[str]], allowed: dict[str, set[str]]) -> list[str]:
    """Every import between two packages that `allowed` does not list, as 'module -> module'. A package
    whose __init__ imports nothing (a docstring) is no edge of its own: `growth.data.corpus` is one to
    growth.data, not to growth (the top-level modules) too."""
    return [
        f"{name} -> {target}"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if not (_is_package(target) and not graph[target])
        and _package(target) != _package(name)
        and _package(target) not in allowed.get(_package(name), set())
    ]


def test_no_import_cycle():
    # A package's __init__ is entered by every import of its submodules, so an edge to a package only
    # closes a cycle through its own submodules when the package imports them.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt.startswith(node + ".") and _is_package(node):
                continue  # a package importing its own submodule
            if node.startswith(nxt + ".") and _is_package(nxt):
                continue  # a submodule's import path runs through its package: not a cycle of its own
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_every_package_has_a_row_and_the_rows_have_no_cycle():
    assert {_package(name) for name in MODULES} == set(ALLOWED)
    try:
        order = list(TopologicalSorter(ALLOWED).static_order())
    except CycleError as e:
        pytest.fail(f"the allowed directions form a cycle: {e.args[1]}")
    assert order.index("growth") < order.index("growth.experiment") < order.index("analysis.study")


def test_imports_between_packages_follow_the_table():
    # Type-checking imports count: a cycle through annotations is still a cycle between rooms.
    bad = _violations(FULL_GRAPH, ALLOWED)
    assert not bad, "imports the table in tests/test_imports.py does not allow:\n" + "\n".join(bad)


def test_the_direction_check_finds_a_forbidden_import():
    # The table's checks on one upward import (the store reading the runner) and on a cycle of rows.
    graph = dict(FULL_GRAPH)
    graph["growth.store.files"] = FULL_GRAPH["growth.store.files"] | {"growth.experiment.runner"}
    new = set(_violations(graph, ALLOWED)) - set(_violations(FULL_GRAPH, ALLOWED))
    assert new == {"growth.store.files -> growth.experiment.runner"}
    with pytest.raises(CycleError):
        list(TopologicalSorter(ALLOWED | {"growth": {"growth.experiment"}}).static_order())


def test_each_package_docstring_names_what_it_may_import():
    for room, allowed in ALLOWED.items():
        doc = ast.get_docstring(ast.parse(MODULES[room].read_text())) or ""
        said = doc.split("May import:", 1)
        assert len(said) == 2, f"{MODULES[room]}: the docstring says what the package may import ('May import: ...')"
        named = {m.group(0) for m in re.finditer(r"\b(?:growth|analysis)(?:\.\w+)?", said[1])}
        assert named == allowed, f"{MODULES[room]} names {sorted(named)}, the table {sorted(allowed)}"


def test_the_walk_sees_real_edges():
    # The checks above are only as good as the graph: it must hold edges we know exist.
    assert "growth.config" in GRAPH["growth.experiment.pool"]
    assert "growth.widen.registry" in GRAPH["analysis.loading.cells"]
    assert "growth.widen" in GRAPH["analysis.loading.cells"]  # the package __init__ an import runs
    assert "growth.experiment.results" in FULL_GRAPH["growth.experiment.progress"]  # under TYPE_CHECKING
    assert "growth.experiment.results" not in GRAPH["growth.experiment.progress"]


def test_modules_are_short():
    long = {
        str(p.relative_to(REPO)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(REPO)) not in LONG_ALLOWED
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
