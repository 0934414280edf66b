from __future__ import annotations

import json

import pytest

from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import ContainerEvent, DockerSource, container_event
from tests.unit.http_stub import serving


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"Type": "container", "Action": "start", "Actor": {"ID": "c1"}, "timeNano": 5},
         ContainerEvent("c1", "start", 5)),
        ({"Type": "container", "Action": "health_status: healthy", "Actor": {"ID": "c1"}},
         ContainerEvent("c1", "health_status: healthy", 0)),
        ({"Type": "network", "Action": "connect", "Actor": {"ID": "n1", "Attributes": {"container": "c2"}}, "timeNano": 7},
         ContainerEvent("c2", "connect", 7)),
        ({"Type": "container", "Action": "exec_start: wget", "Actor": {"ID": "c1"}}, None),
        ({"Type": "network", "Action": "create", "Actor": {"ID": "n1", "Attributes": {}}}, None),
        ({}, None),
    ],
    ids=["start", "health", "network-connect", "exec-noise", "network-without-container", "empty"],
)
def test_events_point_at_a_container(raw, expected):
    assert container_event(raw) == expected


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """A stub engine on a unix socket, found the way the agent finds Docker (DOCKER_HOST)."""
    socket_path = str(tmp_path / "docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    with serving(socket_path) as stub:
        stub.answer("/version", 200, json.dumps({"ApiVersion": "1.41"}).encode())
        yield stub


def test_an_inspect_over_the_socket_reads_the_container(engine):
    engine.answer("/v1.41/containers/abc/json", 200,
                  json.dumps({"Id": "abc", "Name": "/web", "State": {"Running": True}}).encode())
    snapshot = DockerSource(timeout=2).inspect("abc")
    assert snapshot is not None and (snapshot.id, snapshot.name, snapshot.running) == ("abc", "web", True)
    assert [seen.path for seen in engine.seen][-1] == "/v1.41/containers/abc/json"


def test_a_container_docker_does_not_know_is_gone(engine):
    assert DockerSource(timeout=2).inspect("gone") is None


@pytest.mark.parametrize(("status", "body"), [(500, b"boom"), (200, b"<html>"), (200, b"[1]")],
                         ids=["server-error", "not-json", "not-an-object"])
def test_an_engine_answering_otherwise_is_unavailable(engine, status, body):
    engine.answer("/v1.41/containers/abc/json", status, body)
    with pytest.raises(DockerUnavailable, match="docker inspect abc"):
        DockerSource(timeout=2).inspect("abc")


def test_an_engine_that_is_not_there_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    source = DockerSource(timeout=2)
    with pytest.raises(DockerUnavailable):
        source.inspect("abc")


@pytest.mark.parametrize("reference", ["", "..", "../../version", "a/b", "/web", "web?x=1", "-web"])
def test_what_is_no_container_name_or_id_is_no_container_and_never_reaches_the_engine(engine, reference):
    source = DockerSource(timeout=2)
    asked = len(engine.seen)
    assert source.inspect(reference) is None
    assert engine.seen[asked:] == []


def test_an_engine_address_that_is_a_regular_file_says_so(tmp_path, monkeypatch):
    """It said "Connection refused" (issue 21)."""
    regular = tmp_path / "hostname"
    regular.write_text("not a socket\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{regular}")
    with pytest.raises(DockerUnavailable) as raised:
        DockerSource(timeout=2).ping()
    assert str(raised.value) == f"cannot connect to Docker at unix://{regular}: {regular} is not a socket"


@pytest.mark.parametrize(("call", "path", "what"), [
    (lambda source: source.running(), "/v1.41/containers/json", "docker ps"),
    (lambda source: source.daemon_name(), "/v1.41/info", "docker info"),
    (lambda source: source.advertised_address(), "/v1.41/info", "docker info"),
    (lambda source: source.ping(), "/v1.41/_ping", "docker ping"),
    (lambda source: source.events(None), "/v1.41/events", "docker events"),
], ids=["ps", "info", "swarm", "ping", "events"])
def test_every_call_an_engine_fails_is_unavailable_naming_the_call(engine, call, path, what):
    engine.answer(path, 500, b'{"message": "boom"}')
    with pytest.raises(DockerUnavailable, match=f"^{what}: (500 Server Error|HTTP 500).*boom"):
        call(DockerSource(timeout=2))
