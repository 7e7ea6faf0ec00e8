"""The layout holds (#27): no module of napari_unet imports one that imports it back, not even
inside a function, and the core (everything but cli/ and _widgets/) never imports Qt, napari,
the command line or the dock."""

from __future__ import annotations

import ast
from pathlib import Path

import napari_unet

ROOT = Path(napari_unet.__file__).parent


def module_paths() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("napari_unet", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    return modules


def module_imports() -> dict[str, set[str]]:
    """Module -> the napari_unet modules it imports anywhere in its text (TYPE_CHECKING aside)."""
    modules = module_paths()
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def visit(name: str, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("napari_unet"):
                for target in (child.module, *(f"{child.module}.{a.name}" for a in child.names)):
                    if target in modules and target != name:
                        graph[name].add(target)
            elif isinstance(child, ast.Import):
                graph[name].update(a.name for a in child.names if a.name in modules and a.name != name)
            visit(name, child)

    for name, path in modules.items():
        visit(name, ast.parse(path.read_text()))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(module_imports()) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_reaches_neither_the_dock_nor_the_command_line():
    graph, paths = module_imports(), module_paths()
    core = [m for m in graph if not m.startswith(("napari_unet._widgets", "napari_unet.cli", "napari_unet._reader",
                                                  "napari_unet._writer", "napari_unet._sample_data"))]  # fmt: skip
    reached = {(m, t) for m in core for t in graph[m] if t.startswith(("napari_unet._widgets", "napari_unet.cli"))}
    assert reached == set()
    gui = {}
    for m in core:
        for node in ast.walk(ast.parse(paths[m].read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found = [n for n in names if n.split(".")[0] in ("napari", "qtpy", "magicgui", "PyQt6", "PyQt5", "superqt")]
            if found:
                gui[m] = found
    assert gui == {}
