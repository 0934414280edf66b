"""Every check key, as a table: SERVICE_*CHECK_* metadata → the typed checks a service gets."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from registrator.mapping.checks import CheckGroup, CheckSettings, check_keys, mirror_status
from registrator.mapping.metadata import Entry, PortMetadata
from registrator.mapping.services import desired_services
from registrator.mapping.settings import MappingSettings
from registrator.model import CheckKind, CheckSpec, ContainerPort, ContainerSnapshot, PortBinding
from tests.settings import mapping_settings, with_ip, with_scripts

SETTINGS = mapping_settings(runs_scripts=True)
CID = "c" * 64
ID = "service:h:web:80"


def container(env: dict[str, str], *, port: int = 80, protocol: str = "tcp", **fields: object) -> ContainerSnapshot:
    return ContainerSnapshot(id=CID, name="web", image="web", running=True, env=MappingProxyType(env),
                             ports=(ContainerPort(port, protocol, (PortBinding("0.0.0.0", 32000),)),), **fields)


def checks(env: dict[str, str], settings: MappingSettings = SETTINGS, **fields: object) -> dict[str, CheckSpec]:
    [spec] = desired_services(container(env, **fields), settings).services.values()
    return {c.check_id: c for c in spec.checks}


def only(env: dict[str, str], settings: MappingSettings = SETTINGS, **fields: object) -> CheckSpec:
    [check] = checks(env, settings, **fields).values()
    return check


def warnings(env: dict[str, str], settings: MappingSettings = SETTINGS) -> str:
    return "\n".join(desired_services(container(env), settings).warnings)


@pytest.mark.parametrize(
    ("env", "check"),
    [
        ({"SERVICE_CHECK_HTTP": "/health"},
         CheckSpec(ID, CheckKind.HTTP, "HTTP check", target="http://10.0.0.5:32000/health", interval="10s")),
        ({"SERVICE_CHECK_HTTP": "health", "SERVICE_CHECK_HTTP_METHOD": "head"},
         CheckSpec(ID, CheckKind.HTTP, "HTTP check", target="http://10.0.0.5:32000/health", method="HEAD", interval="10s")),
        ({"SERVICE_CHECK_HTTPS": "/h", "SERVICE_CHECK_HTTPS_METHOD": "POST", "SERVICE_CHECK_TLS_SKIP_VERIFY": "true",
          "SERVICE_CHECK_TLS_SERVER_NAME": "web.internal"},
         CheckSpec(ID, CheckKind.HTTPS, "HTTPS check", target="https://10.0.0.5:32000/h", method="POST", tls_skip_verify=True,
                   tls_server_name="web.internal", interval="10s")),
        ({"SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_TLS_SERVER_NAME": "web.internal"},
         CheckSpec(ID, CheckKind.HTTP, "HTTP check", target="http://10.0.0.5:32000/", interval="10s")),
        ({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_TIMEOUT": "2s", "SERVICE_CHECK_INTERVAL": "5s"},
         CheckSpec(ID, CheckKind.TCP, "TCP check", target="10.0.0.5:32000", interval="5s", timeout="2s")),
        ({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_TLS_SKIP_VERIFY": "no"},
         CheckSpec(ID, CheckKind.TCP, "TCP check", target="10.0.0.5:32000", tls_skip_verify=False, interval="10s")),
        ({"SERVICE_CHECK_GRPC": "true"}, CheckSpec(ID, CheckKind.GRPC, "GRPC check", target="10.0.0.5:32000", interval="10s")),
        ({"SERVICE_CHECK_GRPC": "my.Service", "SERVICE_CHECK_GRPC_USE_TLS": "yes", "SERVICE_CHECK_TLS_SKIP_VERIFY": "1"},
         CheckSpec(ID, CheckKind.GRPC, "GRPC check", target="10.0.0.5:32000/my.Service", grpc_use_tls=True, tls_skip_verify=True,
                   interval="10s")),
        ({"SERVICE_CHECK_TTL": "30s"}, CheckSpec(ID, CheckKind.TTL, "TTL check", ttl="30s")),
        ({"SERVICE_CHECK_DOCKER": "/bin/check --deep 'a b'"},
         CheckSpec(ID, CheckKind.DOCKER, "DOCKER check", docker_container_id=CID, args=("/bin/check", "--deep", "a b"),
                   interval="10s")),
        ({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_INITIAL_STATUS": "Passing", "SERVICE_CHECK_DEREGISTER_AFTER": "90m",
          "SERVICE_CHECK_SUCCESS_BEFORE_PASSING": "2", "SERVICE_CHECK_FAILURES_BEFORE_CRITICAL": "0", "SERVICE_CHECK_NOTES": "n"},
         CheckSpec(ID, CheckKind.TCP, "TCP check", target="10.0.0.5:32000", interval="10s", initial_status="passing",
                   deregister_critical_after="90m", success_before_passing=2, failures_before_critical=0, notes="n")),
    ],
    ids=["http", "http-method", "https-tls", "http-has-no-tls-server-name", "tcp-timeout", "tcp-skip-verify-set-false", "grpc",
         "grpc-service-tls", "ttl", "docker", "common-settings"],
)
def test_check_settings(env, check):
    assert only(env) == check


def test_a_udp_check_on_a_udp_port():
    assert only({"SERVICE_CHECK_UDP": "1"}, protocol="udp") == CheckSpec(f"{ID}:udp", CheckKind.UDP, "UDP check",
                                                                         target="10.0.0.5:32000",
                                                                       interval="10s")


def test_headers_from_several_lines_and_keys():
    env = {"SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_HEADER": "Authorization: Bearer x\nX-A: 1",
           "SERVICE_CHECK_HEADER_2": "X-A: 2"}
    assert only(env).headers == (("Authorization", ("Bearer x",)), ("X-A", ("1", "2")))


def test_a_header_splits_at_its_first_colon_and_a_bad_or_empty_line_skips_only_itself():
    env = {"SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_HEADER": "no colon\n\nX-At: 10:30\n\nX-B: 1"}
    assert only(env).headers == (("X-At", ("10:30",)), ("X-B", ("1",)))


@pytest.mark.parametrize(("kind", "key"),
                         [("HTTP", "METHOD"), ("HTTP", "HTTP_METHOD"), ("HTTPS", "HTTPS_METHOD"), ("HTTPS", "HTTP_METHOD")])
def test_the_http_method_may_be_given_by_any_of_its_keys(kind, key):
    assert only({f"SERVICE_CHECK_{kind}": "/", f"SERVICE_CHECK_{key}": "post"}).method == "POST"


def test_a_check_cmd_alone_is_named_as_unsupported_not_as_settings_without_a_type():
    said = warnings({"SERVICE_CHECK_CMD": "/x"})
    assert "check_cmd needs registrator's progrium/consul helper" in said
    assert "without a check type" not in said


def test_a_second_check_type_is_named_as_its_numbered_key_would_be():
    assert "e.g. SERVICE_CHECK_1_TCP" in warnings({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_HTTP": "/"})


@pytest.mark.parametrize("value", ["false", "0", "no", "off", "OFF"])
def test_a_tcp_check_set_to_a_false_value_is_left_out(value):
    assert checks({"SERVICE_CHECK_TCP": value}) == {}


def test_port_and_protocol_scoped_checks():
    env = {"SERVICE_53_UDP_CHECK_UDP": "true", "SERVICE_53_CHECK_TCP": "true"}
    assert only(env, port=53, protocol="udp").kind is CheckKind.UDP
    assert only(env, port=53, protocol="tcp").kind is CheckKind.TCP


def test_numbered_checks_each_get_their_own_id_and_settings():
    env = {"SERVICE_CHECK_HTTP": "/a", "SERVICE_CHECK_1_TCP": "true", "SERVICE_CHECK_1_INTERVAL": "3s",
           "SERVICE_CHECK_2_TTL": "1m"}
    found = checks(env)
    assert list(found) == ["service:h:web:80", "service:h:web:80#1", "service:h:web:80#2"]
    assert found["service:h:web:80#1"].interval == "3s"
    assert found["service:h:web:80"].interval == "10s"


def test_check_keys_are_classified_once_into_check_groups_and_warnings():
    entries = {
        "check_10_ttl": Entry("1m", "env SERVICE_CHECK_10_TTL"),
        "check_interval": Entry("5s", "env SERVICE_CHECK_INTERVAL"),
        "check_tcp": Entry("true", "env SERVICE_80_TCP_CHECK_TCP"),
        "check_2_http": Entry("/", "label SERVICE_80_CHECK_2_HTTP"),
        "check_bogus": Entry("x", "env SERVICE_CHECK_BOGUS"),
        "check_١_tcp": Entry("true", "env SERVICE_CHECK_١_TCP"),
        "region": Entry("eu", "env SERVICE_REGION"),
    }
    found = check_keys(PortMetadata(entries, port_scoped=frozenset({"check_tcp", "check_2_http"}),
                                    protocol_scoped=frozenset({"check_tcp"})))
    assert found.groups == (
        CheckGroup("", {"interval": entries["check_interval"], "tcp": entries["check_tcp"]}, {"interval": 2, "tcp": 0}),
        CheckGroup("2", {"http": entries["check_2_http"]}, {"http": 1}),
        CheckGroup("10", {"ttl": entries["check_10_ttl"]}, {"ttl": 2}),
    )
    assert found.keys == {"check_10_ttl", "check_interval", "check_tcp", "check_2_http", "check_bogus", "check_١_tcp"}
    assert found.warnings == ("env SERVICE_CHECK_BOGUS: unknown check setting 'check_bogus'; ignored",
                              "env SERVICE_CHECK_١_TCP: unknown check setting 'check_١_tcp'; ignored")


def test_one_type_per_check_in_registrator_precedence():
    assert only({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_HTTP": "/"}).kind is CheckKind.HTTP
    assert "only one check type per check (http is used)" in warnings({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_HTTP": "/"})


def test_ipv6_targets_are_bracketed():
    assert only({"SERVICE_CHECK_TCP": "true"}, with_ip(SETTINGS, "2001:db8::5")).target == "[2001:db8::5]:32000"


@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_tcp_false_means_no_check(value):
    assert checks({"SERVICE_CHECK_TCP": value}) == {}


def test_script_checks_need_the_flag_and_the_agent():
    env = {"SERVICE_CHECK_SCRIPT": 'sh -c "nc -z $SERVICE_IP $SERVICE_PORT"'}
    assert checks(env) == {}
    assert "refused unless the agent runs with --allow-script-checks" in warnings(env)
    allowed = replace(SETTINGS, checks=CheckSettings(allow_scripts=True))
    assert only(env, allowed) == CheckSpec(ID, CheckKind.SCRIPT, "SCRIPT check", args=("sh", "-c", "nc -z 10.0.0.5 "
                                                                                                   "32000"), interval="10s")
    unable = with_scripts(replace(SETTINGS, checks=CheckSettings(allow_scripts=True)), False)
    assert checks(env, unable) == {}
    assert "does not run script checks" in warnings(env, unable)


def test_docker_checks_need_the_agent_to_run_scripts():
    settings = with_scripts(SETTINGS, False)
    assert checks({"SERVICE_CHECK_DOCKER": "true"}, settings) == {}


def test_global_initial_status_applies_unless_the_check_sets_one():
    settings = replace(SETTINGS, checks=CheckSettings(initial_status="passing"))
    assert only({"SERVICE_CHECK_TCP": "true"}, settings).initial_status == "passing"
    assert only({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_INITIAL_STATUS": "warning"}, settings).initial_status == "warning"


@pytest.mark.parametrize(
    ("env", "warning", "kept"),
    [
        ({"SERVICE_CHECK_TCP": "1", "SERVICE_CHECK_INTERVAL": "10 seconds"}, "SERVICE_CHECK_INTERVAL: '10 seconds' is not a "
                                                                             "duration", {"interval": "10s"}),
        ({"SERVICE_CHECK_TCP": "1", "SERVICE_CHECK_INITIAL_STATUS": "ok"}, "'ok' is not one of passing, warning, "
                                                                           "critical", {"initial_status": ""}),
        ({"SERVICE_CHECK_TCP": "1", "SERVICE_CHECK_FAILURES_BEFORE_CRITICAL": "x"}, "'x' is not a whole number",
         {"failures_before_critical": None}),
        ({"SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_HEADER": "no colon"}, "'no colon' is not 'Name: value'", {"headers": ()}),
        ({"SERVICE_CHECK_DOCKER": "it's"}, "cannot split", None),
        ({"SERVICE_CHECK_TTL": "soon"}, "'soon' is not a duration", None),
        ({"SERVICE_CHECK_INTERVAL": "5s"}, "check settings without a check type", None),
        ({"SERVICE_CHECK_CMD": "/x"}, "check_cmd needs registrator's progrium/consul helper", None),
    ],
)
def test_bad_check_settings_warn_and_keep_what_is_valid(env, warning, kept):
    assert warning in warnings(env)
    found = checks(env)
    if kept is None:
        assert found == {}
    else:
        [check] = found.values()
        assert {name: getattr(check, name) for name in kept} == kept


def test_docker_healthcheck_gets_a_mirror_ttl_check_and_its_service_a_status():
    snapshot = {"has_healthcheck": True, "health": "unhealthy", "health_output": "boom"}
    found = checks({}, **snapshot)
    assert found == {"service:h:web:80#docker-health": CheckSpec(
        "service:h:web:80#docker-health", CheckKind.DOCKER_HEALTH, "Docker HEALTHCHECK", ttl="90s", initial_status="critical",
        notes="mirrors the container's Docker health status")}
    desired = desired_services(container({}, **snapshot), SETTINGS)
    assert dict(desired.check_status) == {"h:web:80": ("critical", "boom")}


def test_a_check_is_a_mirror_by_its_kind_not_its_id():
    desired = desired_services(container({"SERVICE_ID": "web:docker-health", "SERVICE_CHECK_TCP": "true"}), SETTINGS)
    assert [c.check_id for spec in desired.services.values() for c in spec.checks] == ["service:web:docker-health"]
    assert dict(desired.check_status) == {}


@pytest.mark.parametrize(
    ("health", "initial", "expected"),
    [("healthy", None, "passing"), ("unhealthy", "passing", "critical"), ("starting", None, "critical"),
     ("starting", "warning", "warning")],
)
def test_mirror_status(health, initial, expected):
    snapshot = container({}, has_healthcheck=True, health=health)
    assert mirror_status(snapshot, CheckSettings(initial_status=initial))[0] == expected


def test_mirroring_can_be_turned_off():
    settings = replace(SETTINGS, checks=CheckSettings(docker_health=False))
    assert checks({}, settings, has_healthcheck=True, health="healthy") == {}


def test_a_changed_check_changes_the_registration_hash():
    first = desired_services(container({"SERVICE_CHECK_HTTP": "/a"}), SETTINGS).services
    second = desired_services(container({"SERVICE_CHECK_HTTP": "/b"}), SETTINGS).services
    assert [s.meta["registrator-hash"] for s in first.values()] != [s.meta["registrator-hash"] for s in second.values()]


@pytest.mark.parametrize(
    ("setting", "value", "warning"),
    [
        ("INTERVAL", "0s", "env SERVICE_CHECK_INTERVAL: '0s' is not more than 0; default 10s used"),
        ("INTERVAL", "0.5ns", "env SERVICE_CHECK_INTERVAL: '0.5ns' is not more than 0; default 10s used"),
        ("INTERVAL", "99999999999999h", "env SERVICE_CHECK_INTERVAL: '99999999999999h' is longer than Go's limit of 2562047h; "
                                        "default 10s used"),
        ("INTERVAL", "2562047h48m", "env SERVICE_CHECK_INTERVAL: '2562047h48m' is longer than Go's limit of 2562047h; default "
                                    "10s used"),
        ("INTERVAL", "2562047h47m16.854775808s", "is longer than Go's limit of 2562047h; default 10s used"),
        ("INTERVAL", "9" * 5000 + "s", "is longer than Go's limit of 2562047h; default 10s used"),
        ("INTERVAL", "１０s", "env SERVICE_CHECK_INTERVAL: '１０s' is not a duration (like 10s, 1m30s); default 10s used"),
        ("INTERVAL", "١٠s", "env SERVICE_CHECK_INTERVAL: '١٠s' is not a duration (like 10s, 1m30s); default 10s used"),
        ("TIMEOUT", "0s", "env SERVICE_CHECK_TIMEOUT: '0s' is not more than 0; Consul's default used"),
        ("TIMEOUT", "2562048h", "env SERVICE_CHECK_TIMEOUT: '2562048h' is longer than Go's limit of 2562047h; Consul's default "
                                "used"),
        ("DEREGISTER_AFTER", "0m", "env SERVICE_CHECK_DEREGISTER_AFTER: '0m' is not more than 0; not set"),
        ("DEREGISTER_AFTER", "١m", "env SERVICE_CHECK_DEREGISTER_AFTER: '١m' is not a duration (like 10s, 1m30s); not set"),
    ],
    ids=["interval-zero", "interval-below-a-nanosecond", "interval-past-int64", "interval-just-past-int64",
         "interval-a-nanosecond-past-int64", "interval-5000-digits",
         "interval-fullwidth-digits", "interval-arabic-indic-digits", "timeout-zero", "timeout-past-int64",
         "deregister-after-zero",
         "deregister-after-arabic-indic-digit"],
)
def test_durations_consul_would_refuse_warn_and_fall_back(setting, value, warning):
    env = {"SERVICE_CHECK_TCP": "true", f"SERVICE_CHECK_{setting}": value}
    assert warning in warnings(env)
    assert only(env) == CheckSpec(ID, CheckKind.TCP, "TCP check", target="10.0.0.5:32000", interval="10s")


@pytest.mark.parametrize("value", ["1m30s", "1.5h", "500ms", "250us", "250µs", "250μs", "2562047h", "1ns", "0.5s",
                                   "0000000000000000000001s", "2562047h47m16.854775807s", "9223372036854775807ns"])
def test_durations_in_gos_syntax_are_passed_on(value):
    assert only({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_INTERVAL": value}).interval == value


@pytest.mark.parametrize("value", ["0s", "0", "99999999999999h", "３０s"])
def test_a_ttl_consul_would_refuse_leaves_the_ttl_check_out(value):
    env = {"SERVICE_CHECK_TTL": value}
    assert checks(env) == {}
    assert f"env SERVICE_CHECK_TTL: {value!r} " in warnings(env) and "; TTL check left out" in warnings(env)


@pytest.mark.parametrize(
    ("value", "warning"),
    [("３", "env SERVICE_CHECK_SUCCESS_BEFORE_PASSING: '３' is not a whole number; ignored"),
     ("2147483648", "env SERVICE_CHECK_SUCCESS_BEFORE_PASSING: '2147483648' is more than 2147483647; ignored"),
     ("9" * 5000, "is more than 2147483647; ignored")],
    ids=["fullwidth-digit", "past-int32", "5000-digits"],
)
def test_check_counts_are_ascii_digits_within_consuls_int(value, warning):
    env = {"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_SUCCESS_BEFORE_PASSING": value}
    assert warning in warnings(env)
    assert only(env) == CheckSpec(ID, CheckKind.TCP, "TCP check", target="10.0.0.5:32000", interval="10s")


@pytest.mark.parametrize(("value", "count"), [("2147483647", 2147483647), ("0" * 5000 + "3", 3)],
                         ids=["largest", "5000-leading-zeros"])
def test_counts_in_range_are_passed_on(value, count):
    assert only({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_FAILURES_BEFORE_CRITICAL": value}).failures_before_critical == count


@pytest.mark.parametrize("number", ["١", "9" * 5000], ids=["arabic-indic-digit", "5000-digits"])
def test_check_numbers_are_a_few_ascii_digits(number):
    env = {f"SERVICE_CHECK_{number}_TCP": "true"}
    assert checks(env) == {}
    assert f"env SERVICE_CHECK_{number}_TCP: unknown check setting 'check_{number.lower()}_tcp'; ignored" in warnings(env)


@pytest.mark.parametrize(("first", "second"), [
    ({"SERVICE_ID": "a", "SERVICE_CHECK_1_TCP": "true"}, {"SERVICE_ID": "a:1", "SERVICE_CHECK_TCP": "true"}),
    ({"SERVICE_ID": "a"}, {"SERVICE_ID": "a:docker-health", "SERVICE_CHECK_TCP": "true"}),
], ids=["numbered-vs-unnumbered", "mirror-vs-unnumbered"])
def test_no_two_services_can_have_a_check_id_in_common(first, second):
    """A check ID is the agent's, not the service's: a container could otherwise take over another's check."""
    ids_first = set(checks(first, has_healthcheck=True))
    ids_second = set(checks(second, has_healthcheck=True))
    assert ids_first and ids_second and not ids_first & ids_second


def test_check_ids_separate_the_service_id_with_a_character_service_ids_cannot_hold():
    assert set(checks({"SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_2_HTTP": "/"}, has_healthcheck=True)) == {
        "service:h:web:80", "service:h:web:80#2", "service:h:web:80#docker-health"}


def test_an_unnumbered_check_comes_before_check_zero_whatever_the_order_of_the_keys():
    found = checks({"SERVICE_CHECK_0_TCP": "true", "SERVICE_CHECK_HTTP": "/"})
    assert [(c.check_id, c.kind) for c in found.values()] == [(ID, CheckKind.HTTP), (f"{ID}#0", CheckKind.TCP)]


def test_docker_exec_checks_put_the_service_address_and_port_in_their_command():
    check = only({"SERVICE_CHECK_DOCKER": "probe $SERVICE_IP:$SERVICE_PORT"})
    assert (check.kind, check.args) == (CheckKind.DOCKER, ("probe", "10.0.0.5:32000"))


@pytest.mark.parametrize(("env", "settings", "warning"), [
    ({"SERVICE_CHECK_SCRIPT": "sh -c 'unclosed"}, replace(SETTINGS, checks=CheckSettings(allow_scripts=True)),
     "env SERVICE_CHECK_SCRIPT: cannot split \"sh -c 'unclosed\": No closing quotation; check left out"),
    ({"SERVICE_CHECK_DOCKER": "true"}, with_scripts(SETTINGS, False),
     "env SERVICE_CHECK_DOCKER: the Consul agent does not run Docker exec checks (enable_script_checks); check left out"),
], ids=["script-that-cannot-be-split", "docker-on-an-agent-without-script-checks"])
def test_command_checks_that_cannot_run_are_left_out_with_one_warning(env, settings, warning):
    assert (checks(env, settings), warnings(env, settings)) == ({}, warning)


def test_a_container_without_a_health_verdict_yet_shows_unknown():
    assert mirror_status(container({}, has_healthcheck=True, health=""), CheckSettings()) == ("critical", "Docker health: "
                                                                                                          "unknown")


@pytest.mark.parametrize(("env", "protocol", "warning"), [
    ({"SERVICE_CHECK_HTTP": "/health%zz"}, "tcp", "env SERVICE_CHECK_HTTP: '/health%zz' is no URL path Consul takes (an invalid "
                                                  "%-escape); check left out"),
    ({"SERVICE_CHECK_HTTPS": "/a\r\nHost: x"}, "tcp",
     "env SERVICE_CHECK_HTTPS: '/a\\r\\nHost: x' is no URL path Consul takes (a control character); check left out"),
    ({"SERVICE_CHECK_TCP": "true"}, "udp", "env SERVICE_CHECK_TCP: a TCP check cannot reach a UDP port; check left out"),
    ({"SERVICE_CHECK_HTTP": "/"}, "udp", "env SERVICE_CHECK_HTTP: a HTTP check cannot reach a UDP port; check left out"),
    ({"SERVICE_CHECK_GRPC": "true"}, "sctp", "env SERVICE_CHECK_GRPC: a GRPC check cannot reach a SCTP port; check left out"),
    ({"SERVICE_CHECK_UDP": "true"}, "tcp", "env SERVICE_CHECK_UDP: a UDP check cannot reach a TCP port; check left out"),
], ids=["bad-escape", "crlf", "tcp-on-udp", "http-on-udp", "grpc-on-sctp", "udp-on-tcp"])
def test_checks_that_can_never_pass_are_left_out_with_one_warning(env, protocol, warning):
    """Consul took them silently and showed the service critical for ever (issue 21)."""
    desired = desired_services(container(env, protocol=protocol), SETTINGS)
    [spec] = desired.services.values()
    assert (spec.checks, desired.warnings) == ((), (warning,))


def test_a_path_with_valid_escapes_is_kept():
    assert only({"SERVICE_CHECK_HTTP": "/a%20b?x=%2F"}).target == "http://10.0.0.5:32000/a%20b?x=%2F"
