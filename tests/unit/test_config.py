from __future__ import annotations

import pytest

from registrator.config import ConfigError, consul_endpoint, parse_consul_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8500", ("http", "127.0.0.1", 8500)),
        ("consul.local", ("http", "consul.local", 8500)),
        ("https://consul.local:8501", ("https", "consul.local", 8501)),
        ("http://127.0.0.1:8500/", ("http", "127.0.0.1", 8500)),
        ("[::1]:8500", ("http", "::1", 8500)),
    ],
)
def test_consul_addresses(text, expected):
    assert parse_consul_address(text, "CONSUL_HTTP_ADDR") == expected


@pytest.mark.parametrize("text", ["ftp://x:1", "host:notaport", "host:8500/path", ":8500"])
def test_bad_consul_addresses_name_their_source(text):
    with pytest.raises(ConfigError, match="CONSUL_HTTP_ADDR"):
        parse_consul_address(text, "CONSUL_HTTP_ADDR")


def test_registry_uri_wins_over_the_environment():
    endpoint = consul_endpoint("consul://10.0.0.1:8600", env={"CONSUL_HTTP_ADDR": "10.0.0.2:8500"})
    assert endpoint.url == "http://10.0.0.1:8600"


def test_environment_is_used_when_the_uri_has_no_host():
    assert consul_endpoint("consul://", env={"CONSUL_HTTP_ADDR": "10.0.0.2:8500"}).url == "http://10.0.0.2:8500"
    assert consul_endpoint(None, env={"CONSUL_HTTP_ADDR": "10.0.0.2:8500"}).url == "http://10.0.0.2:8500"
    assert consul_endpoint(None, env={}).url == "http://127.0.0.1:8500"


def test_ssl_variable_and_token():
    endpoint = consul_endpoint(None, env={"CONSUL_HTTP_SSL": "true", "CONSUL_HTTP_TOKEN": "s3cret"})
    assert endpoint.scheme == "https"
    assert endpoint.token == "s3cret"
    assert "s3cret" not in repr(endpoint)


def test_other_backends_are_refused_clearly():
    with pytest.raises(ConfigError, match="'etcd' is not supported"):
        consul_endpoint("etcd://127.0.0.1:2379", env={})
