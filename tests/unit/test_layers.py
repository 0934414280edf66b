"""Imports only point down: cli → ops → startup → reconcile → config → the edges (consul, docker,
mapping, hostip) → the retry helpers → what every layer shares (the model, the runtime, metrics,
errors, the unix-socket transport). The edges never import each other; no module imports one that imports it."""

from __future__ import annotations

import ast
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = (  # lowest first; a unit may import its own package and the units of lower layers
    {"registrator", "registrator.model", "registrator.runtime", "registrator.metrics", "registrator.errors",
     "registrator.unix_socket"},
    {"registrator.retrying"},
    {"registrator.consul", "registrator.docker", "registrator.mapping", "registrator.hostip"},
    {"registrator.config"},
    {"registrator.reconcile"},
    {"registrator.startup"},
    {"registrator.ops"},
    {"cli"},
)


@cache
def modules() -> dict[str, Path]:
    found = {"cli": ROOT / "cli.py"}
    for path in (ROOT / "registrator").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path) -> set[str]:
    """Every module of ours the file imports, wherever the import is (functions, TYPE_CHECKING)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in modules()}


def unit(module: str) -> str:
    """The layered unit a module belongs to: its package under registrator/, or itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def layer(module: str) -> int:
    return next(number for number, units in enumerate(LAYERS) if unit(module) in units)


def test_every_module_is_in_a_layer():
    assert [name for name in modules() if not any(unit(name) in units for units in LAYERS)] == []


def test_imports_point_down_or_stay_inside_their_package():
    upward = [f"{name} → {target}" for name, path in sorted(modules().items()) for target in sorted(imported(path))
              if unit(target) != unit(name) and layer(target) >= layer(name)]
    assert upward == []


def test_no_module_imports_one_that_imports_it():
    graph = {name: imported(path) - {name} for name, path in modules().items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as cycle:
        raise AssertionError(f"import cycle: {' → '.join(cycle.args[1])}") from None
