"""The package's shape, checked from its source: no import cycle, one engine client."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gpuimages"


def module_name(path: Path) -> str:
    """gpuimages/build/image.py -> 'gpuimages.build.image'; a package's __init__ is the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """gpuimages module -> the gpuimages modules it imports (anywhere, TYPE_CHECKING too)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
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
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute)
        and node.attr == "from_env"
        and isinstance(node.value, ast.Name)
        and node.value.id == "docker"
        and isinstance(node.ctx, ast.Load)
    )
    assert [m.split(":")[0] for m in makers] == ["engine.py"], makers


# The stages in the order of the flow, lowest first (docs/architecture.md): a module may
# import from its own stage or a lower one. The package root (cli, console) is the top.
LAYERS = ("core", "facts", "build", "vet", "release", "host", "")


def layer(module: str) -> int:
    parts = module.split(".")
    stage = parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""
    return LAYERS.index(stage)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({LAYERS[layer(module)] or 'root'}) imports {dep} ({LAYERS[layer(dep)]})"
        for module, deps in graph.items()
        for dep in deps
        if layer(dep) > layer(module)
    )


def test_imports_only_go_down_the_layers():
    assert upward_imports(imports()) == []


def test_every_module_sits_in_a_known_layer():
    assert [m for m in imports() if m.count(".") > 1 and m.split(".")[1] not in LAYERS] == []


def test_the_layer_check_names_an_upward_import():
    graph = {"gpuimages.facts.matrix": {"gpuimages.release.registry"}}
    assert upward_imports(graph) == [
        "gpuimages.facts.matrix (facts) imports gpuimages.release.registry (release)"
    ]
