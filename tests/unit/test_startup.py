"""Startup settles host identity, host IP and Consul's abilities once, for run, sync and explain alike."""

from __future__ import annotations

import re
import threading

import pytest

from registrator.config import Options
from registrator.consul.endpoint import ConsulEndpoint
from registrator.mapping.settings import HostFacts, MappingPolicy
from registrator.startup import StartupError, Stopped, resolve
from tests.fakes import FakeConsul, FakeDocker, joined


def options(**chosen: object) -> Options:
    return Options(consul=ConsulEndpoint(), mapping=MappingPolicy(), retry_interval_ms=1, **chosen)  # type: ignore[arg-type]


def test_ip_flag_and_hostname_flag_win_and_the_consul_agent_is_asked_about_script_checks():
    consul = FakeConsul(scripts=True)
    settings = resolve(options(hostname="node-1", ip="10.0.0.7"), FakeDocker(), consul, threading.Event())
    assert settings.mapping.host == HostFacts("node-1", "10.0.0.7", "-ip", runs_scripts=True, agent=settings.mapping.host.agent)


def test_the_docker_daemon_names_the_host_and_ip_from_detects_its_address():
    settings = resolve(options(ip_from="interface:lo"), FakeDocker(), FakeConsul(scripts=None), threading.Event())
    host = settings.mapping.host
    assert host == HostFacts("docker-host", "127.0.0.1", "--ip-from interface:lo", runs_scripts=False, agent=host.agent)
    assert not host.forced


def test_each_agent_process_gets_its_own_instance_named_after_the_machine_and_the_process(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "ip-10-0-0-7.ec2 internal/x")
    monkeypatch.setattr("os.getpid", lambda: 1)
    first, second = (resolve(options(ip="10.0.0.7"), FakeDocker(), None, threading.Event()).mapping.host.agent for _ in range(2))
    assert re.fullmatch(r"ip-10-0-0-7\.ec2_internal_x:1:[0-9a-f]{8}", first)
    assert first != second


def test_explain_resolves_without_consul_and_shows_the_checks_an_agent_running_scripts_would_get():
    settings = resolve(options(ip="10.0.0.7"), FakeDocker(), None, threading.Event())
    assert settings.mapping.host.runs_scripts


def test_a_host_identity_that_cannot_start_a_service_id_is_a_startup_error():
    docker = FakeDocker()
    docker.name = "rack/7"
    with pytest.raises(StartupError, match=r"host identity 'rack/7' from the Docker daemon's name \(set --hostname\) contains "
                                           r"'/'"):
        resolve(options(ip="10.0.0.7"), docker, FakeConsul(), threading.Event())


def test_docker_unreachable_for_all_retry_attempts_is_a_startup_error():
    docker = FakeDocker()
    docker.down = True
    with pytest.raises(StartupError, match="Docker not reachable after 3 attempts"):
        resolve(options(retry_attempts=2), docker, FakeConsul(), threading.Event())


def test_a_stop_while_waiting_for_docker_ends_startup():
    docker, stop = FakeDocker(), threading.Event()
    docker.down = True
    waiting = docker.hold("info")
    outcome: list[BaseException] = []

    def start() -> None:
        try:
            resolve(options(), docker, FakeConsul(), stop)
        except BaseException as exc:  # noqa: BLE001 (the test inspects it)
            outcome.append(exc)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    assert waiting.reached()
    stop.set()
    waiting.release()
    joined(thread)
    assert [type(exc) for exc in outcome] == [Stopped]


def test_consul_failing_to_show_its_configuration_for_a_while_is_waited_for_not_taken_for_a_missing_right(caplog):
    """With a token Consul does not know yet, the read failed and startup said the token lacked agent:read (issue 21)."""
    consul = FakeConsul(scripts=True)
    consul.fail_once.add(("agent_self", ""))
    with caplog.at_level("WARNING", logger="registrator"):
        settings = resolve(options(ip="10.0.0.7"), FakeDocker(), consul, threading.Event())
    assert settings.mapping.host.runs_scripts
    assert "agent:read" not in caplog.text and "Consul agent_self : connection refused; retrying in" in caplog.text
