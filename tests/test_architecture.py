"""The shape of the house: units import one way (no cycles, lazy imports included), modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "edgepack"
MAX_LINES = 500


def _unit(module: str) -> str:
    """edgepack.tflm.arena -> edgepack.tflm; edgepack.pipeline -> edgepack.pipeline."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every edgepack module ``path`` imports, at any depth (function-level imports count)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("edgepack")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("edgepack"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}  # "from .pkg import module"
    return out


def unit_graph() -> dict[str, set[str]]:
    units = {_unit(_module_name(p)) for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {u: set() for u in units}
    for p in PKG.rglob("*.py"):
        src = _unit(_module_name(p))
        for mod in _imports(p):
            dst = _unit(mod)
            if dst in units and dst != src and dst != "edgepack":
                graph[src].add(dst)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str]:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state:
                found = visit(v)
                if found:
                    return found
        stack.pop()
        state[u] = 2
        return []

    for u in sorted(graph):
        if u not in state:
            found = visit(u)
            if found:
                return found
    return []


def test_units_import_one_way():
    cycle = _cycle(unit_graph())
    assert not cycle, "import cycle between units: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_modules_stay_readable():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")  # flatc output is generated, not written
            if not p.name.endswith("_py_generated.py") and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
