from __future__ import annotations

import os
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

import pytest
import requests

from registrator.config import ConsulEndpoint
from registrator.consul.sink import ConsulError, ConsulSink, path_segment, service_from_agent, service_payload
from registrator.model import ServiceSpec


def test_a_registered_payload_reads_back_as_the_same_spec():
    spec = ServiceSpec(id="h:web:80", name="web", address="10.0.0.5", port=1, tags=("a", "b"), meta=MappingProxyType({"k": "v"}))
    agent_entry = {**{"Service": spec.name}, **service_payload(spec), "Weights": {"Passing": 1, "Warning": 1}}
    assert service_from_agent(agent_entry) == spec


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


@pytest.mark.parametrize("service_id", ["h:web:80", "a b?c#d%2F", "x\\..\\victim", "..victim", "%2e%2e", "service:h:web:80:docker-health"])
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
