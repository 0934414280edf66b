"""Property-based: whatever a container carries, parsing and mapping never raise; bad values become warnings."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from registrator.consul.sink import service_payload
from registrator.docker.snapshot import snapshot_from_inspect
from registrator.mapping.checks import CheckSettings
from registrator.mapping.services import desired_services
from registrator.mapping.settings import DeregisterPolicy, PortSuffix
from registrator.mapping.template import parse
from tests.settings import mapping_settings

SETTINGS = mapping_settings(runs_scripts=True, checks=CheckSettings(allow_scripts=True))

text = st.text(max_size=40)
port_numbers = st.one_of(st.integers(min_value=-5, max_value=70000).map(str), st.sampled_from(["80", "53", "x", ""]))
suffixes = st.sampled_from([
    "NAME", "ID", "TAGS", "IGNORE", "IP", "NETWORK", "IP_FAMILY", "REGION", "A.B", "CHECK_HTTP", "CHECK_HTTPS", "CHECK_TCP",
    "CHECK_UDP", "CHECK_GRPC", "CHECK_TTL", "CHECK_SCRIPT", "CHECK_DOCKER", "CHECK_INTERVAL", "CHECK_TIMEOUT", "CHECK_HEADER",
    "CHECK_INITIAL_STATUS", "CHECK_1_HTTP", "CHECK_2_INTERVAL", "CHECK_BOGUS", "CHECK_FAILURES_BEFORE_CRITICAL", "ÜBER", "",
])
service_keys = st.builds(lambda port, proto, suffix: "_".join(p for p in ("SERVICE", port, proto, suffix) if p),
                         st.one_of(st.just(""), port_numbers), st.sampled_from(["", "TCP", "UDP", "tcp"]), suffixes)
env = st.dictionaries(st.one_of(service_keys, text), text, max_size=12)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | text,
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children,
                                                                                             max_size=3), max_leaves=10)
port_key = st.builds(lambda n, p: f"{n}/{p}", st.integers(min_value=0, max_value=70000),
                     st.sampled_from(["tcp", "udp", "sctp", ""]))
binding = st.fixed_dictionaries({"HostIp": st.sampled_from(["", "0.0.0.0", "::", "127.0.0.1", "10.1.1.1", "bad"]),
                                 "HostPort": st.one_of(st.integers(0, 70000).map(str), text)})
inspect_doc = st.fixed_dictionaries({
    "Id": st.text(min_size=1, max_size=64),
    "Name": st.one_of(st.none(), text),
    "Config": st.one_of(st.none(), st.fixed_dictionaries({
        "Image": st.one_of(st.none(), text),
        "Env": st.one_of(st.none(), env.map(lambda d: [f"{k}={v}" for k, v in d.items()])),
        "Labels": st.one_of(st.none(), env),
        "ExposedPorts": st.one_of(st.none(), st.dictionaries(port_key, st.just({}), max_size=4)),
        "Healthcheck": st.one_of(st.none(), json_values),
        "StopSignal": st.one_of(st.none(), text),
    })),
    "State": st.one_of(st.none(), st.fixed_dictionaries({
        "Running": st.booleans(), "Paused": st.booleans(), "ExitCode": st.one_of(st.integers(), text, st.none()),
        "StartedAt": st.one_of(text, st.just("2026-11-25T23:32:37.047632674Z")), "Health": st.one_of(st.none(), json_values),
    })),
    "HostConfig": st.one_of(st.none(), st.fixed_dictionaries({
        "NetworkMode": st.sampled_from(["default", "host", "none", "container:x", "net"])})),
    "NetworkSettings": st.one_of(st.none(), st.fixed_dictionaries({
        "IPAddress": st.sampled_from(["", "172.17.0.2"]),
        "Ports": st.dictionaries(port_key, st.one_of(st.none(), st.lists(binding, max_size=3)), max_size=4),
        "Networks": st.dictionaries(text, st.fixed_dictionaries({
            "IPAddress": st.sampled_from(["", "10.2.0.3"]), "GlobalIPv6Address": st.sampled_from(["", "fd00::3"])}), max_size=3),
    })),
})
mapping_settings = st.builds(
    lambda internal, explicit, suffix, policy, family, network: replace(
        SETTINGS, internal=internal, explicit=explicit, port_suffix=suffix, deregister=policy, ip_family=family, network=network,
        tags=parse('x,{{mIndex "team" .Config.Labels}},{{sIndex 0 .Config.Env}}'), use_ip_from_label="ip"),
    st.booleans(), st.booleans(), st.sampled_from(list(PortSuffix)), st.sampled_from(list(DeregisterPolicy)),
    st.sampled_from(["ipv4", "ipv6"]), st.sampled_from(["", "net", "10.2.0.3"]),
)


@settings(max_examples=400, deadline=None)
@given(inspect_doc, mapping_settings, st.booleans())
def test_parsing_and_mapping_never_raise(document, mapping, draining):
    desired = desired_services(snapshot_from_inspect(document), mapping, draining)
    for spec in desired.services.values():
        assert spec.id and spec.name
        assert len(spec.meta) <= 64
        assert all(len(k) <= 128 and len(v) <= 512 for k, v in spec.meta.items())
        for path_segment in (spec.id, *(c.check_id for c in spec.checks)):
            assert not set(path_segment) & set("/\\?#") and path_segment not in (".", "..")
            assert all(" " <= c <= "~" or c > "\x9f" for c in path_segment)
        json.dumps(service_payload(spec))  # every check the mapping makes has Consul JSON
    assert all(isinstance(w, str) for w in desired.warnings)
