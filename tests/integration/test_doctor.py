"""`registrator doctor` against the real engine and real Consul agents: a dev agent passes, a token
without service:write fails naming the right and the names it was checked for, and what cannot be
reached is a line with its fix, never a traceback."""

from __future__ import annotations

import json

import pytest

from tests.integration.rig import free_port, run_registrator
from tests.integration.test_security import ACL, READ_RULES, ROOT_TOKEN, WRITE_RULES, make_token

CHECKS = ["docker", "host", "consul", "service:write", "agent:read", "script-checks", "dns", "ecs"]
ECS_LABELS = {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:eu-west-1:111122223333:task/prod/0123456789abcdef",
              "com.amazonaws.ecs.container-name": "app", "com.amazonaws.ecs.task-definition-family": "shop"}


@pytest.fixture
def secured(private_consul):
    consul = private_consul(ACL)
    consul.token = ROOT_TOKEN
    return consul


def doctor(consul, *args: str, env: dict[str, str] | None = None):
    """`registrator doctor` as this host, with the test Consul's DNS port, and the lines it printed."""
    result = run_registrator("doctor", "--hostname", "doctor-test", "--ip-from", "interface:lo",
                             "--dns", f"127.0.0.1:{consul.dns_port}", *args, consul.uri, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result, {line.split(":", 1)[0]: line for line in result.stdout.splitlines()}


def consul_version(consul) -> str:
    return str(json.loads(consul.get("/v1/agent/self"))["Config"]["Version"])


def test_a_dev_consul_passes_every_check_and_exits_0(consul, docker_client):
    result, lines = doctor(consul)

    assert result.returncode == 0, result.stdout
    api = docker_client.version()["ApiVersion"]
    assert lines["✓ docker"] == f"✓ docker: unix:///var/run/docker.sock answers, API {api}"
    assert lines["✓ host"] == ("✓ host: identity doctor-test (--hostname); published ports registered at 127.0.0.1 "
                               "(--ip-from interface:lo)")
    assert lines["✓ consul"].startswith(f"✓ consul: {consul.uri.replace('consul://', 'http://')} answers, leader 127.0.0.1:")
    assert lines["✓ consul"].endswith(f"; Consul {consul_version(consul)}")
    assert lines["✓ service"] == "✓ service:write: ACLs are disabled on this Consul agent: every call is allowed"
    assert lines["✓ script-checks (optional)"].startswith("✓ script-checks (optional): the Consul agent runs script and Docker "
                                                          "exec checks")
    assert lines["✓ dns (optional)"].startswith(f"✓ dns (optional): 127.0.0.1:{consul.dns_port} answers consul.service.consul: "
                                                "127.0.0.1:")
    assert result.stdout.splitlines()[-1] == "every required check passed"


def test_the_identity_defaults_to_the_docker_daemon_name(consul, docker_client):
    result = run_registrator("doctor", "--ip-from", "interface:lo", "--json", consul.uri)

    host = next(entry for entry in json.loads(result.stdout) if entry["check"] == "host")
    assert host["detail"].startswith(f"identity {docker_client.info()['Name']} (the Docker daemon's name);")


def test_json_lists_every_check_in_order_with_what_decides_the_exit_status(consul):
    result, _ = doctor(consul, "--json")

    entries = json.loads(result.stdout)
    assert [entry["check"] for entry in entries] == CHECKS
    assert all(set(entry) == {"check", "ok", "required", "detail", "fix"} for entry in entries)
    assert [entry["check"] for entry in entries if entry["required"]] == ["docker", "host", "consul", "service:write"]
    assert next(entry for entry in entries if entry["check"] == "ecs") == {
        "check": "ecs", "ok": None, "required": False, "detail": "skipped: no running container has ECS labels", "fix": ""}


def test_a_token_without_service_write_fails_naming_the_right_and_the_name_checked(secured, workload):
    token = make_token(secured, "reader", READ_RULES)
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    result, lines = doctor(secured, env={"CONSUL_HTTP_TOKEN": token["SecretID"]})

    assert result.returncode == 1
    assert lines["✗ service"] == "✗ service:write: the token lacks service:write for the name running containers would get: web"
    assert 'add service_prefix "" { policy = "write" }' in result.stdout
    assert result.stdout.splitlines()[-1] == "required checks failed: service:write"
    assert lines["✗ agent"].startswith("✗ agent:read (optional): the agent will leave out script and Docker exec checks:")
    assert "lacks permission 'agent:read'" in lines["✗ agent"] and token["AccessorID"] in lines["✗ agent"]
    assert lines["✓ consul"].endswith("; version hidden by the ACL (see agent:read)")
    assert token["SecretID"] not in result.stdout + result.stderr
    assert secured.services() == {}, "doctor registers nothing"


def test_a_token_with_service_write_passes_though_default_deny_dns_answers_nothing(secured, workload):
    token = make_token(secured, "registrator", WRITE_RULES)
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    result, lines = doctor(secured, env={"CONSUL_HTTP_TOKEN": token["SecretID"]})

    assert result.returncode == 0, result.stdout
    assert lines["✓ service"] == "✓ service:write: the token has service:write for the name running containers would get: web"
    assert lines["✓ agent"] == "✓ agent:read (optional): the Consul agent's configuration is readable (/v1/agent/self)"
    assert lines["✓ consul"].endswith(f"; Consul {consul_version(secured)}")
    assert lines["✗ dns (optional)"].endswith("answers, but not with consul.service.consul's servers")


def test_a_token_for_some_names_fails_for_the_others(secured, workload):
    token = make_token(secured, "web-only", 'service "web" { policy = "write" } agent_prefix "" { policy = "read" }')
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    workload("http", env={"SERVICE_NAME": "api"}, ports={80: None})

    result, lines = doctor(secured, env={"CONSUL_HTTP_TOKEN": token["SecretID"]})

    assert result.returncode == 1
    assert lines["✗ service"] == ("✗ service:write: the token lacks service:write for 1 of the 2 names running containers "
                                  "would get: api")


def test_a_token_consul_does_not_know_is_told_apart_from_a_missing_right(secured):
    result, lines = doctor(secured, env={"CONSUL_HTTP_TOKEN": "00000000-dead-beef-0000-000000000000"})

    assert result.returncode == 1
    assert lines["✗ service"] == ("✗ service:write: Consul internal/acl/authorize: the ACL token is not known to Consul (yet): "
                                  "ACL not found")
    assert "fix: use a token this Consul knows" in result.stdout
    assert "dead-beef" not in result.stdout


def test_an_unreachable_consul_fails_and_the_checks_that_need_it_are_skipped(consul, docker_client):
    port = free_port()
    result = run_registrator("doctor", "--hostname", "h", "-ip", "10.0.0.5", "--dns", f"127.0.0.1:{consul.dns_port}",
                             f"consul://127.0.0.1:{port}")

    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[2] == (f"✗ consul: Consul status/leader at http://127.0.0.1:{port}: "
                        "ConnectionError: [Errno 111] Connection refused")
    assert lines[3].startswith("    fix: start the Consul agent")
    assert lines[4:7] == ["- service:write: skipped: needs Consul (above)", "- agent:read (optional): skipped: needs Consul "
                                                                            "(above)",
                          "- script-checks (optional): skipped: needs Consul (above)"]
    assert lines[-1] == "required checks failed: consul; required checks not run: service:write"
    assert not result.stderr


def test_an_unreachable_docker_fails_and_consul_is_still_checked(consul):
    result, lines = doctor(consul, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})

    assert result.returncode == 1
    assert lines["✗ docker"].startswith("✗ docker: unix:///nonexistent/docker.sock: cannot connect to Docker:")
    assert lines["- host"] == "- host: skipped: needs Docker: the identity is the Docker daemon's name unless --hostname"
    assert "✓ consul" in lines
    assert lines["- ecs (optional)"] == "- ecs (optional): skipped: needs Docker, to find ECS containers"


def test_a_dns_port_where_nothing_answers_fails_an_optional_check_only(consul):
    port = free_port()
    result = run_registrator("doctor", "--hostname", "h", "-ip", "10.0.0.5", "--dns", f"127.0.0.1:{port}", consul.uri)

    assert result.returncode == 0, result.stdout
    assert f"✗ dns (optional): DNS query consul.service.consul. to 127.0.0.1:{port}:" in result.stdout


def awsvpc_task(workload):
    """An ECS awsvpc task as Docker shows it: in its pause container's network namespace, with no
    address Docker knows (the ENI is the ECS agent's), so `run` asks the ECS agent for it."""
    pause = workload("tcp", network_mode="none").get_wrapped_container()  # as ECS's pause container: its own port
    return workload("http", labels=ECS_LABELS, network_mode=f"container:{pause.id}").get_wrapped_container()


def test_with_awsvpc_tasks_the_ecs_agent_is_asked_about_one(consul, workload, fake_endpoint):
    task = awsvpc_task(workload)
    body = {"Arn": ECS_LABELS["com.amazonaws.ecs.task-arn"],
            "Containers": [{"DockerId": task.id, "Name": "app",
                            "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.1.2.3"]}]}]}
    ecs_agent = fake_endpoint(lambda method, path, headers: (200, json.dumps(body)) if f"dockerid={task.id}" in path
                              else (404, ""))

    result, lines = doctor(consul, "--ecs-agent-url", ecs_agent.url)

    assert result.returncode == 0, result.stdout
    assert lines["✓ ecs"] == f"✓ ecs: the ECS agent at {ecs_agent.url} answers for container {task.name} (task address 10.1.2.3)"


def test_with_awsvpc_tasks_an_unreachable_ecs_agent_fails_the_doctor(consul, workload):
    task = awsvpc_task(workload)

    result, lines = doctor(consul, "--ecs-agent-url", f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 1
    assert lines["✗ ecs"].endswith(f"awsvpc tasks need it for their address: {task.name}")
    assert result.stdout.splitlines()[-1] == "required checks failed: ecs"


def test_an_ecs_labelled_container_with_its_own_address_does_not_need_the_ecs_agent(consul, workload):
    """Any container may carry ECS labels; `run` asks the ECS agent only about awsvpc tasks."""
    labelled = workload("http", labels=ECS_LABELS, ports={80: None}).get_wrapped_container()

    result, lines = doctor(consul, "--ecs-agent-url", f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 0, result.stdout
    assert lines["✗ ecs (optional)"].endswith(f"ECS-labelled containers running, none of them awsvpc: {labelled.name}")
