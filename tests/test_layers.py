"""The package's layers point one way: texts -> adapters -> runner -> compare -> diagnose -> report.

The import graph of `parity/` is read with `ast` (imports inside functions count: a lazy import
is still a dependency), and every edge must go to the same layer or a lower one, with no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "parity"

# The layer order, lowest first, written once. A module belongs to the first prefix it matches.
LAYERS: list[tuple[str, ...]] = [
    ("parity.errors", "parity.version"),
    ("parity.files",),
    ("parity.cache",),
    ("parity.texts", "parity.modelinfo", "parity.tinymodels"),
    ("parity.adapters",),
    ("parity.metrics",),
    ("parity.compare",),
    ("parity.retrieval", "parity.export"),
    ("parity.runner",),
    ("parity.distributed",),
    ("parity.diagnose",),
    ("parity.search", "parity.baseline"),
    ("parity.gate",),
    ("parity.report",),
    ("parity.stream",),
    ("parity.remember",),
    ("parity.assertions",),
    ("parity.cli", "parity.pytest_plugin", "parity.strategies", "parity.__main__", "parity"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[1]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The parity modules `path` imports (resolved to the longest existing module name)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` depends on the submodule (and on pkg's __init__, which
            # Python runs first: only a real dependency when a name is taken from pkg itself)
            names = [f"{base}.{alias.name}" for alias in node.names]
            if any(name not in modules for name in names):
                names.append(base)
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def test_every_module_has_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_no_import_points_to_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        # a submodule taking a name from its package, whose __init__ imports the submodule
        ({"p.x": {"p"}, "p": {"p.x"}}, ["p", "p.x", "p"]),
    ],
)
def test_cycle_finder_finds_cycles_and_only_cycles(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert find_cycle(graph) == expected


def test_the_graph_sees_module_level_and_lazy_imports() -> None:
    graph = import_graph()
    assert "parity.diagnose.settings" in graph["parity.report.markdown"]
    assert "parity.search.fuzz" in graph["parity.cli.commands"]  # imported inside cmd_fuzz
    assert layer_of("parity.report.markdown") > layer_of("parity.diagnose.settings")
    assert layer_of("parity.gate.explain") > layer_of("parity.baseline.store")
