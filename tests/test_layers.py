"""The package's shape: layers as folders, imports pointing one way, no circles.

Every import of every module under ``replay/`` is read from its source (at module level, under
``TYPE_CHECKING`` and inside functions alike: a lazy import is still a dependency), and held against
:data:`LAYERS`, the list the README's "Layout" section draws.  A module may import its own layer and
the layers before it, never one after it; no set of modules may import each other in a loop; nothing
inside the package imports ``replay`` itself, whose ``__init__.py`` only re-exports.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "replay"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("replay.errors", "replay.files", "replay.version", "replay.routes", "replay.locks", "replay.scope")),
    ("config", ("replay.config",)),
    ("record", ("replay.record",)),
    ("compaction", ("replay.compaction",)),
    ("adapters", ("replay.adapters",)),
    ("storage", ("replay.storage",)),
    ("restore", ("replay.restore",)),
    ("share", ("replay.share",)),
    ("backends", ("replay.backends",)),
    ("serve", ("replay.serve",)),
    ("cli", ("replay.cli", "replay.pytest_plugin", "replay.__main__")),
    ("api", ("replay",)),
)
"""From the foundation up: each entry names modules, or packages with everything in them."""


@dataclasses.dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module it imports (a submodule named in ``from X import name`` counts as that submodule)
    line: int
    how: str  # "module level", "type checking" or "lazy"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _walk(node: ast.AST, how: str) -> Iterator[tuple[ast.AST, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for inner in child.body:
                yield inner, "type checking"
                yield from _walk(inner, "type checking")
            for inner in child.orelse:
                yield inner, how
                yield from _walk(inner, how)
            continue
        inner_how = "lazy" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else how
        yield child, how
        yield from _walk(child, inner_how)


def imports_of(module: str, path: Path) -> list[Import]:
    """The imports of ``module`` that name modules of the package."""
    found = []
    for node, how in _walk(ast.parse(path.read_text(), str(path)), "module level"):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in MODULES else base)
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        found += [Import(module, t, node.lineno, how) for t in targets if t == "replay" or t.startswith("replay.")]
    return found


IMPORTS = [found for module, path in MODULES.items() for found in imports_of(module, path)]


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest entry that holds ``module``."""
    best, length = -1, -1
    for index, (_name, entries) in enumerate(LAYERS):
        for entry in entries:
            holds = module == entry or (entry != "replay" and module.startswith(entry + "."))
            if holds and len(entry) > length:
                best, length = index, len(entry)
    return best


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(module for module in MODULES if layer_of(module) < 0)
    assert not unplaced, f"place these modules in LAYERS (and the README's Layout): {unplaced}"


def test_imports_point_toward_the_foundation() -> None:
    upward = [
        f"{found.module}:{found.line} ({LAYERS[layer_of(found.module)][0]}) imports {found.target} "
        f"({LAYERS[layer_of(found.target)][0]}), {found.how}"
        for found in IMPORTS
        if layer_of(found.target) > layer_of(found.module)
    ]
    assert not upward, "imports that point up the layer list:\n" + "\n".join(upward)


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles() -> None:
    edges: dict[str, set[str]] = {}
    for found in IMPORTS:
        edges.setdefault(found.module, set()).add(found.target)
    assert not _circles(edges), f"modules that import each other in a loop: {_circles(edges)}"


def test_the_circle_finder_finds_circles() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"a"}}) == [["a"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_nothing_inside_imports_the_package_itself() -> None:
    back = [
        f"{found.module}:{found.line}" for found in IMPORTS if found.target == "replay" and found.module != "replay"
    ]
    assert not back, f"these import replay/__init__.py back (import from the module that defines the name): {back}"


def _only_reexports(path: Path) -> list[str]:
    """The statements of ``path`` other than its docstring, imports and ``__all__``."""
    others = []
    for index, node in enumerate(ast.parse(path.read_text()).body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
            continue
        others.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node).splitlines()[0]}")
    return others


PACKAGES = sorted(path for path in PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("path", PACKAGES, ids=lambda path: _module_name(path))
def test_package_init_files_only_hand_names_on(path: Path) -> None:
    assert not _only_reexports(path), "define these in a module of the package, not in __init__.py"


@pytest.mark.parametrize("path", [p for p in PACKAGES if p.parent != PACKAGE], ids=lambda path: _module_name(path))
def test_each_layer_says_what_it_does_may_import_and_offers(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    lines = [line for line in docstring.splitlines() if line.strip()]
    assert len(lines) == 3, f"{path}: three lines (what the layer does, what it may import, its entry points)"
    assert "import" in lines[1].lower(), f"{path}: the second line says what the layer may import"


def test_the_tests_mirror_the_layers() -> None:
    """Unit tests of ``replay/<layer>/`` live in ``tests/<layer>/``; the rest are whole-system suites."""
    tests = PACKAGE.parent / "tests"
    suites = {"e2e", "faults", "benchmarks"}
    layers = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    folders = {path.name for path in tests.iterdir() if path.is_dir() and not path.name.startswith((".", "_"))}
    assert folders - suites <= layers, f"test folders with no layer of that name: {sorted(folders - suites - layers)}"
    for layer in layers:
        modules = {path.stem for path in (PACKAGE / layer).glob("*.py")} - {"__init__"}
        tested = {path.stem.removeprefix("test_") for path in (tests / layer).glob("test_*.py")}
        assert tested, f"replay/{layer}/ has no tests/{layer}/"
        stray = {name for name in tested if not any(name.startswith(module) for module in modules)}
        assert not stray, f"tests/{layer}/ tests no module of replay/{layer}/: {sorted(stray)}"
