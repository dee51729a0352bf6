"""The package import graph of src/ldmlab, read with ``ast`` (nothing is imported).

Nodes are ``ldmlab.<subpackage>`` and top-level modules (``ldmlab.commands.cli``, ``ldmlab.checkpoints``,
the entry points). Dependencies point down (DESIGN.md): entry points → cli → callbacks → the
rest; no package cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ldmlab"
ENTRY_POINTS = frozenset({"ldmlab.commands.train", "ldmlab.commands.sample", "ldmlab.commands.evaluate", "ldmlab.commands.report",
                          "ldmlab.commands.invert", "ldmlab.commands.interpolate", "ldmlab.commands.export"})
# Rank of the top layers; every other node sits below them. A node of rank r may import a
# top-layer node only if that node's rank is larger (further down): entry points import cli and
# callbacks, cli imports callbacks, nobody imports an entry point.
TOP_LAYERS = {**dict.fromkeys(ENTRY_POINTS, 0), "ldmlab.commands.cli": 1, "ldmlab.callbacks": 2}
BELOW = 3


def node_of(module: str) -> str:
    """``ldmlab.a.b.c`` → ``ldmlab.a`` (a subpackage or a top-level module)."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = ["ldmlab", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ldmlab module ``path`` imports, anywhere in the file (lazy and typing-only too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for stmt in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(stmt, ast.Import):
            found |= {alias.name for alias in stmt.names}
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found |= {f"{base}.{alias.name}" for alias in stmt.names} if base == "ldmlab" else {base}
    return {m for m in found if m == "ldmlab" or m.startswith("ldmlab.")}


def package_graph() -> dict[str, dict[str, list[str]]]:
    """node → imported node → the files (relative to src/) that make the edge."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(SRC.rglob("*.py")):
        source = node_of(module_name(path))
        graph[source]  # every module is a node, even one importing nothing
        for target in map(node_of, imported_modules(path)):
            if target not in (source, "ldmlab"):
                graph[source][target].append(str(path.relative_to(SRC.parent)))
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_from_the_source() -> None:
    graph = package_graph()
    assert {"ldmlab.commands.cli", "ldmlab.checkpoints", "ldmlab.diffusion", "ldmlab.nn", "ldmlab.utils"} <= set(graph)
    assert "ldmlab.checkpoints" in graph["ldmlab.diffusion"]
    assert "ldmlab.commands.cli" in graph["ldmlab.commands.train"]


def test_no_package_cycle() -> None:
    graph = package_graph()
    cycle = find_cycle(graph)
    if cycle:
        edges = [f"{a} → {b} ({', '.join(graph[a][b])})" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("import cycle:\n  " + "\n  ".join(edges))


def test_nothing_imports_up_into_callbacks_cli_or_entry_points() -> None:
    graph = package_graph()
    up = [
        f"{source} → {target} ({', '.join(files)})"
        for source, targets in graph.items()
        for target, files in targets.items()
        if target in TOP_LAYERS and TOP_LAYERS.get(source, BELOW) >= TOP_LAYERS[target]
    ]
    assert not up, "imports up the layers:\n  " + "\n  ".join(up)


def test_the_checker_sees_cycles_and_up_imports() -> None:
    assert find_cycle({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["x"]}, "b": {}}) is None
    assert node_of("ldmlab.sampling.samplers.ddim") == "ldmlab.diffusion"
    assert TOP_LAYERS.get("ldmlab.diffusion", BELOW) >= TOP_LAYERS["ldmlab.callbacks"]
    assert TOP_LAYERS["ldmlab.commands.sample"] >= TOP_LAYERS["ldmlab.commands.train"]  # entry points never import each other
