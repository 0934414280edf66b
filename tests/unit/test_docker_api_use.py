"""The agent only reads from Docker: every Docker API call in the package is on a read-only allow-list."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "registrator"
READ_ONLY = {"inspect_container", "containers", "events", "info", "ping"}


def test_only_read_only_docker_api_calls():
    calls = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr == "api"):
                calls.add(node.func.attr)
    assert calls and calls <= READ_ONLY, calls - READ_ONLY
