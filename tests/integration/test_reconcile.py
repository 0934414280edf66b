"""Level-triggered reconcile against real Docker and Consul: writes only what differs."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulSink
from registrator.docker.source import DockerSource
from registrator.model import ContainerSnapshot
from registrator.reconcile.kills import KillLog
from registrator.reconcile.reconciler import Reconciler
from tests.integration.rig import eventually, free_port
from tests.settings import mapping_settings


def test_second_reconcile_of_an_unchanged_container_writes_nothing(consul, workload):
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    reconciler = Reconciler(
        DockerSource(timeout=10),
        ConsulSink(ConsulEndpoint(port=consul.http_port)),
        mapping_settings("reconcile-test", "127.0.0.11"),
        KillLog(timeout=120),
    )
    container_id = web.get_wrapped_container().id

    assert reconciler.reconcile(container_id).writes == 1
    assert reconciler.reconcile(container_id).writes == 0
    web.get_wrapped_container().stop(timeout=1)
    assert reconciler.reconcile(container_id).writes == 1
    assert consul.services() == {}


class CountingDockerSource(DockerSource):
    def __init__(self) -> None:
        super().__init__(timeout=10)
        self.inspects = 0

    def inspect(self, container_id: str) -> ContainerSnapshot | None:
        self.inspects += 1
        return super().inspect(container_id)


def test_the_first_look_after_a_stop_signal_drains_from_what_was_known(consul, workload):
    """Docker answers inspects of a container it is tearing down only when done; the drain must not wait."""
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    docker, kills = CountingDockerSource(), KillLog(timeout=120)
    reconciler = Reconciler(docker, ConsulSink(ConsulEndpoint(port=consul.http_port)),
                            mapping_settings("reconcile-test", "127.0.0.11"), kills)
    container_id = web.get_wrapped_container().id
    assert reconciler.reconcile(container_id).writes == 1

    kills.record(container_id, signal.SIGTERM, time.time())  # what the event pump does with Docker's kill event
    inspects = docker.inspects
    assert reconciler.reconcile(container_id).writes == 1  # deregistered…
    assert docker.inspects == inspects  # …without asking Docker
    assert consul.services() == {}

    assert reconciler.reconcile(container_id).writes == 0  # later looks ask Docker again: still running, still draining
    assert docker.inspects == inspects + 1


def test_periodic_resync_writes_nothing_when_nothing_changed(agent, workload, consul):
    agent.start("--resync", "0.2", "--log-level", "debug")
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: agent.log().count(": registered ") == 1, timeout=5, what="registered")
    resyncs = agent.log().count("resync:")
    writes_before = consul.writes()

    eventually(lambda: agent.log().count("resync:") >= resyncs + 5, timeout=10, what="five more resyncs")

    assert consul.writes() == writes_before  # counted by Consul itself
    assert agent.log().count(": registered ") == 1
    assert " updated " not in agent.log()


def test_containers_reconciled_side_by_side_are_each_registered_once(agent, workload, consul):
    started = {workload("http", env={"SERVICE_NAME": "web"}, ports={80: None}).get_wrapped_container().id for _ in range(24)}
    writes_before = consul.writes()

    agent.start("--workers", "8")
    eventually(lambda: len(consul.services()) == 24, timeout=10, what="all registered")

    assert consul.writes() - writes_before == 24  # counted by Consul itself
    assert {s["Meta"]["registrator-container"] for s in consul.services().values()} == started


def test_services_of_containers_gone_while_the_agent_was_down_are_removed_at_start(agent, workload, consul, resolve):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: resolve("web.service.consul"), what="SRV answer")
    os.kill(agent.process.pid, signal.SIGKILL)
    agent.process.wait()
    web.get_wrapped_container().stop(timeout=1)
    assert resolve("web.service.consul")  # nobody has removed it yet

    agent.start()
    eventually(lambda: not resolve("web.service.consul"), what="stale service removed")


def test_services_of_other_hosts_are_left_alone(agent, workload, consul):
    consul.put("/v1/agent/service/register", b'{"ID": "h2:web:80", "Name": "web", "Port": 1, "Meta": {"registrator-host": "h2", '
                                             b'"registrator-container": "gone"}}')
    agent.start("--resync", "0.2", "--log-level", "debug")
    mine = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    eventually(lambda: f"{agent.hostname}:{mine.get_wrapped_container().name}:80" in consul.services(), what="registered")
    resyncs = agent.log().count("resync:")
    eventually(lambda: agent.log().count("resync:") >= resyncs + 3, timeout=10, what="three resyncs")
    assert set(consul.services()) == {"h2:web:80", f"{agent.hostname}:{mine.get_wrapped_container().name}:80"}


def register_plain(consul, service_id: str, name: str = "legacy") -> None:
    consul.put("/v1/agent/service/register", json.dumps({"ID": service_id, "Name": name, "Port": 1}).encode())


def test_cleanup_removes_what_gliderlabs_registrator_left_for_gone_containers(agent, workload, consul):
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    running_id = f"{agent.hostname}:{web.get_wrapped_container().name}:80"
    for service_id in (f"{agent.hostname}:gone.1:80", f"{agent.hostname}:gone.1:53:udp", running_id,
                       "otherhost:gone.1:80", "hand-registered"):
        register_plain(consul, service_id)

    agent.start("-cleanup")

    eventually(lambda: set(consul.services()) == {running_id, "otherhost:gone.1:80", "hand-registered"}, what="legacy cleanup")
    adopted = eventually(lambda: consul.services()[running_id]["Meta"].get("registrator-host"), what="running entry adopted")
    assert adopted == agent.hostname


def test_without_cleanup_services_without_ownership_are_left_alone(agent, consul):
    register_plain(consul, f"{agent.hostname}:gone.1:80")
    agent.start("--resync", "0.2", "--log-level", "debug")

    eventually(lambda: agent.log().count("resync:") >= 3, timeout=5, what="three resyncs")
    assert set(consul.services()) == {f"{agent.hostname}:gone.1:80"}


def test_unchanged_containers_are_not_inspected_again_at_each_resync(agent, workload, consul):
    port = free_port()
    agent.start("--resync", "0.2", "--log-level", "debug", "--listen", f"127.0.0.1:{port}")
    for _ in range(3):
        workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: len(consul.services()) == 3, what="registered")
    eventually(lambda: "resync: 0 containers to look at, 3 unchanged" in agent.log(), timeout=5, what="an unchanged resync")
    inspects = inspect_calls(port)

    resyncs = agent.log().count("resync:")
    eventually(lambda: agent.log().count("resync:") >= resyncs + 5, timeout=10, what="five more resyncs")
    assert inspect_calls(port) - inspects <= 3  # at most the one full pass in every ten resyncs

    consul.put(f"/v1/agent/service/deregister/{next(iter(consul.services()))}")  # Consul lost one
    eventually(lambda: len(consul.services()) == 3, timeout=5, what="repaired by a resync")


def inspect_calls(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('registrator_docker_requests_total{call="inspect"}'))
