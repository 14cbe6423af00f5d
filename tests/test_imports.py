"""The rooms (docs/architecture.md), checked on the source with `ast`: no import cycle among the modules
of growth/ and analysis/ (function-local imports count), nothing in growth/ imports analysis/, and
growth/interop is downstream of the pipeline: no module of growth/ outside it imports it."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("growth", "analysis")
MAX_LINES = 300
# The schema is one file on purpose; data.py is split by issue 22.
LONG_ALLOWED = {"growth/config.py", "growth/data/pipeline.py"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _targets(name: str, path: Path) -> set[str]:
    """The internal modules `name` imports, each with the packages whose __init__ the import runs."""
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
        if id(node) in typing_only:
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


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


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


def test_growth_does_not_import_analysis_or_interop():
    bad = []
    for name, targets in GRAPH.items():
        if not name.startswith("growth"):
            continue
        bad += [(name, t) for t in targets if t.startswith("analysis")]
        if not name.startswith("growth.interop"):
            bad += [(name, t) for t in targets if t.startswith("growth.interop")]
    assert not bad, f"imports across rooms: {bad}"


def test_the_walk_sees_real_edges():
    # The checks above are only as good as the graph: it must hold edges we know exist.
    assert (
        "growth.config" in GRAPH["growth.experiment.pool"]
        and "growth.widen.registry" in GRAPH["analysis.loading.cells"]
    )
    assert "growth.widen" in GRAPH["analysis.loading.cells"]  # the package __init__ an import runs


def test_modules_are_short():
    long = {
        str(p.relative_to(REPO)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(REPO)) not in LONG_ALLOWED
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
