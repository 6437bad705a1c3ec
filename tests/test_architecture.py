"""The shape of the house: units import one way (no cycles, lazy imports included), modules stay small."""

from __future__ import annotations

import ast
import re
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


# -- every import of an edgepack name resolves (lazy imports inside functions included) -----------

BENCH = PKG.parent / "bench"


def _edgepack_imports(path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for each import of an edgepack module in ``path``, relative ones resolved
    against ``package``; names are those of ``from MODULE import a, b`` (empty for ``import MODULE``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "edgepack"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "edgepack":
                out.append((node.lineno, mod, [a.name for a in node.names if a.name != "*"]))
    return out


def _unresolved(module: str, names: list[str]) -> list[str]:
    """What of ``from module import names`` (or ``import module``) does not exist; [] when all does.

    A module that fails to import because a third-party package is missing (an optional extra) is
    not this check's business; one that names a missing edgepack module is.
    """
    import importlib
    import importlib.util

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != "edgepack":
            return []  # an optional dependency (ray, usb1 ...) absent here
        return [f"{module} (no module {e.name})"]
    missing = []
    for name in names:
        if hasattr(mod, name):
            continue
        try:
            if importlib.util.find_spec(f"{module}.{name}") is not None:
                continue
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] != "edgepack":
                continue
        missing.append(f"{module}.{name}")
    return missing


def _all_sources() -> list[tuple[Path, str]]:
    """(file, the package its relative imports resolve against) for edgepack/, bench/ and tests/."""
    files = [(p, _module_name(p) if p.name == "__init__.py" else _module_name(p).rsplit(".", 1)[0])
             for p in sorted(PKG.rglob("*.py"))]
    tests = [p for p in sorted((PKG.parent / "tests").rglob("*.py")) if "__pycache__" not in p.parts]
    return files + [(p, "bench") for p in sorted(BENCH.glob("*.py"))] + [(p, "tests") for p in tests]


def test_every_imported_edgepack_name_exists():
    """`from ..model_io import x` inside a function, `import edgepack.x`: each must resolve (bench/, tests/ too)."""
    bad = []
    for path, package in _all_sources():
        for line, module, names in _edgepack_imports(path, package):
            for what in _unresolved(module, names):
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {what}")
    assert not bad, "imports of edgepack names that do not exist:\n" + "\n".join(bad)


def test_the_import_check_finds_missing_modules_and_names(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from .model_io import load\n    from ..errors import NoSuchError, UsageError\n"
                   "    import edgepack.nothere\n    from edgepack.devices import registry, nothing\n")
    found = [(line, m, n) for line, m, n in _edgepack_imports(src, "edgepack.search")]
    assert found == [(2, "edgepack.search.model_io", ["load"]), (3, "edgepack.errors", ["NoSuchError", "UsageError"]),
                     (4, "edgepack.nothere", []), (5, "edgepack.devices", ["registry", "nothing"])]
    assert [_unresolved(m, n) for _, m, n in found] == [
        ["edgepack.search.model_io (no module edgepack.search.model_io)"], ["edgepack.errors.NoSuchError"],
        ["edgepack.nothere (no module edgepack.nothere)"], ["edgepack.devices.nothing"]]


# -- every command's --help ends with an example of itself -------------------------------------

def test_every_command_help_ends_with_a_runnable_example():
    import click
    from click.testing import CliRunner

    from edgepack.cli import cli

    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"package", "profile", "devices", "search", "report", "inspect", "unpack"} <= set(names)
    for name in [None, *names]:
        cmd = cli if name is None else cli.get_command(ctx, name)
        r = CliRunner().invoke(cli, ([name] if name else []) + ["--help"])
        assert r.exit_code == 0, r.output
        text = r.output
        head = re.search(r"^\s*Examples?\b[^\n]*:\s*$", text, re.M)
        assert head, f"edgepack {name or ''} --help has no Example"
        example = text[head.end():text.find("Options:", head.end())]
        calls = re.findall(r"^\s*edgepack (.+)$", example.replace("\\\n", " "), re.M)
        assert calls, f"edgepack {name or ''} --help: its example runs no edgepack command"
        options = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        for call in calls:
            words = call.split()
            assert words[0] in names, f"example `edgepack {call}` names no command"
            if words[0] == name:
                unknown = [w for w in words if w.startswith("-") and w.split("=")[0] not in options]
                assert not unknown, f"example `edgepack {call}` uses options {name} does not have: {unknown}"
        assert name is None or name in [c.split()[0] for c in calls], f"edgepack {name} --help: no example of it"


def test_the_readme_layout_names_every_unit():
    """README's Layout table names every folder and top-level module of the package (and no renamed one)."""
    readme = (PKG.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("\n## ")] if "\n## " in layout else layout
    names = {f"`{p.name}/`" for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {f"`{p.name}`" for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    names |= {f"`{p.name}/`" for p in (PKG / "devices").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    missing = sorted(n for n in names if n not in layout)
    assert not missing, f"README's Layout table does not name: {missing}"
    from edgepack.paths import DATA_FOLDERS

    data = sorted(f"`{name}/`" for name in DATA_FOLDERS if (PKG.parent / name).is_dir())
    assert data and all(d in layout for d in data), [d for d in data if d not in layout]


ROOT_TESTS = {"test_architecture.py", "test_refusal.py"}  # checks of the repo itself and of tests/refusal.py


def test_tests_are_grouped_by_unit():
    """Each test file sits in the folder of the unit it tests (tests/tflm/ for edgepack/tflm/, ...)."""
    tests = PKG.parent / "tests"
    units = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} | {"integration"}
    misplaced = [str(p.relative_to(tests)) for p in tests.rglob("test_*.py")
                 if (p.parent == tests and p.name not in ROOT_TESTS)
                 or (p.parent != tests and p.relative_to(tests).parts[0] not in units)]
    assert not misplaced, f"test files outside a unit folder (tests/<unit>/): {misplaced}"


def test_tests_import_test_modules_of_their_own_folder_only():
    """``from test_x import ...`` resolves only when tests/<unit>/ is on sys.path, i.e. for a test of the same
    folder; what several folders share lives in a helper module at tests/ (compress_helpers.py, ...)."""
    tests = PKG.parent / "tests"
    wrong = []
    for p in tests.rglob("test_*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("test_"):
                if not (p.parent / f"{node.module}.py").is_file():
                    wrong.append(f"{p.relative_to(tests)} imports {node.module}")
    assert not wrong, f"imports of another folder's test module: {wrong}"


def module_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (lazy and TYPE_CHECKING imports included). A package's ``__init__``
    re-exports its modules, so an edge into a package's ``__init__`` counts only from outside the package."""
    paths = {_module_name(p): p for p in PKG.rglob("*.py")}
    packages = {m for m, p in paths.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    for m, p in paths.items():
        for dst in _imports(p):
            if dst not in paths or dst == m:
                continue
            if dst in packages and (m + ".").startswith(dst + "."):
                continue  # a module importing its own package's __init__ (re-exports)
            if m in packages:
                continue  # an __init__ re-exporting its modules
            graph[m].add(dst)
    return graph


def test_modules_import_one_way():
    cycle = _cycle(module_graph())
    assert not cycle, "import cycle between modules: " + " -> ".join(cycle)
