"""`registrator doctor`: which checks decide the exit status, what each line says, and that every
check settles the host like `run` does but tries once instead of waiting."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from registrator.config import Options
from registrator.consul.endpoint import ConsulEndpoint
from registrator.mapping.settings import MappingPolicy
from registrator.ops.doctor import (
    ECS,
    HOST,
    PROBE_NAME,
    SERVICE_WRITE,
    Findings,
    Result,
    as_json,
    check_ecs,
    check_host,
    check_script_checks,
    default_dns,
    dns_result,
    healthy,
    render,
    running_containers,
    script_result,
    service_names,
    shown,
    skipped,
    write_result,
)
from tests.fakes import FakeConsul, FakeDocker, web
from tests.settings import cli_options, mapping_settings

ECS_TASK = {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:eu-west-1:1:task/c/abc", "com.amazonaws.ecs.container-name": "app"}


def options(**chosen: object) -> Options:
    return Options(consul=ConsulEndpoint(), mapping=MappingPolicy(), **chosen)  # type: ignore[arg-type]


def test_only_required_checks_decide_the_exit_status():
    optional_failure = [Result("docker", True, True, "up"), Result("dns", False, False, "no answer")]
    assert healthy(optional_failure)
    assert not healthy([*optional_failure, Result("consul", False, True, "refused")])


def test_a_required_check_that_was_skipped_did_not_pass():
    assert not healthy([Result("consul", False, True, "refused"), skipped(SERVICE_WRITE, True, "needs Consul (above)")])
    assert healthy([Result("consul", True, True, "up"), skipped(ECS, False, "no running container has ECS labels")])


def test_the_text_report_marks_each_line_shows_fixes_under_failures_and_names_what_failed():
    results = [
        Result("docker", True, True, "unix:///var/run/docker.sock answers, API 1.41", fix="never shown for a pass"),
        Result("consul", False, True, "connection refused", fix="start the Consul agent"),
        skipped(SERVICE_WRITE, True, "needs Consul (above)"),
        Result("dns", False, False, "timed out", fix="pass --dns HOST:PORT"),
    ]
    assert render(results).splitlines() == [
        "✓ docker: unix:///var/run/docker.sock answers, API 1.41",
        "✗ consul: connection refused",
        "    fix: start the Consul agent",
        "- service:write: skipped: needs Consul (above)",
        "✗ dns (optional): timed out",
        "    fix: pass --dns HOST:PORT",
        "required checks failed: consul; required checks not run: service:write",
    ]


def test_the_text_report_ends_with_the_verdict_when_all_required_checks_pass():
    assert render([Result("docker", True, True, "up"), Result("dns", False, False, "timed out")]).splitlines()[-1] == (
        "every required check passed")


def test_json_is_one_object_per_check_with_null_ok_for_a_skipped_one():
    results = [Result("consul", False, True, "refused", "start it"), skipped(SERVICE_WRITE, True, "needs Consul (above)")]
    assert json.loads(json.dumps(as_json(results))) == [
        {"check": "consul", "ok": False, "required": True, "detail": "refused", "fix": "start it"},
        {"check": "service:write", "ok": None, "required": True, "detail": "skipped: needs Consul (above)", "fix": ""},
    ]


def test_service_write_names_the_refused_names_among_those_checked():
    result = write_result(["api", "db", "web"], ["db", "web"], "", token=True)
    assert (result.ok, result.required) == (False, True)
    assert result.detail == "the token lacks service:write for 2 of the 3 names running containers would get: db, web"
    assert 'service_prefix "" { policy = "write" }' in result.fix


def test_service_write_passes_when_every_name_is_allowed_and_says_which_were_checked():
    result = write_result(["api", "web"], [], "", token=True)
    assert result.ok
    assert result.detail == "the token has service:write for the 2 names running containers would get: api, web"


def test_without_containers_a_stand_in_name_is_checked_and_said_so():
    result = write_result([], [PROBE_NAME], "", token=False)
    assert not result.ok
    assert result.detail == (f"the anonymous token (no token given) lacks service:write for {PROBE_NAME}, a stand-in: "
                             "no running container would register a service")
    assert "CONSUL_HTTP_TOKEN_FILE" in result.fix


def test_unknown_names_are_said_to_be_unknown_and_why():
    result = write_result([], [], "the host check failed", token=True)
    assert result.ok and result.detail.endswith(f"{PROBE_NAME}, a stand-in: the containers' names are unknown: the host check "
                                                "failed")


@pytest.mark.parametrize(("runs", "allowed", "ok"),
                         [(True, False, True), (True, True, True), (False, False, True), (False, True, False),
                                                     (None, True, None)])
def test_script_checks_fail_only_when_the_flag_asks_for_what_the_consul_agent_will_not_run(runs, allowed, ok):
    result = script_result(runs, allowed)
    assert (result.ok, result.required) == (ok, False)


def test_script_checks_are_read_from_the_consul_agent():
    assert check_script_checks(FakeConsul(scripts=False), allowed=True).fix.startswith("enable_script_checks = true")
    assert check_script_checks(FakeConsul(scripts=None), allowed=False).detail == (
        "skipped: the token may not read the Consul agent's configuration (agent:read)")


def test_dns_passes_only_with_an_answer_and_an_empty_one_points_at_the_acl():
    assert dns_result("127.0.0.1:8600", [("127.0.0.1", 8300)]) == Result(
        "dns", True, False, "127.0.0.1:8600 answers consul.service.consul: 127.0.0.1:8300")
    empty = dns_result("127.0.0.1:8600", [])
    assert empty.ok is False and "default token" in empty.fix


def test_dns_defaults_to_port_8600_on_the_consul_host():
    assert default_dns(ConsulEndpoint(host="10.0.0.5")) == "10.0.0.5:8600"
    assert default_dns(ConsulEndpoint(host="fd00::5")) == "[fd00::5]:8600"
    assert default_dns(ConsulEndpoint(socket="/run/consul.sock")) == "127.0.0.1:8600"


def test_container_supplied_names_are_shown_escaped_cut_short_and_capped():
    assert shown(["web\x1b[2J", "x" * 100]) == "'web\\x1b[2J', '" + "x" * 64 + "'"
    assert shown([f"s{i}" for i in range(8)]) == "s0, s1, s2, s3, s4 and 3 more"


def test_service_names_are_the_names_the_mapping_gives_running_containers():
    named = web("a", name="a", env={"SERVICE_NAME": "api"})
    unnamed = web("b", name="b")
    assert service_names([named, unnamed], mapping_settings()) == ["api", "nginx"]
    assert service_names([named, unnamed], mapping_settings(explicit=True)) == ["api"]


def test_the_host_is_settled_by_startup_rules_and_says_where_each_fact_came_from():
    found = Findings()
    result = check_host(options(ip_from="interface:lo"), FakeDocker(), found)
    assert result == Result(HOST, True, True, "identity docker-host (the Docker daemon's name); "
                                              "published ports registered at 127.0.0.1 (--ip-from interface:lo)")
    assert found.mapping is not None and found.mapping.host.name == "docker-host"


def test_the_host_check_tries_once_even_when_the_agent_would_retry_forever():
    docker = FakeDocker()
    docker.down = True
    result = check_host(options(retry_attempts=-1), docker, Findings())
    assert (result.ok, result.fix) == (False, "see the docker line")
    assert result.detail.startswith("Docker not reachable after 1 attempt:")


@pytest.mark.parametrize(("chosen", "name", "fix"), [
    ({"ip": "10.0.0.5"}, "rack/7", "pass --hostname NAME"),
    ({"ip_from": "interface:no-such-if"}, "docker-host", "pass -ip ADDR, or another --ip-from: route, interface:NAME, ec2, "
                                                         "docker"),
])
def test_a_host_fact_that_cannot_be_settled_fails_with_its_own_fix(chosen, name, fix):
    docker = FakeDocker()
    docker.name = name
    result = check_host(options(**chosen), docker, Findings())
    assert (result.ok, result.fix) == (False, fix)


def test_reading_the_containers_stops_at_the_first_failure_and_keeps_what_it_read():
    docker = FakeDocker()
    for container_id in ("a", "b", "c"):
        docker.containers[container_id] = web(container_id, name=container_id)
    docker.failing.add("b")
    containers, unread = running_containers(docker)
    assert [c.id for c in containers] == ["a"]
    assert unread == "docker inspect b: 500 Server Error"


def test_the_ecs_agent_is_not_checked_without_ecs_containers_or_with_no_ecs():
    plain = [web("a")]
    assert check_ecs("http://127.0.0.1:1", plain, "") == skipped(ECS, False, "no running container has ECS labels")
    assert check_ecs(None, [web("a")], "").detail == "skipped: ECS awareness is off (--no-ecs)"
    assert check_ecs("http://127.0.0.1:1", [], "docker ps: timed out").detail == (
        "skipped: not every container could be read: docker ps: timed out")


def test_with_awsvpc_tasks_an_unreachable_ecs_agent_is_a_required_failure():
    task = replace(web("a", name="ecs-app-1"), labels=MappingProxyType(ECS_TASK), network_mode="container:pause", ip="",
                   networks=())
    result = check_ecs("http://127.0.0.1:1", [task], "")
    assert (result.ok, result.required) == (False, True)
    assert "ecs-app-1" in result.detail and "--ecs-agent-url" in result.fix


def test_an_ecs_labelled_container_with_its_own_address_does_not_make_the_ecs_agent_required():
    """`run` asks the ECS agent only for a task with no address Docker knows; any container may carry the labels."""
    labelled = replace(web("a", name="labelled"), labels=MappingProxyType(ECS_TASK))
    result = check_ecs("http://127.0.0.1:1", [labelled], "")
    assert (result.ok, result.required) == (False, False)
    assert healthy([result])


def test_doctor_takes_the_run_flags_like_explain_does():
    parsed = cli_options(["doctor", "-hostname", "node-1", "-internal=true", "--dns", "10.0.0.5:8600", "--json",
                          "consul://10.0.0.5:8501"])
    assert (parsed.hostname, parsed.mapping.internal, parsed.consul.port) == ("node-1", True, 8501)


def test_the_doctor_imports_dnspython_only_when_it_checks_dns():
    """Every start of the agent imports cli.py; dnspython costs 20 ms of that."""
    result = subprocess.run([sys.executable, "-c", "import sys, cli; print(sorted(m for m in sys.modules if m.split('.')[0] == "
                                                   "'dns'))"],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
