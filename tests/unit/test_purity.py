"""The mapping (and the values it reads and returns) stays free of I/O, so it can be tested as data."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "registrator"
IO_MODULES = {"docker", "requests", "consul", "socket", "time", "subprocess", "urllib", "http", "threading", "logging", "os"}
PURE = sorted([*(PACKAGE / "mapping").glob("*.py"), PACKAGE / "model.py", PACKAGE / "docker" / "snapshot.py",
               PACKAGE / "reconcile" / "diff.py"])
PURE_PACKAGES = ("registrator.mapping", "registrator.model")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_the_whole_mapping_package_is_covered():
    assert {p.name for p in PURE if p.parent.name == "mapping"} >= {"services.py", "checks.py", "addressing.py", "metadata.py",
                                                                    "template.py"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_import_no_io_and_nothing_of_the_package_that_does(path):
    imported = imports(path)
    assert {name.split(".")[0] for name in imported}.isdisjoint(IO_MODULES)
    assert all(name.startswith(PURE_PACKAGES) for name in imported if name.startswith("registrator"))
