from __future__ import annotations

import json
import os
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

import pytest
import requests

from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulError, ConsulSink, check_payload, path_segment, service_from_agent, service_payload
from registrator.model import CheckKind, CheckSpec, ServiceSpec
from tests.unit.http_stub import Stub, serving

CID = "c" * 64


def test_a_registered_payload_reads_back_as_the_same_spec():
    spec = ServiceSpec(id="h:web:80", name="web", address="10.0.0.5", port=1, tags=("a", "b"), meta=MappingProxyType({"k": "v"}))
    agent_entry = {**{"Service": spec.name}, **service_payload(spec), "Weights": {"Passing": 1, "Warning": 1}}
    assert service_from_agent(agent_entry) == spec


@pytest.mark.parametrize(
    ("check", "payload"),
    [
        (CheckSpec("c", CheckKind.HTTP, "HTTP check", target="http://10.0.0.5:80/h", interval="10s", method="HEAD",
                   headers=(("Authorization", ("Bearer x",)), ("X-A", ("1", "2")))),
         {"Name": "HTTP check", "HTTP": "http://10.0.0.5:80/h", "Method": "HEAD",
          "Header": {"Authorization": ["Bearer x"], "X-A": ["1", "2"]},
          "Interval": "10s"}),
        (CheckSpec("c", CheckKind.HTTPS, "HTTPS check", target="https://10.0.0.5:80/h", interval="10s", timeout="2s",
                   tls_skip_verify=False,
                   tls_server_name="web.internal"),
         {"Name": "HTTPS check", "HTTP": "https://10.0.0.5:80/h", "TLSSkipVerify": False, "TLSServerName": "web.internal",
          "Interval": "10s",
          "Timeout": "2s"}),
        (CheckSpec("c", CheckKind.TCP, "TCP check", target="10.0.0.5:80", interval="10s"),
         {"Name": "TCP check", "TCP": "10.0.0.5:80", "Interval": "10s"}),
        (CheckSpec("c", CheckKind.UDP, "UDP check", target="[2001:db8::5]:53", interval="5s"),
         {"Name": "UDP check", "UDP": "[2001:db8::5]:53", "Interval": "5s"}),
        (CheckSpec("c", CheckKind.GRPC, "GRPC check", target="10.0.0.5:80", interval="10s"),
         {"Name": "GRPC check", "GRPC": "10.0.0.5:80", "GRPCUseTLS": False, "Interval": "10s"}),
        (CheckSpec("c", CheckKind.GRPC, "GRPC check", target="10.0.0.5:80/my.Service", interval="10s", grpc_use_tls=True,
                   tls_skip_verify=True),
         {"Name": "GRPC check", "GRPC": "10.0.0.5:80/my.Service", "GRPCUseTLS": True, "TLSSkipVerify": True, "Interval": "10s"}),
        (CheckSpec("c", CheckKind.TTL, "TTL check", ttl="30s"), {"Name": "TTL check", "TTL": "30s"}),
        (CheckSpec("c", CheckKind.SCRIPT, "SCRIPT check", args=("sh", "-c", "nc -z 10.0.0.5 80"), interval="10s"),
         {"Name": "SCRIPT check", "Args": ["sh", "-c", "nc -z 10.0.0.5 80"], "Interval": "10s"}),
        (CheckSpec("c", CheckKind.DOCKER, "DOCKER check", docker_container_id=CID, args=("/probe", "check"), interval="10s"),
         {"Name": "DOCKER check", "DockerContainerID": CID, "Args": ["/probe", "check"], "Interval": "10s"}),
        (CheckSpec("c", CheckKind.DOCKER_HEALTH, "Docker HEALTHCHECK", ttl="90s", initial_status="critical", notes="mirrors it"),
         {"Name": "Docker HEALTHCHECK", "TTL": "90s", "Status": "critical", "Notes": "mirrors it"}),
        (CheckSpec("c", CheckKind.TCP, "TCP check", target="10.0.0.5:80", interval="10s", initial_status="passing",
                   deregister_critical_after="90m", success_before_passing=0, failures_before_critical=3, notes="n"),
         {"Name": "TCP check", "TCP": "10.0.0.5:80", "Interval": "10s", "Status": "passing",
          "DeregisterCriticalServiceAfter": "90m",
          "SuccessBeforePassing": 0, "FailuresBeforeCritical": 3, "Notes": "n"}),
    ],
    ids=["http", "https", "tcp", "udp", "grpc", "grpc-tls", "ttl", "script", "docker", "docker-health", "common-settings"],
)
def test_check_payload_is_consuls_json_for_each_kind(check, payload):
    assert check_payload(check) == payload


def test_a_registration_carries_its_checks_under_their_ids():
    checks = (CheckSpec("service:h:web:80", CheckKind.TCP, "TCP check", target="10.0.0.5:80", interval="10s"),
              CheckSpec("service:h:web:80#docker-health", CheckKind.DOCKER_HEALTH, "Docker HEALTHCHECK", ttl="90s",
                        initial_status="critical"))
    spec = ServiceSpec(id="h:web:80", name="web", address="10.0.0.5", port=80, checks=checks)
    assert service_payload(spec)["Checks"] == [
        {"CheckID": "service:h:web:80", "Name": "TCP check", "TCP": "10.0.0.5:80", "Interval": "10s"},
        {"CheckID": "service:h:web:80#docker-health", "Name": "Docker HEALTHCHECK", "TTL": "90s", "Status": "critical"},
    ]


def test_agent_entries_with_null_fields_normalise():
    assert service_from_agent({"ID": "x", "Service": "x", "Tags": None, "Meta": None}) == ServiceSpec("x", "x", "", 0)


def test_library_environment_cannot_override_the_resolved_endpoint(monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "[::1]:8500")  # python-consul2 alone would raise on this
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    sink = ConsulSink(ConsulEndpoint(host="10.0.0.1", port=8501, token="explicit", timeout=2.5))

    assert sink._client.http.base_uri == "http://10.0.0.1:8501"
    assert sink._client.http.timeout == 2.5
    assert sink._client.token == "explicit"
    assert sink._headers() == {"X-Consul-Token": "explicit"}
    assert os.environ["CONSUL_HTTP_ADDR"] == "[::1]:8500"


@pytest.mark.parametrize("service_id",
                         ["h:web:80", "a b?c#d%2F", "x\\..\\victim", "..victim", "%2e%2e", "service:h:web:80#docker-health"])
def test_the_request_sent_names_exactly_the_id(service_id):
    sink = ConsulSink(ConsulEndpoint(host="127.0.0.1", port=8500))
    uri = sink._client.http.uri(f"/v1/agent/service/deregister/{path_segment(service_id)}")
    sent = requests.Request("PUT", uri).prepare().url or ""
    assert unquote(urlsplit(sent).path.removeprefix("/v1/agent/service/deregister/")) == service_id


@pytest.mark.parametrize("service_id", ["x/../victim", "../victim", "..", ".", "", "a/b"])
def test_ids_that_no_escaping_keeps_in_one_segment_are_refused(service_id):
    with pytest.raises(ConsulError, match="refusing to send ID"):
        path_segment(service_id)


def test_the_consul_client_never_follows_a_redirect():
    assert ConsulSink(ConsulEndpoint())._client.http.session.max_redirects == 0


def _sink(stub: Stub, **endpoint: object) -> ConsulSink:
    host, port = stub.address.rsplit(":", 1)
    return ConsulSink(ConsulEndpoint(host=host.strip("[]"), port=int(port), timeout=2, **endpoint))  # type: ignore[arg-type]


SPEC = ServiceSpec(id="h:web:80", name="web", address="10.0.0.1", port=80, tags=("a",),
                   meta=MappingProxyType({"registrator-host": "h"}))


@pytest.mark.parametrize("service_id",
                         ["h:web:80", "a b?c#d%2F", "x\\..\\victim", "..victim", "%2e%2e", "service:h:web:80#docker-health"])
def test_a_write_over_plain_http_names_exactly_the_id_on_the_wire(service_id):
    with serving() as stub:
        stub.answer("/v1/agent/service/deregister/", 200)
        _sink(stub).deregister(service_id)
    (seen,) = stub.seen
    assert (seen.method, unquote(seen.path.removeprefix("/v1/agent/service/deregister/"))) == ("PUT", service_id)


def test_a_registration_sends_the_payload_the_token_and_replace_existing_checks():
    with serving() as stub:
        stub.answer("/v1/agent/service/register", 200)
        _sink(stub, token="secret").register(SPEC)
    (seen,) = stub.seen
    assert seen.path == "/v1/agent/service/register?replace-existing-checks=true"
    assert seen.headers["X-Consul-Token"] == "secret"
    assert json.loads(seen.body) == service_payload(SPEC)


@pytest.mark.parametrize(("call", "path"),
                         [("deregister", "/v1/agent/service/deregister/"), ("has_service", "/v1/agent/service/")],
                         ids=["write", "read"])
def test_a_redirect_is_a_permanent_error_and_is_not_followed(call, path):
    with serving() as stub:
        stub.answer(path, 301, Location=f"{path}victim")
        with pytest.raises(ConsulError, match="redirect") as raised:
            getattr(_sink(stub), call)("x")
    assert [seen.path for seen in stub.seen] == [f"{path}x"]
    assert not raised.value.transient


@pytest.mark.parametrize(("status", "transient"), [(400, False), (403, False), (500, True)])
def test_a_refused_write_keeps_the_library_meaning_of_its_status(status, transient):
    with serving() as stub:
        stub.answer("/v1/agent/service/register", status, b"no")
        with pytest.raises(ConsulError) as raised:
            _sink(stub).register(SPEC)
    assert raised.value.transient is transient


def test_a_service_is_read_as_the_listing_shows_it_and_an_unknown_one_is_none():
    entry = {"ID": SPEC.id, "Service": SPEC.name, "Address": SPEC.address, "Port": SPEC.port, "Tags": list(SPEC.tags),
             "Meta": dict(SPEC.meta), "ContentHash": "4a2", "Weights": {"Passing": 1, "Warning": 1}}
    with serving() as stub:
        stub.answer("/v1/agent/service/h:web:80", 200, json.dumps(entry).encode())
        stub.answer("/v1/agent/service/gone", 404, b"unknown service ID: gone")
        sink = _sink(stub)
        assert (sink.service("h:web:80"), sink.service("gone")) == (SPEC, None)


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b'{"ID": "another"}', b"[]"])
def test_a_service_answer_that_is_not_the_service_asked_for_is_a_transient_error(body):
    with serving() as stub:
        stub.answer("/v1/agent/service/", 200, body)
        with pytest.raises(ConsulError) as raised:
            _sink(stub).service("h:web:80")
    assert raised.value.transient


def test_deregistering_an_unknown_service_counts_as_done():
    with serving() as stub:
        stub.answer("/v1/agent/service/deregister/", 404, b"Unknown service ID")
        _sink(stub).deregister("gone")
    assert len(stub.seen) == 1


def test_a_write_to_a_consul_that_is_not_there_is_transient():
    with serving() as stub:
        sink = _sink(stub)
    with pytest.raises(ConsulError) as raised:
        sink.update_check("service:x", "passing", "")
    assert raised.value.transient


def test_writes_over_the_unix_socket_take_the_same_path(tmp_path):
    socket_path = str(tmp_path / "consul.sock")
    with serving(socket_path) as stub:
        stub.answer("/v1/agent/service/maintenance/", 200)
        ConsulSink(ConsulEndpoint(socket=socket_path, timeout=2)).maintenance("h:web:80", True, "stopping")
    (seen,) = stub.seen
    assert seen.path == "/v1/agent/service/maintenance/h:web:80?enable=true&reason=stopping"


def test_https_writes_stay_on_the_library_path_where_tls_is_configured():
    assert ConsulSink(ConsulEndpoint(scheme="https"))._write_pool() is None


def test_a_consul_agent_on_an_ipv6_address_is_reached_for_reads_and_writes():
    with serving(host="::1") as stub:
        stub.answer("/v1/agent/service/register", 200)
        stub.answer("/v1/status/leader", 200, b'"[::1]:8300"')
        sink = _sink(stub)
        sink.register(SPEC)
        assert sink.leader() == "[::1]:8300"
    assert [seen.path for seen in stub.seen] == ["/v1/agent/service/register?replace-existing-checks=true", "/v1/status/leader"]


@pytest.mark.parametrize("answer",
                         [(200, b"<html>It works!</html>", "the answer is not JSON"), (404, b"<html>Not found</html>", ""),
                                    (200, b'[["not", "Consul"]]', "")], ids=["html", "not-found", "other-json"])
@pytest.mark.parametrize("call",
                         ["leader", "services", "service_health", "catalog", "check_states", "runs_script_checks", "version"])
def test_something_else_on_the_consul_port_is_a_transient_error_naming_the_call(call, answer):
    """A proxy's error page, or another program on the port: one line per retry, never a traceback (issue 21)."""
    status, body, reason = answer
    with serving() as stub:
        stub.answer("/", status, body)
        with pytest.raises(ConsulError) as raised:
            getattr(_sink(stub), call)()
    assert raised.value.transient and reason in str(raised.value)


def test_a_token_consul_does_not_know_is_a_transient_error_and_its_file_is_read_again(tmp_path):
    """Written to the token file after boot, rotated by a secrets agent, not replicated yet (issue 21):
    the agent keeps trying, with the token its file holds now, and never prints it."""
    token_file = tmp_path / "token"
    token_file.write_text("old-secret\n")
    with serving() as stub:
        stub.answer("/v1/agent/services", 403, b"ACL not found")
        sink = _sink(stub, token="old-secret", token_file=str(token_file))
        with pytest.raises(ConsulError) as unknown:
            sink.services()
        token_file.write_text("new-secret\n")
        with pytest.raises(ConsulError) as again:
            sink.services()
        stub.answer("/v1/agent/services", 200, b"{}")
        assert sink.services() == {}
    assert (unknown.value.transient, again.value.transient) == (True, True)
    assert str(unknown.value) == "Consul agent/services: the ACL token is not known to Consul (yet): ACL not found"
    assert str(again.value) == ("Consul agent/services: the ACL token is not known to Consul (yet); read again from its file: "
                                "ACL not found")
    assert [seen.headers.get("X-Consul-Token") for seen in stub.seen] == ["old-secret", "old-secret", "new-secret"]


def test_a_token_consul_knows_without_the_right_fails_at_once():
    with serving() as stub:
        stub.answer("/v1/agent/services", 403, b"Permission denied: token with AccessorID 'x' lacks permission 'service:read'")
        with pytest.raises(ConsulError) as denied:
            _sink(stub, token="t").services()
    assert not denied.value.transient and "lacks permission 'service:read'" in str(denied.value)


def test_the_agents_configuration_read_with_an_unknown_token_is_no_missing_right():
    with serving() as stub:
        stub.answer("/v1/agent/self", 403, b"ACL not found")
        with pytest.raises(ConsulError) as unknown:
            _sink(stub, token="t").runs_script_checks()
    assert unknown.value.transient
