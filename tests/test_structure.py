"""The package's shape (issue 17): no import cycles, no private names across modules, modules of a readable size.

Imports are read from the source (``ast``), at any depth: an import inside a function
is still a dependency, and a cycle held together by a lazy import is still a cycle.
Imports under ``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "sftprep"
MAX_LINES = 520  # "about 500"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _owner(name: str) -> str:
    """The module of ``sftprep.a.b.name`` (a name imported from a module, or a module itself)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module imported from, name) for every sftprep import outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sftprep"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("sftprep")]
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = set()
        for source, name in _imports(path):
            target = _owner(f"{source}.{name}" if name else source)
            # A package imports its own modules to re-export them; that is not a dependency back.
            if target != module and not target.startswith(module + "."):
                targets.add(target)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_private_names_imported_across_modules():
    private = [
        f"{module} imports {name} from {source}"
        for module, path in MODULES.items()
        for source, name in _imports(path)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES, module


def test_the_package_map_names_every_module():
    """sftprep/__init__.py's docstring is the map of the package: every module is on it."""
    text = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())) or ""
    missing = [
        module
        for module in MODULES
        if module != "sftprep"
        and module.rpartition(".")[2] not in text
        and module.removeprefix("sftprep.") not in text
    ]
    assert missing == []
