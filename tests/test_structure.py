"""The code's shape: no import cycle among router/ and plugins/ (counting every import statement,
TYPE_CHECKING blocks included), no import inside a function, and bundled plugins that use the
public API module alone."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"router": ROOT / "router", "ghost_router_plugins": ROOT / "plugins"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> list[tuple[str, ast.stmt, bool]]:
    """(imported module, statement, inside a function) for every import of a project module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nested = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node, id(node) in nested))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {target for target, _, _ in _imports(path, name, known)} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_router_and_plugin_modules() -> None:
    graph = _graph()
    assert len(graph) > 30 and "router.app" in graph["router.server"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_of_a_project_module_inside_a_function() -> None:
    modules = _modules()
    inside = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {target}"
        for name, path in modules.items()
        for target, node, nested in _imports(path, name, set(modules))
        if nested
    ]
    assert inside == []


def test_bundled_plugins_import_only_the_public_api() -> None:
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("ghost_router_plugins."):
            targets = {target for target, _, _ in _imports(path, name, set(modules))}
            assert targets <= {"router.api"}, f"{path.name} imports {sorted(targets - {'router.api'})}"
