"""The package's folders import one another in one direction only.

Every import counts, those inside functions too (a lazy import is still a dependency, only a
hidden one). A top-level module (`config.py`, `errors.py`, `cli.py`) is a node of its own.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "llamaray"


def node_of(module: str) -> str | None:
    """`llamaray.jobs.tracker` -> `jobs`; `llamaray.config` -> `config`; not ours -> None."""
    parts = module.split(".")
    if parts[0] != "llamaray" or len(parts) < 2:
        return None
    return parts[1]


def imports(path: Path) -> list[tuple[str, int]]:
    """The llamaray modules a file imports, with the line of each import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            # `from llamaray import pipelines` imports the folder itself
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names if node.module == "llamaray"]
    return found


def folder_graph() -> dict[str, dict[str, list[str]]]:
    """folder -> folder it imports -> where (file:line)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if source == "__init__":
            continue  # the package's own door: `build_app` reaches into serve lazily
        for module, line in imports(path):
            target = node_of(module)
            if target is not None and target != source:
                graph[source][target].append(f"{relative}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Every strongly connected group of more than one folder (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in list(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_folder_imports_one_that_imports_it_back():
    graph = folder_graph()
    found = cycles(graph)
    details = [
        f"{a} -> {b} ({', '.join(graph[a][b][:3])})"
        for group in found
        for a in group
        for b in group
        if b in graph.get(a, {})
    ]
    assert not found, "import circles between folders:\n" + "\n".join(details)


def test_the_api_imports_nothing_but_itself():
    """Clients and tests use the types alone: no ray, torch or vllm, and none of our code."""
    for path in (PACKAGE / "api").glob("*.py"):
        for module, line in imports(path):
            assert node_of(module) in (None, "api"), f"api/{path.name}:{line} imports {module}"
            assert module.split(".")[0] not in ("ray", "torch", "vllm"), f"api/{path.name}:{line} imports {module}"


def test_the_checker_sees_a_circle():
    graph = {"a": {"b": ["a.py:1"]}, "b": {"c": ["b.py:1"]}, "c": {"a": ["c.py:1"]}, "d": {"a": ["d.py:1"]}}
    assert cycles(graph) == [["a", "b", "c"]]
