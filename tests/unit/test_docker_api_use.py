"""The agent only reads from Docker: `docker/engine.py` is the one module that holds docker-py's
client, and every call it makes through it is on the read-only list."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from registrator.docker import engine
from registrator.docker.engine import READ_ONLY, Engine, NotReadOnly

PACKAGE = Path(__file__).resolve().parents[2] / "registrator"
ENGINE = PACKAGE / "docker" / "engine.py"


def test_the_read_only_list_is_the_agents_and_docker_reads_only():
    assert set(READ_ONLY) == {"inspect_container", "containers", "events", "info", "ping"}


def test_only_the_engine_module_imports_docker_pys_client():
    importers = set()
    for path in [*PACKAGE.rglob("*.py"), PACKAGE.parent / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "docker" or name.startswith("docker.") for name in names):
                importers.add(path.relative_to(PACKAGE.parent).as_posix())
    # unix_socket.py takes docker-py's socket transport (an HTTP adapter: no engine API in it)
    assert importers == {"registrator/docker/engine.py", "registrator/unix_socket.py"}
    assert "APIClient" not in (PACKAGE / "unix_socket.py").read_text()


def test_the_engine_module_calls_the_client_only_through_the_read_only_door():
    """Every method call on docker-py's client in engine.py: `call` (checked against READ_ONLY at
    run time), and what building the client and the inspect's URL take."""
    called = set()
    for node in ast.walk(ast.parse(ENGINE.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                and node.func.value.id == "client":
            called.add(node.func.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and "_connected" in ast.unparse(node):
            assert ast.unparse(node) == "getattr(self._connected(), method)"
    assert called == {"mount", "_url", "close"}


def test_a_call_off_the_list_never_reaches_the_engine(monkeypatch):
    monkeypatch.setattr(engine, "_connect", lambda timeout: pytest.fail("connected"))
    for method in ("remove_container", "kill", "exec_create", "__class__"):
        with pytest.raises(NotReadOnly, match=f"docker {method}: not a read-only call"):
            Engine(timeout=1).call("x", method)


def test_connecting_holds_no_lock_while_the_engine_answers(monkeypatch):
    """Connecting asks the engine for its API version: two threads that need the engine both ask,
    rather than one waiting on a lock for the other's answer."""
    both_asking = threading.Barrier(2, timeout=5)

    class Client:
        api_version = "1.41"
        closed = 0

        def close(self) -> None:
            Client.closed += 1

    def connect(timeout: float) -> Client:
        both_asking.wait()
        return Client()

    monkeypatch.setattr(engine, "_connect", connect)
    shared = Engine(timeout=1)
    versions: list[str] = []
    threads = [threading.Thread(target=lambda: versions.append(shared.api_version())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert versions == ["1.41", "1.41"] and Client.closed == 1
