"""Health checks against real Docker, Consul and dig: each check type follows the workload in and
out of DNS, and Docker's own HEALTHCHECK is mirrored into Consul."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest

from tests.integration.rig import eventually

SECOND = 1_000_000_000


def checks(consul) -> dict[str, dict]:
    return json.loads(consul.get("/v1/agent/checks"))


def status(consul, check_id: str) -> str:
    return str(checks(consul).get(check_id, {}).get("Status", "missing"))


def set_health(container, state: str) -> None:
    result = container.get_wrapped_container().exec_run(["/probe", "set", state])
    assert result.exit_code == 0, result.output


def service_id(agent, container, port: int | str) -> str:
    suffix = ":udp" if str(port).endswith("/udp") else ""
    return f"{agent.hostname}:{container.get_wrapped_container().name}:{str(port).split('/')[0]}{suffix}"


CHECK_TYPES = {
    "http": (80, {"CHECK_HTTP": "/health"}, []),
    "https": (443, {"CHECK_HTTPS": "/health", "CHECK_TLS_SKIP_VERIFY": "true"}, []),
    "grpc": (50051, {"CHECK_GRPC": "probe"}, []),
    "tcp": (9000, {"CHECK_TCP": "true"}, ["-internal"]),  # the userland proxy would accept for a closed port
    "udp": ("5353/udp", {"CHECK_UDP": "true"}, ["-internal"]),
    "docker": (80, {"CHECK_DOCKER": "/probe check"}, []),
    "script": (80, {"CHECK_SCRIPT": 'sh -c "curl -sf http://$SERVICE_IP:$SERVICE_PORT/health"'}, ["--allow-script-checks"]),
}


@pytest.mark.parametrize("kind", list(CHECK_TYPES))
def test_each_check_type_takes_the_instance_out_of_dns_and_back(kind, agent, workload, consul, resolve):
    port, keys, flags = CHECK_TYPES[kind]
    number = str(port).split("/")[0]
    agent.start("-explicit", *flags)
    env = {f"SERVICE_{number}_NAME": "probed", f"SERVICE_{number}_CHECK_INTERVAL": "1s",
           **{f"SERVICE_{number}_{key}": value for key, value in keys.items()}}
    probe = workload("probe", env=env, ports={} if "-internal" in flags else {port: None})
    check_id = f"service:{service_id(agent, probe, port)}"

    eventually(lambda: status(consul, check_id) == "passing", timeout=8, what=f"{kind} check passing")
    eventually(lambda: resolve("probed.service.consul"), what="in DNS")

    set_health(probe, "unhealthy")
    eventually(lambda: status(consul, check_id) == "critical", timeout=8, what=f"{kind} check critical")
    eventually(lambda: resolve("probed.service.consul") == [], what="out of DNS")

    set_health(probe, "healthy")
    eventually(lambda: status(consul, check_id) == "passing", timeout=8, what=f"{kind} check passing again")
    eventually(lambda: resolve("probed.service.consul"), what="back in DNS")


def test_http_check_sends_method_and_headers(agent, workload, consul):
    agent.start()
    env = {"SERVICE_NAME": "web", "SERVICE_CHECK_HTTP": "health", "SERVICE_CHECK_INTERVAL": "1s", "SERVICE_CHECK_METHOD": "get",
           "SERVICE_CHECK_HEADER": "Authorization: Bearer s3cret\nHost: probe.test", "SERVICE_CHECK_HEADER_TRACE": "X-Trace: 1"}
    probe = workload("probe", env=env, ports={80: None})
    eventually(lambda: status(consul, f"service:{service_id(agent, probe, 80)}") == "passing", timeout=8, what="passing")

    port = probe.get_exposed_port(80)
    seen = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/last-request", timeout=5).read())
    assert seen["method"] == "GET"
    assert seen["host"] == "probe.test"
    assert seen["headers"]["Authorization"] == ["Bearer s3cret"]
    assert seen["headers"]["X-Trace"] == ["1"]


def test_several_checks_per_service_all_must_pass(agent, workload, consul, resolve):
    agent.start()
    env = {"SERVICE_NAME": "multi", "SERVICE_CHECK_TTL": "1h", "SERVICE_CHECK_1_HTTP": "/health",
           "SERVICE_CHECK_1_INTERVAL": "1s",
           "SERVICE_CHECK_2_TCP": "true", "SERVICE_CHECK_2_INTERVAL": "1s", "SERVICE_CHECK_2_INITIAL_STATUS": "passing"}
    probe = workload("probe", env=env, ports={80: None})
    sid = service_id(agent, probe, 80)
    eventually(lambda: {f"service:{sid}", f"service:{sid}#1", f"service:{sid}#2"} <= set(checks(consul)), what="three checks")
    assert checks(consul)[f"service:{sid}"]["Type"] == "ttl"
    assert checks(consul)[f"service:{sid}#2"]["Type"] == "tcp"

    consul.put(f"/v1/agent/check/pass/service:{sid}")
    eventually(lambda: resolve("multi.service.consul"), timeout=8, what="all checks passing")
    set_health(probe, "unhealthy")  # fails the HTTP check; the TCP one still passes through the proxy
    eventually(lambda: resolve("multi.service.consul") == [], timeout=8, what="one failing check hides the instance")


def test_script_checks_are_refused_without_the_flag(agent, workload, consul):
    agent.start()
    probe = workload("probe", env={"SERVICE_NAME": "web", "SERVICE_CHECK_SCRIPT": "true"}, ports={80: None})
    sid = service_id(agent, probe, 80)

    eventually(lambda: sid in consul.services(), what="service registered")
    assert not [c for c in checks(consul).values() if c["ServiceID"] == sid]
    name = probe.get_wrapped_container().name
    assert f"container {name}: env SERVICE_CHECK_SCRIPT: script checks run on the Consul host" in agent.log()


def test_deregister_after_reaches_consul(agent, workload, consul):
    agent.start()
    probe = workload("probe", env={"SERVICE_NAME": "web", "SERVICE_CHECK_TCP": "true", "SERVICE_CHECK_DEREGISTER_AFTER": "30s"},
                     ports={80: None})
    check_id = f"service:{service_id(agent, probe, 80)}"

    # Consul keeps the field to itself, but says so when the value is below its 1m minimum.
    eventually(lambda: f"check has deregister interval below minimum: check={check_id}" in consul.log(), timeout=5,
               what="Consul received DeregisterCriticalServiceAfter")


def test_invalid_check_settings_are_warned_about_and_the_rest_registered(agent, workload, consul):
    agent.start()
    env = {"SERVICE_NAME": "web", "SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "soon",
           "SERVICE_CHECK_INITIAL_STATUS": "great", "SERVICE_CHECK_1_TTL": "forever", "SERVICE_CHECK_2_TCP": "true"}
    probe = workload("probe", env=env, ports={80: None})
    sid = service_id(agent, probe, 80)

    eventually(lambda: {f"service:{sid}", f"service:{sid}#2"} == {c for c, v in checks(consul).items() if v["ServiceID"] == sid},
               what="the valid checks")
    assert checks(consul)[f"service:{sid}"]["Interval"] == "10s"
    name = probe.get_wrapped_container().name
    for key in ("SERVICE_CHECK_INTERVAL", "SERVICE_CHECK_INITIAL_STATUS", "SERVICE_CHECK_1_TTL"):
        assert f"container {name}: env {key}:" in agent.log(), key


def test_docker_healthcheck_is_mirrored_into_consul(agent, workload, consul, resolve, docker_client):
    agent.start("--initial-status", "warning")
    healthcheck = {"test": ["CMD", "/probe", "check"], "interval": SECOND // 2, "timeout": SECOND, "retries": 1,
                   "start_period": 60 * SECOND}
    probe = workload("probe", env={"SERVICE_NAME": "mirrored", "PROBE_START_UNHEALTHY": "1"}, ports={80: None},
                     healthcheck=healthcheck)
    check_id = f"service:{service_id(agent, probe, 80)}#docker-health"

    def docker_health() -> str:
        return docker_client.api.inspect_container(probe.get_wrapped_container().id)["State"]["Health"]["Status"]

    assert docker_health() == "starting"
    eventually(lambda: status(consul, check_id) == "warning", what="starting → the initial status")
    for state, docker_state, consul_state in (("healthy", "healthy", "passing"), ("unhealthy", "unhealthy", "critical"),
                                              ("healthy", "healthy", "passing")):
        set_health(probe, state)
        eventually(lambda d=docker_state: docker_health() == d, timeout=10, interval=0.02, what=f"Docker {docker_state}")
        eventually(lambda c=consul_state: status(consul, check_id) == c, timeout=2, what=f"Consul {consul_state} within 2 s")
        eventually(lambda c=consul_state: bool(resolve("mirrored.service.consul")) is (c == "passing"), what="DNS follows")
    assert checks(consul)[check_id]["Output"] == "healthy"


def test_docker_health_ttl_keeps_a_live_agent_passing_and_expires_for_a_dead_one(agent, workload, consul):
    agent.start("--docker-health-ttl", "3")
    healthcheck = {"test": ["CMD", "/probe", "check"], "interval": SECOND // 2, "timeout": SECOND, "retries": 1}
    probe = workload("probe", env={"SERVICE_NAME": "mirrored"}, ports={80: None}, healthcheck=healthcheck)
    check_id = f"service:{service_id(agent, probe, 80)}#docker-health"
    eventually(lambda: status(consul, check_id) == "passing", timeout=10, what="passing")

    time.sleep(7)  # more than two TTLs
    assert status(consul, check_id) == "passing"

    os.kill(agent.process.pid, signal.SIGKILL)
    eventually(lambda: status(consul, check_id) == "critical", timeout=5, what="TTL expired without the agent")


def test_no_docker_health_flag_turns_mirroring_off(agent, workload, consul):
    agent.start("--no-docker-health")
    probe = workload("healthcheck", env={"SERVICE_NAME": "web"}, ports={80: None})
    sid = service_id(agent, probe, 80)

    eventually(lambda: sid in consul.services(), what="registered")
    assert not [c for c in checks(consul).values() if c["ServiceID"] == sid]


def test_restarting_the_agent_neither_rewrites_nor_flaps_checks(agent, workload, consul):
    agent.start()
    env = {"SERVICE_NAME": "web", "SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "1s"}
    probe = workload("probe", env=env, ports={80: None}, healthcheck={"test": ["CMD", "/probe", "check"], "interval": SECOND})
    sid = service_id(agent, probe, 80)
    eventually(lambda: all(status(consul, c) == "passing" for c in (f"service:{sid}", f"service:{sid}#docker-health")),
               timeout=10, what="both checks passing")
    before = {c["CheckID"]: c["ModifyIndex"] for c in json.loads(consul.get("/v1/health/checks/web"))}
    writes = consul.writes()

    agent.stop()
    agent.start()
    time.sleep(2)

    after = {c["CheckID"]: c["ModifyIndex"] for c in json.loads(consul.get("/v1/health/checks/web"))}
    assert after == before
    assert consul.writes() == writes
