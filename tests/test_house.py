"""The house of DESIGN.md, checked: arrows point one way, rooms stay small, modules say why.

Each rule here is one a reviewer would otherwise have to re-check by hand on every change:
which top-level package may import which (function-local imports included), no module of
the product over 400 lines and no function over 60, a docstring at the top of every module,
and no import circle inside the SDK.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("keys", "pm_plugin", "loader", "host", "index", "registry_client", "dashboard", "cli")
OURS = set(PRODUCT)
#: Packages that are not at the top of the repository: the SDK is a distribution of its own.
WHERE = {"pm_plugin": ROOT / "sdk"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: What each package may import of ours, and third-party roots it must not import.
MAY_IMPORT: dict[str, set[str]] = {
    "keys": set(),
    "pm_plugin": set(),
    "loader": {"keys"},
    "host": {"keys", "loader", "pm_plugin"},
    "index": {"keys", "loader"},
    "registry_client": {"keys", "loader", "index"},
    "dashboard": {"keys", "loader", "host", "registry_client", "index"},
    "cli": OURS - {"cli"},
}
#: click is the top floor's alone; the loader decides offline (no gRPC, no network client).
MUST_NOT_IMPORT: dict[str, set[str]] = {
    "keys": {"click", "grpc", "requests"},
    "pm_plugin": {"click", "requests"},
    "loader": {"click", "grpc", "grpc_health", "requests", "urllib", "http"},
    "host": {"click", "requests"},
    "index": {"click", "grpc"},
    "registry_client": {"click", "grpc"},
    "dashboard": {"click", "grpc"},
    "cli": set(),
}


def modules(package: str) -> Iterator[Path]:
    for path in sorted((WHERE.get(package, ROOT) / package).rglob("*.py")):
        if "wire" not in path.relative_to(ROOT).parts:
            yield path


def imported_roots(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, top-level package, full module) of every import in `path`, nested ones too."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0], alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0], node.module


@pytest.mark.parametrize("package", PRODUCT)
def test_arrows_point_one_way(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in modules(package)
        for line, root, module in imported_roots(path)
        if (root in OURS and root != package and root not in MAY_IMPORT[package])
        or root in MUST_NOT_IMPORT[package]
    ]
    assert wrong == []


@pytest.mark.parametrize("package", PRODUCT)
def test_rooms_stay_small(package: str) -> None:
    too_big = []
    for path in modules(package):
        text = path.read_text()
        name = path.relative_to(ROOT)
        if text.count("\n") > MAX_MODULE_LINES:
            too_big.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_big.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert too_big == []


@pytest.mark.parametrize("package", PRODUCT)
def test_every_module_says_why_it_exists(package: str) -> None:
    silent = [
        str(path.relative_to(ROOT))
        for path in modules(package)
        if path.name != "__main__.py" and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert silent == []


def test_the_sdk_has_no_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    for path in modules("pm_plugin"):
        parts = path.relative_to(WHERE["pm_plugin"]).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = {
            module
            for _, root, module in imported_roots(path)
            if root == "pm_plugin" and not module.startswith("pm_plugin.wire")
        }
    for name, needs in graph.items():
        # `from pm_plugin import x` inside the package names the package, not a module
        graph[name] = {n for n in needs if n in graph and n != "pm_plugin"} - {name}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from host import runtime\n    import click\n")
    assert [(r, m) for _, r, m in imported_roots(bad)] == [
        ("host", "host"),
        ("click", "click"),
    ]
