"""The reconciler and its local view against fake Docker and Consul."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType

import pytest

from registrator.consul.sink import ConsulError
from registrator.metrics import Metrics
from registrator.reconcile.kills import KillLog
from registrator.reconcile.reconciler import Closed, Reconciler
from tests.fakes import Clock, FakeConsul, FakeDocker, agent_settings, joined, manual, web

MIRROR = "service:h:web:80#docker-health"


def reconciler(docker: FakeDocker, consul: FakeConsul, wake: Callable[[set[str]], None] = lambda _: None) -> Reconciler:
    return Reconciler(docker, consul, agent_settings().mapping, KillLog(timeout=120), wake=wake, runtime=manual(Clock()))


def healthy_web() -> tuple[FakeDocker, FakeConsul, Reconciler]:
    """A container with a Docker HEALTHCHECK, reconciled once: registered, its health check passing."""
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web", name="web", health="healthy")
    core = reconciler(docker, consul)
    core.reconcile("web")
    return docker, consul, core


def test_a_heartbeat_overtaken_by_a_newer_docker_health_status_sends_the_newer_one_last():
    docker, consul, core = healthy_web()
    assert consul.checks[MIRROR].status == "passing"

    beat = consul.hold("update_check", MIRROR)
    heartbeat = threading.Thread(target=core.heartbeat, daemon=True)
    heartbeat.start()
    assert beat.reached()  # the heartbeat sends "passing"…
    docker.containers["web"] = web("web", name="web", health="unhealthy")
    consul_writes = threading.Thread(target=core.reconcile, args=("web",), daemon=True)
    consul_writes.start()
    assert consul.wait_until(lambda c: c.checks[MIRROR].status == "critical")  # …the reconcile sends "critical" first
    beat.release()
    joined(heartbeat)
    joined(consul_writes)

    assert consul.checks[MIRROR].status == "critical"


def test_a_failed_health_push_is_sent_again_by_the_next_reconcile():
    docker, consul, core = healthy_web()
    docker.containers["web"] = web("web", name="web", health="unhealthy")
    consul.failing.add("update_check")
    with pytest.raises(Exception, match="connection refused"):
        core.reconcile("web")

    consul.failing.clear()
    core.reconcile("web")
    assert consul.checks[MIRROR].status == "critical"


def test_a_heartbeat_passes_over_a_check_whose_service_was_deregistered_while_it_was_on_its_way():
    """Consul answers "unknown check" for it: no failure, so the heartbeat is not retried for it."""
    docker, consul, core = healthy_web()
    beat = consul.hold("update_check", MIRROR)
    sent: list[int] = []
    heartbeat = threading.Thread(target=lambda: sent.append(core.heartbeat()), daemon=True)
    heartbeat.start()
    assert beat.reached()  # the heartbeat listed web's service as this host's and is sending its status
    del docker.containers["web"]
    core.reconcile("web")  # deregistered meanwhile
    beat.release()
    joined(heartbeat)
    assert sent == [0] and consul.services_ == {}


def test_a_heartbeat_that_fails_for_a_service_still_registered_fails():
    docker, consul, core = healthy_web()
    consul.fail_once.add(("update_check", MIRROR))
    with pytest.raises(ConsulError):
        core.heartbeat()


def test_after_close_no_write_starts():
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web", name="web")
    core = reconciler(docker, consul)
    assert core.close(timeout=1)
    with pytest.raises(Closed):
        core.reconcile("web")
    assert consul.writes == []


def test_an_unchanged_container_costs_one_inspect_and_no_consul_call():
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web", name="web")
    core = reconciler(docker, consul)
    assert core.reconcile("web").writes == 1
    assert core.reconcile("web").writes == 0
    assert consul.writes == [("register", "h:web:80")]
    assert docker.inspected == ["web", "web"]


def test_a_refresh_keeps_only_this_hosts_services_and_wakes_containers_refused_an_id_now_free():
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["a"] = web("a", name="a", env={"SERVICE_ID": "shared"})
    docker.containers["b"] = web("b", name="b", env={"SERVICE_ID": "shared"})
    woken: set[str] = set()
    core = reconciler(docker, consul, woken.update)
    core.reconcile("a")
    core.reconcile("b")  # refused: a holds it
    theirs = consul.services_["shared"]
    consul.services_ = {"other": type(theirs)("other", "x", "10.0.0.9", 1, meta={"registrator-host": "h2"})}

    assert core.refresh() == set()
    assert woken == {"b"}
    assert not core.view.owns("other")


def test_services_another_agent_with_this_host_identity_wrote_are_told_loudly_at_each_refresh(caplog):
    """Two agents with one host identity (a cloned machine's name, a second agent with other flags)
    rewrite and remove each other's services at every resync: each says so."""
    consul = FakeConsul()
    docker_a, docker_b = FakeDocker(), FakeDocker()
    docker_a.containers["a"] = web("a", name="web")
    docker_b.containers["b"] = web("b", name="api", env={"SERVICE_TAGS": "b-only"})
    first, second = (Reconciler(docker, consul, agent_settings(agent=agent).mapping, KillLog(timeout=120),
                                runtime=manual(Clock()), metrics=Metrics())
                     for docker, agent in ((docker_a, "node-1:7:aa"), (docker_b, "node-2:9:bb")))
    first.refresh()
    second.refresh()
    first.reconcile("a")
    second.reconcile("b")
    caplog.clear()
    first.refresh()
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == [
        "another agent (node-2:9:bb) wrote 1 of this host's services since this agent (node-1:7:aa) last looked, e.g. "
        "h:api:80; two agents run with host identity h, and they rewrite and remove each other's services: "
        "give each host its own -hostname, and run one agent per host"]
    assert first._metrics.value("registrator_other_agent_writes_total") == 1
    caplog.clear()
    first.refresh()
    assert [r.message for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_the_heartbeat_resends_each_docker_health_status_as_it_was_and_counts_what_it_sent():
    docker, consul, core = healthy_web()
    output = consul.checks[MIRROR].output
    consul.checks[MIRROR].output = "stale"
    assert core.heartbeat() == 1
    assert (consul.checks[MIRROR].status, consul.checks[MIRROR].output) == ("passing", output)


def test_without_docker_health_checks_the_heartbeat_sends_and_asks_nothing():
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web", name="web")
    core = reconciler(docker, consul)
    core.reconcile("web")
    consul.failing.add("services")  # were Consul asked, the heartbeat would fail
    assert core.heartbeat() == 0


def test_the_heartbeat_leaves_a_service_another_owner_took_and_remembers_no_container_for_it():
    docker, consul, core = healthy_web()
    consul.services_["h:web:80"] = replace(consul.services_["h:web:80"], meta=MappingProxyType({"registrator-host": "other"}))
    assert core.heartbeat() == 0
    assert (core.view.owns("h:web:80"), core.view.remembered()["refused"]) == (False, set())


def test_a_containers_warnings_are_logged_once_and_again_only_when_they_change(caplog):
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web", name="web", env={"SERVICE_0_NAME": "x"})
    core = reconciler(docker, consul)
    with caplog.at_level(logging.WARNING, logger="registrator"):
        core.reconcile("web")
        core.reconcile("web")
        docker.containers["web"] = web("web", name="web", env={"SERVICE_00_NAME": "x"})
        core.reconcile("web")
        docker.containers["web"] = web("web", name="web")
        core.reconcile("web")
        docker.containers["web"] = web("web", name="web", env={"SERVICE_00_NAME": "x"})
        core.reconcile("web")
    assert [r.getMessage() for r in caplog.records] == [
        "container web: env SERVICE_0_NAME: '0' is not a port number; ignored",
        "container web: env SERVICE_00_NAME: '00' is not a port number; ignored",
        "container web: env SERVICE_00_NAME: '00' is not a port number; ignored"]
