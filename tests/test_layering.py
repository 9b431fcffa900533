"""The package's layering, read from the source with :mod:`ast` (nothing is imported).

Layers, lowest first; a module may import its own layer and the layers below it::

    conformal  <-  models  <-  core (analysis, cases, calibration, pipeline, ...)  <-  cli  <-  ui
                   io      <-/

* ``conformal`` imports nothing of the package outside ``conformal`` (and no Qt, napari or
  file-format library);
* ``models`` imports ``conformal`` and the leaf modules only; ``io`` imports the leaf modules
  only;
* the core never imports ``cli`` or ``ui``; ``cli`` never imports ``ui``;
* a private module (``_name``) is imported only from inside its own package;
* no import cycles between modules, counting the imports inside functions too (an import moved
  into a function to dodge a cycle is still a cycle) and the package ``__init__`` an import
  runs first.

``ALLOWED`` lists the known exceptions, each with the reason it still exists; remove an entry
when its edge is gone (the test fails on an entry that no longer matches anything).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "napari_consign"

#: Modules of the package root that import nothing of the package: every layer but
#: ``conformal`` may use them.
LEAVES = {"shipped", "radiological", "parallel", "synthetic"}

#: Third-party packages the Qt-free, file-free conformal core must not import.
CONFORMAL_FORBIDDEN = {
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "napari",
    "magicgui",
    "superqt",
    "SimpleITK",
    "pydicom",
    "nibabel",
}

#: (importer, imported) edges that break a rule and are waiting for a fix, each with why it is
#: still here. None are left: add one only with its reason.
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement of ``path``, anywhere in it.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else
    ``pkg``; relative imports are resolved against the module's package.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub if sub in MODULES else target, node.lineno))
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _internal(name: str) -> list[tuple[str, int]]:
    return [(t, line) for t, line in GRAPH[name] if t == PACKAGE or t.startswith(PACKAGE + ".")]


def _layer(name: str) -> str:
    rest = name.removeprefix(PACKAGE).lstrip(".")
    head = rest.split(".")[0]
    if head in ("conformal", "models", "io", "cli", "ui"):
        return head
    if head == "__main__":
        return "cli"
    if head in LEAVES:
        return "leaf"
    return "core"


#: The layers each layer may import.
MAY_IMPORT = {
    "conformal": {"conformal"},
    "leaf": set(),
    "models": {"conformal", "models", "leaf"},
    "io": {"io", "leaf"},
    "core": {"conformal", "models", "io", "leaf", "core"},
    "cli": {"conformal", "models", "io", "leaf", "core", "cli"},
    "ui": {"conformal", "models", "io", "leaf", "core", "cli", "ui"},
}


def _violations() -> list[str]:
    bad = []
    for name in MODULES:
        layer = _layer(name)
        for target, line in _internal(name):
            if target == PACKAGE:
                if name != PACKAGE:
                    bad.append(f"{name}:{line} imports the package root; import the module")
                continue
            if (name, target) in ALLOWED:
                continue
            if _layer(target) not in MAY_IMPORT[layer]:
                bad.append(f"{name}:{line} ({layer}) imports {target} ({_layer(target)})")
            private = target.rpartition(".")[2].startswith("_")
            owner = target.rpartition(".")[0]
            if private and not name.startswith(owner + ".") and name != owner:
                bad.append(f"{name}:{line} imports the private module {target}")
    return bad


def test_layers_import_only_downwards():
    assert _violations() == []


def test_conformal_imports_no_gui_or_file_format_library():
    bad = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if _layer(name) == "conformal"
        for target, line in GRAPH[name]
        if target.split(".")[0] in CONFORMAL_FORBIDDEN
    ]
    assert bad == []


def test_leaves_import_nothing_of_the_package():
    for leaf in LEAVES:
        assert _internal(f"{PACKAGE}.{leaf}") == [], leaf


def _runs(importer: str, target: str) -> set[str]:
    """What importing ``target`` from ``importer`` executes: ``target`` and every package
    ``__init__`` above it that is not already above ``importer`` (importing ``pkg.errors``
    first runs ``pkg/__init__.py``, and whatever that imports)."""
    out = {target}
    parts = target.split(".")
    for i in range(1, len(parts)):
        ancestor = ".".join(parts[:i])
        if not (importer == ancestor or importer.startswith(ancestor + ".")):
            out.add(ancestor)
    return out


def _package_edges() -> dict[str, list[str]]:
    return {
        n: sorted(
            {
                m
                for t, _ in _internal(n)
                if (n, t) not in ALLOWED
                for m in _runs(n, t)
                if m in MODULES
            }
        )
        for n in MODULES
    }


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    assert _cycles(_package_edges()) == []


@pytest.mark.parametrize("edge", sorted(ALLOWED))
def test_allowed_exceptions_still_exist(edge):
    """An exception whose edge is gone must be deleted from ALLOWED."""
    importer, imported = edge
    assert imported in {t for t, _ in _internal(importer)}, f"{edge} is fixed: remove it"


def test_the_checker_sees_function_level_imports_and_cycles():
    """The checker itself: an import inside a function counts, and a cycle is found."""
    assert "napari_consign.cases" in {t for t, _ in _internal("napari_consign.cli.scans")}
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []
