from __future__ import annotations

import re

import pytest

from registrator.config import parse_meta_options
from registrator.consul.endpoint import consul_endpoint, parse_consul_address
from registrator.errors import ConfigError


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


@pytest.mark.parametrize("scheme", ["etcd", "zookeeper", "skydns2", "consulkv", "consulkv-unix"])
def test_other_backends_are_refused_clearly(scheme):
    with pytest.raises(ConfigError, match=f"the {scheme} backend is not supported"):
        consul_endpoint(f"{scheme}://127.0.0.1:2379/prefix", env={})


def test_unknown_uri_is_an_error():
    with pytest.raises(ConfigError, match="expected consul://"):
        consul_endpoint("127.0.0.1:8500", env={})


def test_registrator_bare_scheme_uses_the_environment():
    assert consul_endpoint("consul:", env={"CONSUL_HTTP_ADDR": "10.0.0.2:8501"}).url == "http://10.0.0.2:8501"


def test_consul_tls_uses_https_and_the_certificate_variables(tmp_path):
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("x")
    env = {"CONSUL_CACERT": str(ca), "CONSUL_CLIENT_CERT": str(cert), "CONSUL_CLIENT_KEY": str(key)}
    endpoint = consul_endpoint("consul-tls://consul.local:8501", env=env)
    assert (endpoint.url, endpoint.verify, endpoint.cert) == ("https://consul.local:8501", str(ca), (str(cert), str(key)))


def test_missing_certificate_files_are_named():
    with pytest.raises(ConfigError, match="CONSUL_CACERT=/nope: no such file"):
        consul_endpoint("consul-tls://h:8501", env={"CONSUL_CACERT": "/nope"})
    with pytest.raises(ConfigError, match="set together"):
        consul_endpoint("consul-tls://h:8501", env={"CONSUL_CLIENT_CERT": "/etc/hostname"})


def test_ssl_verify_can_be_turned_off():
    assert consul_endpoint(None, env={"CONSUL_HTTP_SSL_VERIFY": "false"}).verify is False


def test_consul_unix_socket():
    assert consul_endpoint("consul-unix:///run/consul.sock", env={}).socket == "/run/consul.sock"
    assert consul_endpoint(None, env={"CONSUL_HTTP_ADDR": "unix:///run/c.sock"}).url == "unix:///run/c.sock"
    with pytest.raises(ConfigError, match="absolute"):
        consul_endpoint("consul-unix://relative.sock", env={})


def test_token_file_is_read_when_no_token_is_set(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)}).token == "from-file"
    assert consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file), "CONSUL_HTTP_TOKEN": "t"}).token == "t"
    with pytest.raises(ConfigError, match="CONSUL_HTTP_TOKEN_FILE=/nope"):
        consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": "/nope"})


@pytest.mark.parametrize(("pair", "problem"),
                         [("novalue", "expected key=value"), ("a.b=1", "only letters"), ("consul-x=1", "reserved"),
                                               ("team\n=web", "only letters")])
def test_global_meta_is_validated_at_startup(pair, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_meta_options([pair])


def test_global_meta():
    assert parse_meta_options(["team=web", "env=a=b"]) == {"team": "web", "env": "a=b"}


def test_global_meta_values_longer_than_512_are_refused_naming_the_key_with_the_value_cut():
    with pytest.raises(ConfigError) as raised:
        parse_meta_options(["team=" + "x" * 513])
    assert str(raised.value) == "--meta 'team=xxxxxxxxxxxxxxxxxxxx…': value longer than 512 characters"
    assert parse_meta_options(["team=" + "x" * 512]) == {"team": "x" * 512}


def test_a_token_file_that_is_not_utf8_is_a_config_error_naming_the_variable_and_path(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe-not-utf8\n")
    with pytest.raises(ConfigError) as raised:
        consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})
    assert str(raised.value) == f"CONSUL_HTTP_TOKEN_FILE={token_file}: not UTF-8 text"


@pytest.mark.parametrize("text", ["127.0.0.1:0", "consul.local:0", "[::1]:0", "http://127.0.0.1:0/"])
def test_port_zero_is_refused_not_replaced_by_the_default(text):
    with pytest.raises(ConfigError, match=re.escape(f"CONSUL_HTTP_ADDR: port 0 in {text!r}")):
        parse_consul_address(text, "CONSUL_HTTP_ADDR")


def test_registry_uri_with_port_zero_is_refused():
    with pytest.raises(ConfigError, match="registry URI 'consul://127.0.0.1:0': port 0"):
        consul_endpoint("consul://127.0.0.1:0", env={})


@pytest.mark.parametrize(("uri", "env", "where"), [
    ("consul://user:s3cret@10.0.0.1:8500", {}, "registry URI"),
    ("consul-tls://s3cret@consul.local", {}, "registry URI"),
    ("consul://", {"CONSUL_HTTP_ADDR": "https://user:s3cret@consul.local:8501"}, "CONSUL_HTTP_ADDR"),
    (None, {"CONSUL_HTTP_ADDR": "user:s3cret@10.0.0.2:8500"}, "CONSUL_HTTP_ADDR"),
], ids=["user-and-password", "tls-user-only", "variable-with-scheme", "variable"])
def test_credentials_in_the_consul_address_are_refused_without_printing_them(uri, env, where):
    with pytest.raises(ConfigError) as refused:
        consul_endpoint(uri, env=env)
    assert str(refused.value) == (f"{where}: credentials in the Consul address are not supported (they would be dropped, and the "
                                  "address is logged); give a token with --consul-token, CONSUL_HTTP_TOKEN or "
                                  "CONSUL_HTTP_TOKEN_FILE")


def test_a_token_from_its_file_remembers_the_file_to_read_it_again(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)}).token_file == str(token_file)
    assert consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file), "CONSUL_HTTP_TOKEN": "t"}).token_file == ""
    assert consul_endpoint(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)}, token="flag").token_file == ""
