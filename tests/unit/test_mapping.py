"""Every rule that turns a container into Consul services, as a table."""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from types import MappingProxyType

import pytest

from registrator.docker.snapshot import snapshot_from_inspect
from registrator.mapping.services import (
    META_AGENT,
    META_CONTAINER,
    META_HASH,
    META_HOST,
    desired_services,
    drained,
    image_basename,
    parse_tags,
    spec_hash,
)
from registrator.mapping.settings import DeregisterPolicy, MappingSettings, PortSuffix
from registrator.mapping.template import parse
from registrator.model import CheckKind, CheckSpec, ContainerPort, ContainerSnapshot, NetworkAttachment, PortBinding, ServiceSpec
from tests.settings import mapping_settings, with_ip

SETTINGS = mapping_settings("host1", agent="host1-box:1:ab")
CID = "f" * 64


def container(*ports: ContainerPort, env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
              **fields: object) -> ContainerSnapshot:
    fields.setdefault("running", True)
    return ContainerSnapshot(
        id=CID, name="app.1", image="registry:5000/team/app:1.2",
        env=MappingProxyType(env or {}), labels=MappingProxyType(labels or {}), ports=ports,
        attrs=MappingProxyType({"Id": CID, "Name": "/app.1", "Config": {"Labels": labels or {}}}), **fields,
    )


def published(port: int, host_port: int, protocol: str = "tcp", host_ip: str = "0.0.0.0") -> ContainerPort:
    return ContainerPort(port, protocol, (PortBinding(host_ip, host_port), PortBinding("::", host_port)))


def services(snapshot: ContainerSnapshot, settings: MappingSettings = SETTINGS):
    return desired_services(snapshot, settings).services


def one(snapshot: ContainerSnapshot, settings: MappingSettings = SETTINGS):
    [spec] = services(snapshot, settings).values()
    return spec


def warnings(snapshot: ContainerSnapshot, settings: MappingSettings = SETTINGS) -> str:
    return "\n".join(desired_services(snapshot, settings).warnings)


@pytest.mark.parametrize(
    ("image", "name"),
    [("redis", "redis"), ("redis:7", "redis"), ("gliderlabs/foobar:1.2", "foobar"),
     ("registry:5000/a/b:1", "b"), ("app@sha256:0123", "app"), ("registry:5000/app@sha256:0123", "app")],
)
def test_image_basename(image, name):
    assert image_basename(image) == name


@pytest.mark.parametrize(
    ("text", "tags"),
    [("a,b", ["a", "b"]), ("b,a", ["b", "a"]), (r"a\,b,c", ["a,b", "c"]), (" a , ,b,", ["a", "b"]), ("", []),
     ("a\0b,c", ["a\0b", "c"])],
    ids=["plain", "order-preserved", "escaped-comma", "blanks-dropped", "empty", "nul-is-not-a-comma"],
)
def test_parse_tags(text, tags):
    assert parse_tags(text) == tags


# ---- registrator's documented examples (docs/user/services.md) ----

def test_redis_example_single_port():
    redis = replace(container(published(6379, 10000)), name="redis.0", image="redis")
    spec = one(redis)
    assert (spec.id, spec.name, spec.port, spec.address) == ("host1:redis.0:6379", "redis", 10000, "10.0.0.5")


def test_nginx_example_two_ports_get_suffixed_names():
    nginx = replace(container(published(443, 4443), published(80, 8000)), image="nginx")
    assert {(s.name, s.port) for s in services(nginx).values()} == {("nginx-443", 4443), ("nginx-80", 8000)}


def test_port_specific_name_id_and_attribute_example():
    env = {"SERVICE_443_NAME": "https", "SERVICE_443_ID": "https.12345", "SERVICE_443_SNI": "enabled"}
    nginx = replace(container(published(443, 4443), published(80, 8000), env=env), image="nginx")
    by_name = {s.name: s for s in services(nginx).values()}
    assert set(by_name) == {"https", "nginx-80"}
    assert by_name["https"].id == "https.12345"
    assert by_name["https"].meta["sni"] == "enabled"
    assert "sni" not in by_name["nginx-80"].meta


# ---- names ----

@pytest.mark.parametrize(
    ("env", "suffix", "names"),
    [
        ({}, PortSuffix.AUTO, {"app-80", "app-443"}),
        ({"SERVICE_NAME": "web"}, PortSuffix.AUTO, {"web-80", "web-443"}),
        ({"SERVICE_NAME": "web", "SERVICE_443_NAME": "secure"}, PortSuffix.AUTO, {"web-80", "secure"}),
        ({"SERVICE_NAME": "web"}, PortSuffix.NEVER, {"web"}),
        ({"SERVICE_NAME": "web", "SERVICE_443_NAME": "secure"}, PortSuffix.ALWAYS, {"web-80", "secure"}),
    ],
    ids=["image-name", "generic-name", "port-scoped-name-has-no-suffix", "never", "always"],
)
def test_port_suffix_on_several_ports(env, suffix, names):
    snapshot = container(published(80, 1), published(443, 2), env=env)
    assert {s.name for s in services(snapshot, replace(SETTINGS, port_suffix=suffix)).values()} == names


def test_port_suffix_always_applies_to_a_single_port():
    assert one(container(published(80, 1)), replace(SETTINGS, port_suffix=PortSuffix.ALWAYS)).name == "app-80"


def test_ignored_ports_still_count_for_the_suffix_as_in_registrator():
    snapshot = container(published(80, 1), published(443, 2), env={"SERVICE_443_IGNORE": "true"})
    assert one(snapshot).name == "app-80"


def test_empty_name_falls_back_to_the_image():
    assert one(container(published(80, 1), env={"SERVICE_NAME": ""})).name == "app"


def test_name_that_dns_cannot_serve_is_registered_with_a_warning():
    snapshot = container(published(80, 1), labels={"SERVICE_NAME": "wéb_1"})
    assert one(snapshot).name == "wéb_1"
    assert "label SERVICE_NAME: service name 'wéb_1' is not a valid DNS label" in warnings(snapshot)


def test_an_image_name_that_dns_cannot_serve_is_registered_with_a_warning_naming_the_image():
    snapshot = replace(container(published(80, 1)), image="team/my_app:1")
    assert one(snapshot).name == "my_app"
    assert warnings(snapshot) == ("image name: service name 'my_app' is not a valid DNS label; "
                                  "it is registered but not discoverable via DNS")


# ---- IDs ----

def test_udp_ports_get_a_distinct_id_and_tag():
    snapshot = container(published(53, 1053, "udp"), published(53, 1053))
    found = services(snapshot)
    assert set(found) == {"host1:app.1:53", "host1:app.1:53:udp"}
    assert found["host1:app.1:53:udp"].tags == ("udp",)


def test_custom_id_keeps_the_udp_distinction():
    snapshot = container(published(53, 1053, "udp"), published(53, 1053), env={"SERVICE_53_ID": "dns"})
    assert set(services(snapshot)) == {"dns", "dns:udp"}


def test_sctp_ports_get_a_distinct_id_and_tag():
    snapshot = container(published(80, 8080, "sctp"), published(80, 8080))
    found = services(snapshot)
    assert set(found) == {"host1:app.1:80", "host1:app.1:80:sctp"}
    assert (found["host1:app.1:80"].tags, found["host1:app.1:80:sctp"].tags) == ((), ("sctp",))


def test_custom_id_keeps_the_sctp_distinction_unless_set_for_sctp():
    snapshot = container(published(80, 8080, "sctp"), published(80, 8080), env={"SERVICE_80_ID": "web"})
    assert set(services(snapshot)) == {"web", "web:sctp"}
    snapshot = container(published(80, 8080, "sctp"), published(80, 8080),
                         env={"SERVICE_80_ID": "web", "SERVICE_80_SCTP_ID": "web-s"})
    assert set(services(snapshot)) == {"web", "web-s"}


def test_protocol_scoped_id_is_taken_as_is():
    snapshot = container(published(53, 1053, "udp"), env={"SERVICE_53_UDP_ID": "dns-u"})
    assert set(services(snapshot)) == {"dns-u"}


def test_container_wide_id_on_several_ports_does_not_collide():
    snapshot = container(published(80, 1), published(443, 2), env={"SERVICE_ID": "web"})
    assert set(services(snapshot)) == {"web:80", "web:443"}


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        ({"SERVICE_ID": "x/../victim"}, "env SERVICE_ID: service ID 'x/../victim' contains '/'; not registered"),
        ({"SERVICE_80_ID": "a\\b"}, "env SERVICE_80_ID: service ID 'a\\\\b' contains '\\\\'; not registered"),
        ({"SERVICE_80_TCP_ID": "a?b"}, "env SERVICE_80_TCP_ID: service ID 'a?b' contains '?'; not registered"),
        ({"SERVICE_ID": "a#b"}, "env SERVICE_ID: service ID 'a#b' contains '#'; not registered"),
        ({"SERVICE_ID": "a\0b"}, "env SERVICE_ID: service ID 'a\\x00b' contains a control character; not registered"),
        ({"SERVICE_ID": "a\nb"}, "env SERVICE_ID: service ID 'a\\nb' contains a control character; not registered"),
        ({"SERVICE_ID": "a\x85b"}, "env SERVICE_ID: service ID 'a\\x85b' contains a control character; not registered"),
        ({"SERVICE_ID": "."}, "env SERVICE_ID: service ID '.' is a dot segment; not registered"),
        ({"SERVICE_ID": ".."}, "env SERVICE_ID: service ID '..' is a dot segment; not registered"),
        ({"SERVICE_ID": "x" * 257}, f"env SERVICE_ID: service ID '{'x' * 257}' is longer than 256 characters; not registered"),
    ],
    ids=["slash", "backslash", "question-mark", "hash", "nul", "newline", "c1-control", "dot", "dot-dot", "too-long"],
)
def test_service_ids_hostile_in_a_url_path_are_refused_with_a_warning(env, warning):
    snapshot = container(published(80, 8080), env={**env, "SERVICE_CHECK_HTTP": "/health"})
    desired = desired_services(snapshot, SETTINGS)
    assert (dict(desired.services), dict(desired.check_status)) == ({}, {})
    assert warning in desired.warnings


def test_a_service_id_may_hold_any_letter():
    assert one(container(published(80, 8080), env={"SERVICE_ID": "X-ray"})).id == "X-ray"


def test_a_container_name_too_long_for_the_default_id_is_cut_and_told_apart_by_a_digest_of_the_whole_name():
    """A 253-character name made the ID too long, and the container was not registered (issue 21)."""
    names = ["n" * 300, "n" * 299]
    ids = [one(replace(container(published(80, 8080)), name=name)).id for name in names]
    assert ids == [f"host1:{'n' * 238}-{hashlib.sha256(name.encode()).hexdigest()[:8]}:80" for name in names]
    assert {len(i) for i in ids} == {256}


def test_a_default_service_id_that_cannot_fit_names_the_port():
    snapshot = container(published(80, 8080))
    desired = desired_services(snapshot, mapping_settings("h" * 250))
    assert dict(desired.services) == {}
    assert desired.warnings == (f"port 80/tcp: service ID '{'h' * 250}:app.1:80' is longer than 256 characters; not registered",)


def test_a_refused_service_id_leaves_the_other_ports_and_containers_registered():
    hostile = container(published(80, 8080), published(443, 8443), env={"SERVICE_80_ID": "x/../victim"})
    assert set(services(hostile)) == {"host1:app.1:443"}
    assert set(services(replace(container(published(80, 8080)), name="victim"))) == {"host1:victim:80"}


def test_the_longest_service_id_is_registered():
    assert set(services(container(published(80, 8080), env={"SERVICE_ID": "x" * 256}))) == {"x" * 256}


# ---- tags ----

def test_tags_keep_their_order_then_template_tags_then_udp():
    settings = replace(SETTINGS, tags=parse('prod,{{mIndex "team" .Config.Labels}}'))
    snapshot = container(published(53, 1, "udp"), env={"SERVICE_TAGS": r"b,a\,x,b"}, labels={"team": "dns"})
    assert one(snapshot, settings).tags == ("b", "a,x", "prod", "dns", "udp")


def test_tags_with_control_characters_are_left_out_with_a_warning_naming_the_key():
    snapshot = container(published(80, 1), env={"SERVICE_TAGS": "ok,bad\0tag,two\nlines,del\x7f,fine"})
    assert one(snapshot).tags == ("ok", "fine")
    assert warnings(snapshot).splitlines() == [
        "env SERVICE_TAGS: tag 'bad\\x00tag' contains a control character; left out",
        "env SERVICE_TAGS: tag 'two\\nlines' contains a control character; left out",
        "env SERVICE_TAGS: tag 'del\\x7f' contains a control character; left out",
    ]


def test_template_tags_with_control_characters_are_left_out_with_a_warning_naming_the_template():
    settings = replace(SETTINGS, tags=parse('prod,{{mIndex "team" .Config.Labels}}'))
    snapshot = container(published(80, 1), labels={"team": "a\x07b"})
    assert one(snapshot, settings).tags == ("prod",)
    assert "-tags template 'prod,{{mIndex \"team\" .Config.Labels}}': tag 'a\\x07b' contains a control character; left out" \
        in warnings(snapshot, settings)


def test_template_that_fails_for_one_container_only_drops_its_tags():
    settings = replace(SETTINGS, tags=parse("x,{{sIndex 0 .Config.Labels.nope}}"))
    snapshot = container(published(80, 1), env={"SERVICE_TAGS": "mine"})
    assert one(snapshot, settings).tags == ("mine",)
    assert "-tags template" in warnings(snapshot, settings)


# ---- ignore, explicit ----

@pytest.mark.parametrize(
    ("value", "ignored"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True),
     ("false", False), ("0", False), ("no", False), ("", False)],
)
def test_only_truthy_ignore_values_ignore(value, ignored):
    assert (services(container(published(80, 1), env={"SERVICE_IGNORE": value})) == {}) is ignored


def test_port_scoped_ignore_and_override():
    snapshot = container(published(80, 1), published(443, 2), env={"SERVICE_IGNORE": "true", "SERVICE_443_IGNORE": "false"})
    assert [s.name for s in services(snapshot).values()] == ["app-443"]


def test_explicit_registers_only_named_ports():
    snapshot = container(published(80, 1), published(443, 2), env={"SERVICE_443_NAME": "secure"})
    assert [s.name for s in services(snapshot, replace(SETTINGS, explicit=True)).values()] == ["secure"]


# ---- Meta ----

def test_other_keys_become_meta_but_check_and_service_keys_do_not():
    env = {"SERVICE_REGION": "eu", "SERVICE_CHECK_HTTP": "/h", "SERVICE_CHECK_1_TCP": "true", "SERVICE_TAGS": "t",
           "SERVICE_IGNORE": "no"}
    meta = dict(one(container(published(80, 1), env=env)).meta)
    assert {k: v for k, v in meta.items() if not k.startswith("registrator-")} == {"region": "eu"}


def test_global_meta_is_a_default_that_containers_override():
    settings = replace(SETTINGS, meta={"team": "core", "env": "prod"})
    meta = one(container(published(80, 1), env={"SERVICE_TEAM": "web"}), settings).meta
    assert (meta["team"], meta["env"]) == ("web", "prod")


LETTERS = "only letters, digits, '-' and '_' are allowed"
RESERVED = "the 'consul-' and 'registrator-' prefixes are reserved"


@pytest.mark.parametrize(
    ("key", "problem"),
    [("SERVICE_A.B", LETTERS), ("SERVICE_CONSUL-X", RESERVED), ("SERVICE_REGISTRATOR-HOST", RESERVED),
     ("SERVICE_" + "K" * 129, "longer than 128 characters"), ("SERVICE_ÜBER", LETTERS), ("SERVICE_TEAM\n", LETTERS)],
)
def test_invalid_meta_keys_are_dropped_with_a_warning_and_the_rest_registered(key, problem):
    snapshot = container(published(80, 1), labels={key: "v", "SERVICE_REGION": "eu"})
    spec = one(snapshot)
    assert spec.meta["region"] == "eu"
    assert spec.meta[META_HOST] == "host1"
    assert f"label {key}: Meta key" in warnings(snapshot) and f"dropped: {problem}" in warnings(snapshot)


def test_a_meta_key_of_128_characters_is_kept():
    assert one(container(published(80, 1), labels={"SERVICE_" + "K" * 128: "v"})).meta["k" * 128] == "v"


def test_long_meta_values_and_too_many_pairs_are_dropped():
    env = {f"SERVICE_K{i:02d}": "v" for i in range(70)} | {"SERVICE_BIG": "x" * 513}
    snapshot = container(published(80, 1), env=env)
    assert len(one(snapshot).meta) == 64
    assert "value longer than 512" in warnings(snapshot) and "more than 60 Meta pairs" in warnings(snapshot)


def test_meta_at_its_limits_is_kept_whole():
    env = {f"SERVICE_K{i:02d}": "v" for i in range(59)} | {"SERVICE_BIG": "x" * 512}
    spec = one(container(published(80, 1), env=env))
    assert (len(spec.meta), spec.meta["big"], warnings(container(published(80, 1), env=env))) == (64, "x" * 512, "")


def test_the_meta_pairs_past_the_limit_are_named():
    env = {f"SERVICE_K{i:02d}": "v" for i in range(62)}
    assert warnings(container(published(80, 1), env=env)) == "more than 60 Meta pairs; dropped k60, k61"


def test_unknown_check_settings_are_warned_about():
    snapshot = container(published(80, 1), env={"SERVICE_CHECK_BOGUS": "x", "SERVICE_CHECK_2_HTTP": "/ok"})
    assert "env SERVICE_CHECK_BOGUS: unknown check setting 'check_bogus'" in warnings(snapshot)
    assert "CHECK_2_HTTP" not in warnings(snapshot)


def test_port_keys_for_ports_the_container_lacks_are_warned_about():
    assert "SERVICE_8080_*: the container has no port 8080" in warnings(container(published(80, 1),
                                                                                  env={"SERVICE_8080_NAME": "x"}))


# ---- addresses and ports ----

def test_explicit_ip_wins_over_a_specific_binding_address():
    snapshot = container(ContainerPort(80, "tcp", (PortBinding("192.0.2.9", 1),)))
    assert one(snapshot).address == "192.0.2.9"
    assert one(snapshot, with_ip(SETTINGS, "10.9.9.9")).address == "10.9.9.9"


def test_loopback_only_bindings_are_not_registered():
    assert services(container(ContainerPort(80, "tcp", (PortBinding("127.0.0.1", 8080),)))) == {}


def test_every_distinct_host_port_is_registered():
    port = ContainerPort(80, "tcp", (PortBinding("0.0.0.0", 8080), PortBinding("::", 8080), PortBinding("0.0.0.0", 8081),
                                     PortBinding("::", 8082)))
    assert {(sid, s.port) for sid, s in services(container(port)).items()} == {("host1:app.1:80", 8080),
                                                                               ("host1:app.1:80:8081", 8081)}


def test_internal_registers_container_ip_and_exposed_port_including_unpublished():
    snapshot = container(published(80, 1), ContainerPort(9000, "tcp"), ip="172.17.0.2")
    found = services(snapshot, replace(SETTINGS, internal=True))
    assert {(s.address, s.port) for s in found.values()} == {("172.17.0.2", 80), ("172.17.0.2", 9000)}


def test_internal_on_user_networks_picks_the_first_network_by_name():
    snapshot = container(ContainerPort(80, "tcp"),
                         networks=(NetworkAttachment("a-net", "10.1.0.2"), NetworkAttachment("b-net", "10.2.0.2")))
    assert one(snapshot, replace(SETTINGS, internal=True)).address == "10.1.0.2"


def test_ip_from_label_wins_in_both_modes_and_drops_the_cidr():
    snapshot = container(published(80, 1), labels={"my.ip": "10.7.7.7/24"}, ip="172.17.0.2")
    for settings in (replace(with_ip(SETTINGS, "10.0.0.1"), use_ip_from_label="my.ip"),
                     replace(SETTINGS, use_ip_from_label="my.ip", internal=True)):
        assert one(snapshot, settings).address == "10.7.7.7"


def test_host_network_containers_serve_exposed_ports_on_the_host():
    spec = one(container(ContainerPort(8080, "tcp"), network_mode="host"))
    assert (spec.address, spec.port) == ("10.0.0.5", 8080)


# ---- lifecycle ----

@pytest.mark.parametrize(
    ("policy", "exit_code", "retain"),
    [(DeregisterPolicy.ALWAYS, 1, False), (DeregisterPolicy.NEVER, 0, True),
     (DeregisterPolicy.ON_SUCCESS, 0, False), (DeregisterPolicy.ON_SUCCESS, 143, False), (DeregisterPolicy.ON_SUCCESS, 1, True)],
)
def test_stopped_containers_follow_the_deregister_policy(policy, exit_code, retain):
    desired = desired_services(container(published(80, 1), running=False, exit_code=exit_code),
                               replace(SETTINGS, deregister=policy))
    assert (desired.services, desired.retain) == ({}, retain)


def test_paused_and_missing_containers_have_no_services():
    assert desired_services(container(published(80, 1), paused=True), SETTINGS).services == {}
    assert desired_services(None, SETTINGS).services == {}


def test_unpublished_ports_have_no_services():
    assert services(container(ContainerPort(80, "tcp"))) == {}


# ---- ownership and determinism ----

def test_ownership_meta_and_a_hash_of_every_field_registered():
    env = {"SERVICE_TAGS": "a", "SERVICE_REGION": "eu", "SERVICE_CHECK_TCP": "true"}
    spec = one(container(published(80, 32768), env=env), replace(SETTINGS, host_ipv6="2001:db8::5"))
    registered = (
        '["host1:app.1:80","app","10.0.0.5",32768,["a"],'
        f'[["region","eu"],["registrator-container","{CID}"],["registrator-host","host1"]],'
        '[{"check_id":"service:host1:app.1:80","interval":"10s","kind":"tcp","name":"TCP check","target":"10.0.0.5:32768"}],'
        '[["lan_ipv4","10.0.0.5",32768],["lan_ipv6","2001:db8::5",32768]]]'
    )
    assert dict(spec.meta) == {"region": "eu", META_HOST: "host1", META_CONTAINER: CID, META_AGENT: "host1-box:1:ab",
                               META_HASH: hashlib.sha256(registered.encode()).hexdigest()[:16]}


def test_the_agent_instance_that_wrote_a_service_changes_no_hash():
    """A restarted agent is another instance; its services are unchanged and keep their hash."""
    snapshot = container(published(80, 32768))
    first, second = (one(snapshot, replace(SETTINGS, host=replace(SETTINGS.host, agent=agent))) for agent in ("a:1:aa", "a:2:bb"))
    assert (first.meta[META_AGENT], second.meta[META_AGENT]) == ("a:1:aa", "a:2:bb")
    assert first.meta[META_HASH] == second.meta[META_HASH]


CHECK_CHANGES = {
    "check_id": "service:web:1", "kind": CheckKind.UDP, "name": "UDP check", "target": "10.0.0.5:81", "interval": "5s",
    "timeout": "1s", "ttl": "30s", "method": "HEAD", "headers": (("X-A", ("1",)),), "tls_skip_verify": False,
    "tls_server_name": "web.internal", "grpc_use_tls": True, "args": ("true",), "docker_container_id": CID,
    "initial_status": "passing",
    "deregister_critical_after": "90m", "success_before_passing": 0, "failures_before_critical": 0, "notes": "n",
}


def test_every_check_field_is_changed_by_the_hash_test():
    assert set(CHECK_CHANGES) == {f.name for f in fields(CheckSpec)}


@pytest.mark.parametrize(("name", "value"), CHECK_CHANGES.items(), ids=list(CHECK_CHANGES))
def test_any_change_to_a_check_changes_the_hash(name, value):
    spec = ServiceSpec("web", "web", "10.0.0.5", 80,
                       checks=(CheckSpec("service:web", CheckKind.TCP, "TCP check", target="10.0.0.5:80"),))
    changed = replace(spec, checks=(replace(spec.checks[0], **{name: value}),))
    assert spec_hash(changed) != spec_hash(spec)


@pytest.mark.parametrize("order", ["as-captured", "every-object-reversed"])
def test_real_multiport_container_in_any_key_order(inspect_json, order):
    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(v) for k, v in reversed(value.items())}
        return [reverse(v) for v in value] if isinstance(value, list) else value

    document = inspect_json("multi") if order == "as-captured" else reverse(inspect_json("multi"))
    found = services(snapshot_from_inspect(document))
    assert [(sid, s.name, s.address, s.port, s.tags) for sid, s in found.items()] == [
        ("host1:fx-multi:53:udp", "multi-53", "10.0.0.5", 32768, ("udp",)),
        ("host1:fx-multi:80", "www", "10.0.0.5", 32779, ()),
    ]  # 8080 is not published and 9000 is bound to loopback only


@pytest.mark.parametrize(
    ("drain", "policy", "ids", "maintenance"),
    [("deregister", DeregisterPolicy.ALWAYS, set(), False), ("deregister", DeregisterPolicy.ON_SUCCESS, {"host1:app.1:80"}, True),
     ("deregister", DeregisterPolicy.NEVER, {"host1:app.1:80"}, True), ("maintenance", DeregisterPolicy.ALWAYS,
                                                                        {"host1:app.1:80"}, True),
     ("maintenance", DeregisterPolicy.ON_SUCCESS, {"host1:app.1:80"}, True), ("maintenance", DeregisterPolicy.NEVER,
                                                                              {"host1:app.1:80"}, True)],
)
def test_a_draining_container_leaves_dns_the_same_way_with_or_without_a_fresh_inspect(drain, policy, ids, maintenance):
    settings = replace(SETTINGS, drain=drain, deregister=policy)
    registered = {"host1:app.1:80": ServiceSpec("host1:app.1:80", "web", "10.0.0.5", 8080)}

    fresh = desired_services(container(published(80, 8080), env={"SERVICE_NAME": "web"}), settings, draining=True)
    known = drained(registered, settings)

    assert (set(fresh.services), fresh.maintenance) == (ids, maintenance)
    assert (set(known.services), known.maintenance) == (ids, maintenance)


def test_a_template_count_from_a_label_past_int64_only_drops_the_template_tags():
    settings = replace(SETTINGS, tags=parse('{{replace (mIndex "n" .Config.Labels) "a" "b" .Name}}'))
    snapshot = container(published(80, 1), env={"SERVICE_TAGS": "mine"}, labels={"n": "99999999999999999999"})
    assert one(snapshot, settings).tags == ("mine",)
    assert "replace: '99999999999999999999' is not an integer in Go's int64 range; its tags are left out" in warnings(snapshot,
                                                                                                                      settings)


def test_a_service_id_two_ports_ask_for_goes_to_the_first_and_the_second_is_warned_about():
    snapshot = container(published(80, 8080), published(81, 8081), env={"SERVICE_80_ID": "same", "SERVICE_81_ID": "same"})
    assert [(spec.id, spec.port) for spec in services(snapshot).values()] == [("same", 8080)]
    assert "service ID 'same' is produced twice; the second is skipped" in warnings(snapshot)


ECS_TASK = {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:eu-west-1:1:task/c/abc", "com.amazonaws.ecs.container-name": "web",
            "com.amazonaws.ecs.task-definition-family": "shop"}


@pytest.mark.parametrize(("snapshot", "settings", "expected"), [
    pytest.param(container(published(80, 8080)), SETTINGS, {"host1:app.1:80": (
        ("name", "image basename of registry:5000/team/app:1.2"),
        ("id", "host:container:port[:protocol]"),
        ("address", "rule 7: published port, the host IP (--ip-from route)"),
        ("tags", "none"),
        ("meta", "ownership only"),
        ("checks", "none"))}, id="nothing-set"),
    pytest.param(container(published(53, 5353, "udp"), labels={
        "SERVICE_NAME": "dns", "SERVICE_ID": "dns-a", "SERVICE_TAGS": "x", "SERVICE_ZONE": "b", "SERVICE_CHECK_UDP": "1"}),
        replace(SETTINGS, tags=parse("t"), meta=MappingProxyType({"team": "core"})), {"dns-a:udp": (
            ("name", "label SERVICE_NAME"),
            ("id", "label SERVICE_ID"),
            ("address", "rule 7: published port, the host IP (--ip-from route)"),
            ("tags", "label SERVICE_TAGS, -tags, udp port"),
            ("meta", "label SERVICE_ZONE, --meta"),
            ("checks", "service:dns-a:udp"))}, id="every-source"),
    pytest.param(container(published(80, 8080), published(81, 8081, host_ip="10.1.1.1"), labels=ECS_TASK), SETTINGS, {
        "host1:app.1:80": (
            ("name", "ECS container label (--ecs-name container), with the -80 suffix (--port-suffix auto)"),
            ("id", "host:container:port[:protocol]"),
            ("address", "rule 7: published port, the host IP (--ip-from route)"),
            ("tags", "none"),
            ("meta", "ECS labels"),
            ("checks", "none")),
        "host1:app.1:81": (
            ("name", "ECS container label (--ecs-name container), with the -81 suffix (--port-suffix auto)"),
            ("id", "host:container:port[:protocol]"),
            ("address", "rule 7: published port, the bound address"),
            ("tags", "none"),
            ("meta", "ECS labels"),
            ("checks", "none"))}, id="ecs-two-ports"),
    pytest.param(container(published(80, 8080), labels={**ECS_TASK, "com.amazonaws.ecs.container-name": "app"}), SETTINGS,
                 {"host1:app.1:80": (
                     ("name", "image basename of registry:5000/team/app:1.2"),
                     ("id", "host:container:port[:protocol]"),
                     ("address", "rule 7: published port, the host IP (--ip-from route)"),
                     ("tags", "none"),
                     ("meta", "ECS labels"),
                     ("checks", "none"))}, id="ecs-name-equal-to-the-image"),
])
def test_explain_names_the_source_of_every_field(snapshot: ContainerSnapshot, settings: MappingSettings, expected: dict) -> None:
    assert dict(desired_services(snapshot, settings).reasons) == expected


def test_explain_lists_every_check_of_a_service():
    snapshot = container(published(80, 8080), labels={"SERVICE_CHECK_TCP": "1", "SERVICE_CHECK_2_HTTP": "/"})
    reasons = dict(desired_services(snapshot, SETTINGS).reasons["host1:app.1:80"])
    assert reasons["checks"] == "service:host1:app.1:80, service:host1:app.1:80#2"


def test_warnings_about_keys_and_notes_about_ignored_ports_come_with_the_services():
    snapshot = container(published(80, 8080), published(81, 8081), env={"SERVICE_0_NAME": "x", "SERVICE_81_IGNORE": "yes"})
    desired = desired_services(snapshot, SETTINGS)
    assert (list(desired.services), desired.warnings, desired.notes) == (
        ["host1:app.1:80"], ("env SERVICE_0_NAME: '0' is not a port number; ignored",), ("port 81/tcp: ignored by env "
                                                                                         "SERVICE_81_IGNORE",))


def test_a_container_without_an_image_name_or_service_name_is_not_registered_and_says_why():
    desired = desired_services(replace(container(published(80, 8080)), image=""), SETTINGS)
    assert (dict(desired.services), desired.warnings) == ({}, ("port 80: no SERVICE_NAME and no image name to default to; not "
                                                               "registered",))


@pytest.mark.parametrize(("env", "warning"), [
    ({"SERVICE_ID": "web\u202eevil"}, "env SERVICE_ID: service ID 'web\\u202eevil' contains an invisible character (U+202E); "
                                      "not registered"),
    ({"SERVICE_ID": "web\u2028x"}, "env SERVICE_ID: service ID 'web\\u2028x' contains an invisible character (U+2028); not "
                                   "registered"),
    ({"SERVICE_NAME": "we\u200bb"}, "env SERVICE_NAME: service name 'we\\u200bb' contains an invisible character (U+200B); not "
                                    "registered"),
    ({"SERVICE_NAME": "we\nb"}, "env SERVICE_NAME: service name 'we\\nb' contains a control character; not registered"),
], ids=["id-right-to-left-override", "id-line-separator", "name-zero-width-space", "name-newline"])
def test_ids_and_names_with_characters_consul_cannot_address_or_show_are_refused(env, warning):
    """Consul took an ID with U+202E, then answered 400 to every URL with it: never removable (issue 21)."""
    desired = desired_services(container(published(80, 8080), env=env), SETTINGS)
    assert (dict(desired.services), desired.warnings) == ({}, (warning,))


def test_tags_and_meta_values_with_invisible_characters_are_left_out_with_a_warning():
    spec_env = {"SERVICE_TAGS": "ok,b\u202ead", "SERVICE_ZONE": "a\u200bb", "SERVICE_RACK": "r1"}
    desired = desired_services(container(published(80, 8080), env=spec_env), SETTINGS)
    [spec] = desired.services.values()
    assert (spec.tags, {k: spec.meta[k] for k in ("rack",)}, "zone" in spec.meta) == (("ok",), {"rack": "r1"}, False)
    assert desired.warnings == ("env SERVICE_TAGS: tag 'b\\u202ead' contains an invisible character (U+202E); left out",
                                "env SERVICE_ZONE: Meta key 'zone' dropped: its value contains an invisible character (U+200B)")
