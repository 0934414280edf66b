"""One writer: the reconciler is the only code that writes to Consul, and the commands that only
look (`list`, `doctor`) hold a reader that has no write at all."""

from __future__ import annotations

import ast
from pathlib import Path

from registrator.consul.sink import ConsulReader, ConsulSink

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("register", "deregister", "maintenance", "update_check")
CONSUL_NAMES = {"self._consul", "self.consul", "consul", "sink", "self._sink"}  # what the package calls a Consul client


def test_the_reader_has_no_write_and_the_sink_has_them_all():
    assert [name for name in WRITES if hasattr(ConsulReader, name)] == []
    assert all(callable(getattr(ConsulSink, name)) for name in WRITES)


def test_only_the_reconciler_touches_a_consul_write():
    """Called, or handed on (`self._write(self._consul.register, spec)`)."""
    callers = set()
    for path in [*(ROOT / "registrator").rglob("*.py"), ROOT / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in WRITES and ast.unparse(node.value) in CONSUL_NAMES:
                callers.add(path.relative_to(ROOT).as_posix())
    assert callers == {"registrator/reconcile/reconciler.py"}


def test_the_commands_that_only_look_build_a_reader():
    commands = {node.name: ast.unparse(node) for node in ast.parse((ROOT / "cli.py").read_text()).body
                if isinstance(node, ast.FunctionDef)}
    for command in ("list_services", "doctor"):
        assert "ConsulReader(" in commands[command] and "ConsulSink" not in commands[command]
