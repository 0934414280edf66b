"""The hot calls' short paths (straight to the libraries' connection pools) read and write exactly
what the libraries' own paths do, against the real Docker engine and Consul agent (issue 13)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from types import MappingProxyType

import pytest

from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulSink
from registrator.docker.engine import Engine
from registrator.docker.snapshot import snapshot_from_inspect
from registrator.docker.source import DockerSource
from registrator.model import CheckKind, CheckSpec, ServiceSpec
from tests.integration.rig import ConsulAgent


def test_an_inspect_over_the_socket_reads_what_docker_py_reads(workload, docker_client):
    web = workload("http", env={"SERVICE_NAME": "web"}, labels={"team": "a"}, ports={80: None})
    container_id = web.get_wrapped_container().id
    source = DockerSource(timeout=10)

    assert Engine(timeout=10).socket_transport()
    assert source.inspect(container_id) == snapshot_from_inspect(docker_client.api.inspect_container(container_id))
    assert source.inspect("0" * 64) is None


@pytest.fixture
def engine_over_tcp() -> Iterator[str]:
    """The local engine's socket forwarded to a loopback TCP port, as DOCKER_HOST=tcp://… would reach an engine."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(source: socket.socket, target: socket.socket) -> None:
        with source, target:
            while data := source.recv(65536):
                target.sendall(data)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect("/var/run/docker.sock")
            for ends in ((client, engine), (engine, client)):
                threading.Thread(target=pipe, args=ends, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_an_engine_over_tcp_is_inspected_through_docker_py(workload, engine_over_tcp, monkeypatch):
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    container_id = web.get_wrapped_container().id
    over_socket = DockerSource(timeout=10).inspect(container_id)
    monkeypatch.setenv("DOCKER_HOST", engine_over_tcp)
    source = DockerSource(timeout=10)

    assert not Engine(timeout=10).socket_transport()
    assert source.inspect(container_id) == over_socket
    assert source.inspect("0" * 64) is None


SPEC = ServiceSpec(
    id="transport:web:80", name="transport-web", address="10.0.0.1", port=80, tags=("a", "b"),
    meta=MappingProxyType({"registrator-host": "transport"}),
    checks=(CheckSpec(check_id="service:transport:web:80", kind=CheckKind.TTL, name="ttl", ttl="30s"),),
)


def _endpoint(consul: ConsulAgent, via: str) -> ConsulEndpoint:
    if via == "unix":
        return ConsulEndpoint(socket=str(consul.socket))
    if via == "https":
        return ConsulEndpoint(scheme="https", port=consul.https_port, verify=consul.tls_file("ca"),
                              cert=(consul.tls_file("client-cert"), consul.tls_file("client-key")))
    return ConsulEndpoint(port=consul.http_port)


@pytest.mark.parametrize("via", ["http", "unix", "https"])
def test_writes_land_the_same_whichever_path_they_take(consul, via):
    sink = ConsulSink(_endpoint(consul, via))
    assert (sink._write_pool() is None) == (via == "https")  # HTTPS keeps the library's whole path

    sink.register(SPEC)
    registered = consul.services()[SPEC.id]
    assert (registered["Service"], registered["Port"], registered["Tags"], registered["Meta"]) == (
        "transport-web", 80, ["a", "b"], {"registrator-host": "transport"})

    sink.update_check("service:transport:web:80", "passing", "fine")
    sink.maintenance(SPEC.id, True, "stopping")
    checks = json.loads(consul.get("/v1/agent/checks"))
    assert (checks["service:transport:web:80"]["Status"], checks["service:transport:web:80"]["Output"]) == ("passing", "fine")
    assert checks[f"_service_maintenance:{SPEC.id}"]["Notes"] == "stopping"

    sink.deregister(SPEC.id)
    sink.deregister(SPEC.id)  # an unknown service counts as removed
    assert SPEC.id not in consul.services()
