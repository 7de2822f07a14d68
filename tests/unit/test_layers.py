"""The Python package's layers, as ``zarrs-ffi/tests/layers.rs`` checks the crate's.

Each layer may import the layers above it in ``LAYERS``, never those below, and no module
imports itself back through others. Imports under ``TYPE_CHECKING`` and inside functions
count: a cycle that only type checkers follow still ties the modules together.
``docs/architecture.md`` draws the same table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "zarrs_cffi"

#: Top-level modules and subpackages of ``zarrs_cffi``, in layer order.
LAYERS = [
    ["_version", "errors", "stats", "_zarrs_cffi_ffi"],
    ["_bindings"],
    ["_core"],
    ["_selection"],
    ["_pipeline"],
    ["_direct_reads", "_direct_open", "_direct_selections", "_direct_futures", "_chunk_names"],
    ["array", "dask"],
    ["cli"],
    ["__init__", "__main__"],
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imports(root: Path) -> dict[str, set[str]]:
    """Every module of the package under ``root`` and the package modules it imports (a
    ``from package import name`` where ``name`` is a submodule imports the submodule)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if is_package(name, modules) else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def layer_of(name: str, root: str) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{name} is in no layer of LAYERS: add its top-level module there")


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a module of a lower layer (later in ``LAYERS``) by one of a higher."""
    root = "zarrs_cffi"
    return sorted(
        (importer, imported)
        for importer, targets in graph.items()
        for imported in targets
        if layer_of(imported, root) > layer_of(importer, root)
    )


def test_no_module_imports_a_layer_below_its_own():
    assert upward(imports(PACKAGE)) == []


def test_no_import_cycle():
    assert cycle(imports(PACKAGE)) is None


def test_every_module_is_in_a_layer():
    for name in imports(PACKAGE):
        layer_of(name, "zarrs_cffi")


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "zarrs_cffi"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_find_a_cycle_through_type_checking_imports(tmp_path):
    # The import circle the package once had: opening <-> routes, the way back for types only.
    root = _package(tmp_path, {
        "__init__.py": "",
        "_pipeline/__init__.py": "",
        "_pipeline/opening.py": "from .routes import route_for\n",
        "_pipeline/routes.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .opening import Native\n",
    })
    found = cycle(imports(root))
    assert found is not None and set(found) == {"zarrs_cffi._pipeline.opening", "zarrs_cffi._pipeline.routes"}


@pytest.mark.parametrize(
    "text", ["from .._pipeline import routes\n", "def f():\n    from zarrs_cffi._pipeline.routes import x\n"]
)
def test_the_checks_find_an_upward_import(tmp_path, text):
    root = _package(tmp_path, {
        "__init__.py": "",
        "_selection/__init__.py": "",
        "_selection/boxes.py": text,
        "_pipeline/__init__.py": "",
        "_pipeline/routes.py": "x = 1\n",
    })
    assert upward(imports(root)) == [("zarrs_cffi._selection.boxes", "zarrs_cffi._pipeline.routes")]


def test_every_fallback_is_raised_through_fall_back():
    # One search for ``fall_back(`` finds every reason an array, buffer or batch leaves the
    # native path, each with its class (``_core/fallback.py``).
    direct = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                called = node.exc.func
                if isinstance(called, ast.Name) and called.id == "Fallback" and path.name != "fallback.py":
                    direct.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert direct == []
    from zarrs_cffi._core import fallback

    with pytest.raises(fallback.Fallback) as caught:
        fallback.fall_back("selection", "negative slice steps")
    assert (caught.value.kind, caught.value.reason) == ("selection", "negative slice steps")
