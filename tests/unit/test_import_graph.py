"""The package import graph of src/ldmlab, read with ``ast`` (nothing is imported).

Nodes are ``ldmlab.<subpackage>`` and top-level modules (``ldmlab.checkpoints``,
``ldmlab.target_aliases``). The layers (docs/architecture.md), top to bottom:

0. ``commands``: the entry points and their shared helpers;
1. ``callbacks``: Lightning callbacks the commands attach;
2. the library: one package per concept (first stages, sampling, guidance, diffusion, ...);
3. the foundation: ``config`` (composed configs, part keys), ``runs`` (run dirs), checkpoints,
   ``target_aliases`` and ``utils``.

A node imports only nodes of its own layer or below; no package cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ldmlab"
FOUNDATION = frozenset({"ldmlab.config", "ldmlab.runs", "ldmlab.checkpoints", "ldmlab.target_aliases",
                        "ldmlab.utils"})
LAYERS = {"ldmlab.commands": 0, "ldmlab.callbacks": 1, **dict.fromkeys(FOUNDATION, 3)}
LIBRARY = 2


def layer_of(node: str) -> int:
    return LAYERS.get(node, LIBRARY)


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
    assert {"ldmlab.commands", "ldmlab.checkpoints", "ldmlab.diffusion", "ldmlab.sampling", "ldmlab.guidance",
            "ldmlab.first_stage", "ldmlab.models", "ldmlab.nn", "ldmlab.utils", "ldmlab.config"} <= set(graph)
    assert "ldmlab.checkpoints" in graph["ldmlab.models"]
    assert "ldmlab.diffusion" in graph["ldmlab.sampling"]
    assert "ldmlab.callbacks" in graph["ldmlab.commands"]


def test_no_package_cycle() -> None:
    graph = package_graph()
    cycle = find_cycle(graph)
    if cycle:
        edges = [f"{a} → {b} ({', '.join(graph[a][b])})" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("import cycle:\n  " + "\n  ".join(edges))


def test_nothing_imports_up_a_layer() -> None:
    graph = package_graph()
    up = [
        f"{source} (layer {layer_of(source)}) → {target} (layer {layer_of(target)}) ({', '.join(files)})"
        for source, targets in graph.items() if source != "ldmlab"
        for target, files in targets.items()
        if layer_of(target) < layer_of(source)
    ]
    assert not up, "imports up the layers:\n  " + "\n  ".join(up)


def test_the_package_root_only_registers_the_config_resolvers() -> None:
    assert set(package_graph()["ldmlab"]) <= {"ldmlab.runs", "ldmlab.config"}


def test_the_checker_sees_cycles_and_up_imports() -> None:
    assert find_cycle({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["x"]}, "b": {}}) is None
    assert node_of("ldmlab.sampling.samplers.ddim") == "ldmlab.sampling"
    assert layer_of("ldmlab.guidance") > layer_of("ldmlab.callbacks") > layer_of("ldmlab.commands")
    assert layer_of("ldmlab.config") > layer_of("ldmlab.guidance")
