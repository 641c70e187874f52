"""The package's shape, checked from its source: no import cycle, one engine client."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gpuimages"


def imports() -> dict[str, set[str]]:
    """gpuimages module -> the gpuimages modules it imports (anywhere, TYPE_CHECKING too)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = f"gpuimages.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m.startswith("gpuimages.")} - {name}
    modules = set(graph)
    return {m: {d for d in deps if d in modules} for m, deps in graph.items()}


def test_no_import_cycle_in_the_package():
    graph = imports()
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    graph = {"gpuimages.a": {"gpuimages.b"}, "gpuimages.b": {"gpuimages.a"}}
    monkeypatch.setattr(__import__(__name__, fromlist=["imports"]), "imports", lambda: graph)
    try:
        test_no_import_cycle_in_the_package()
    except AssertionError as exc:
        assert "gpuimages.a -> gpuimages.b -> gpuimages.a" in str(exc)
    else:
        raise AssertionError("a two-module cycle went unnoticed")


def test_one_place_makes_an_engine_client():
    """`docker.from_env` only in engine.py: one client, one wording of "no engine"."""
    makers = sorted(
        f"{path.name}:{node.lineno}"
        for path in PACKAGE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute)
        and node.attr == "from_env"
        and isinstance(node.value, ast.Name)
        and node.value.id == "docker"
        and isinstance(node.ctx, ast.Load)
    )
    assert [m.split(":")[0] for m in makers] == ["engine.py"], makers
