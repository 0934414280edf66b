from __future__ import annotations

from types import MappingProxyType

import pytest

from registrator.mapping.metadata import container_metadata
from registrator.model import ContainerPort, ContainerSnapshot


def metadata_for(env: dict[str, str], labels: dict[str, str], port: int = 80, protocol: str = "tcp"):
    snapshot = ContainerSnapshot(id="c1", name="app", image="app", running=True,
                                 env=MappingProxyType(env), labels=MappingProxyType(labels))
    metadata = container_metadata(snapshot)
    return metadata, metadata.for_port(ContainerPort(port, protocol))


@pytest.mark.parametrize(
    ("env", "labels", "port", "protocol", "values"),
    [
        ({"SERVICE_NAME": "web"}, {}, 80, "tcp", {"name": "web"}),
        ({"SERVICE_NAME": "env"}, {"SERVICE_NAME": "label"}, 80, "tcp", {"name": "label"}),
        ({"SERVICE_80_NAME": "www", "SERVICE_NAME": "web"}, {}, 80, "tcp", {"name": "www"}),
        ({"SERVICE_80_NAME": "www"}, {"SERVICE_NAME": "web"}, 80, "tcp", {"name": "www"}),
        ({"SERVICE_80_NAME": "www"}, {}, 443, "tcp", {}),
        ({"SERVICE_53_NAME": "dns", "SERVICE_53_UDP_NAME": "dns-udp"}, {}, 53, "udp", {"name": "dns-udp"}),
        ({"SERVICE_53_NAME": "dns", "SERVICE_53_UDP_NAME": "dns-udp"}, {}, 53, "tcp", {"name": "dns"}),
        ({"SERVICE_53_udp_NAME": "lower"}, {"SERVICE_53_NAME": "label"}, 53, "udp", {"name": "lower"}),
        ({"SERVICE_80_NAME": "web", "SERVICE_80_SCTP_NAME": "web-sctp"}, {}, 80, "sctp", {"name": "web-sctp"}),
        ({"SERVICE_80_NAME": "web", "SERVICE_80_SCTP_NAME": "web-sctp"}, {}, 80, "tcp", {"name": "web"}),
        ({"SERVICE_REGION": "eu", "OTHER": "x", "service_name": "lower-prefix"}, {}, 80, "tcp", {"region": "eu"}),
        ({"SERVICE_CHECK_HTTP": "/health"}, {}, 80, "tcp", {"check_http": "/health"}),
        ({"SERVICE_80": "bare"}, {}, 80, "tcp", {"80": "bare"}),
        ({"SERVICE_٨٠_NAME": "eighty"}, {}, 80, "tcp", {"٨٠_name": "eighty"}),
    ],
    ids=["env", "label-beats-env", "port-beats-generic", "port-env-beats-generic-label", "other-port",
         "protocol-beats-port", "protocol-other", "protocol-case-insensitive", "sctp-beats-port", "sctp-other",
         "prefix-case-sensitive",
         "check-keys-kept-for-checks", "bare-port-is-generic", "arabic-indic-digits-are-no-port"],
)
def test_merged_values(env, labels, port, protocol, values):
    _, port_meta = metadata_for(env, labels, port, protocol)
    assert {k: e.value for k, e in port_meta.entries.items()} == values


def test_scopes_are_reported():
    _, port_meta = metadata_for({"SERVICE_NAME": "a", "SERVICE_53_ID": "b", "SERVICE_53_UDP_TAGS": "c"}, {}, 53, "udp")
    assert port_meta.port_scoped == {"id", "tags"}
    assert port_meta.protocol_scoped == {"tags"}


def test_sources_are_named_for_messages():
    _, port_meta = metadata_for({"SERVICE_NAME": "a"}, {"SERVICE_80_TAGS": "t"})
    assert port_meta.entries["name"].source == "env SERVICE_NAME"
    assert port_meta.entries["tags"].source == "label SERVICE_80_TAGS"


@pytest.mark.parametrize(
    ("key", "warning"),
    [("SERVICE_80x_NAME", "'80x' is not a port number"), ("SERVICE_99999_NAME", "'99999' is not a port number"),
     ("SERVICE_0_NAME", "'0' is not a port number"), ("SERVICE_", "empty key"),
     ("SERVICE_" + "9" * 5000 + "_NAME", "is not a port number")],
)
def test_malformed_keys_are_warned_about_and_ignored(key, warning):
    metadata, port_meta = metadata_for({key: "x", "SERVICE_NAME": "ok"}, {})
    assert [w for w in metadata.warnings if warning in w and key in w]
    assert {k: e.value for k, e in port_meta.entries.items()} == {"name": "ok"}


@pytest.mark.parametrize(("port", "key"), [(1, "SERVICE_1_NAME"), (65535, "SERVICE_65535_NAME")], ids=["lowest", "highest"])
def test_every_port_number_can_be_scoped(port, key):
    metadata, port_meta = metadata_for({key: "x"}, {}, port=port)
    assert (metadata.warnings, {k: e.value for k, e in port_meta.entries.items()}) == ([], {"name": "x"})


def test_one_past_the_highest_port_is_named_in_a_warning():
    metadata, port_meta = metadata_for({"SERVICE_65536_NAME": "x"}, {})
    assert (metadata.warnings, dict(port_meta.entries)) == (["env SERVICE_65536_NAME: '65536' is not a port number; ignored"], {})


@pytest.mark.parametrize("key", ["SERVICE_:1_NAME", "SERVICE_@A_B", "SERVICE_/X_Y"])
def test_a_key_that_starts_with_a_symbol_is_an_ordinary_key(key):
    metadata, port_meta = metadata_for({key: "x"}, {})
    assert (metadata.warnings, list(port_meta.entries)) == ([], [key[len("SERVICE_"):].lower()])
