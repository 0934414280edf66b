"""The core (snapshot, metadata, mapping, diff, model) stays free of I/O so it can be tested as data."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "registrator"
IO_MODULES = {"docker", "requests", "consul", "socket", "time", "subprocess", "urllib", "http", "threading", "logging"}


@pytest.mark.parametrize("module", ["model", "snapshot", "metadata", "mapping", "diff", "addressing", "checks", "template"])
def test_pure_modules_import_no_io(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported.isdisjoint(IO_MODULES)
