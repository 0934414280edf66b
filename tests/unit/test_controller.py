"""The concurrent core against fake Docker and Consul: interleavings forced with holds, never slept for."""

from __future__ import annotations

import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
from tenacity import wait_exponential, wait_fixed

from registrator.config import Settings
from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulError
from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import ContainerEvent
from registrator.model import ContainerPort, NetworkAttachment, PortBinding, ServiceSpec
from registrator.reconcile.controller import HEARTBEAT, RECONNECT_BACKOFF, RESTART_BACKOFF, RESYNC, Controller, EventStreamEnded
from registrator.reconcile.queue import DEFAULT_BACKOFF
from registrator.runtime import Runtime
from tests.fakes import BACKOFF, WAIT, Agent, Check, FakeConsul, FakeDocker, Hold, agent_settings, in_thread, joined, web

SIGHUP, SIGTERM = 1, 15


def test_a_container_recreated_under_the_same_name_gets_its_service_back():
    """`docker rm -f web && docker run --name web`: the new container asks for the ID the old one
    still holds while Docker tears the old one down; the release must hand it to the new one."""
    agent = Agent(resync_seconds=0)
    agent.start("old", name="web")
    agent.settle()
    assert agent.consul.holder("h:web:80") == "old"

    teardown = agent.docker.hold("inspect", "old")
    del agent.docker.containers["old"]
    agent.event("old", "destroy")
    worker_1 = in_thread(agent.controller.process, agent.take())
    assert teardown.reached()

    agent.start("new", name="web")
    agent.controller.process(agent.take())  # worker 2: the ID is still held, so it is refused
    assert agent.consul.holder("h:web:80") == "old"

    teardown.release()
    joined(worker_1)
    agent.settle()
    assert agent.consul.holder("h:web:80") == "new"


def test_two_containers_asking_for_one_id_the_second_gets_it_when_the_first_goes():
    agent = Agent()
    agent.start("a", env={"SERVICE_ID": "shared"})
    agent.start("b", host_port=9090, env={"SERVICE_ID": "shared"})
    agent.settle()
    assert (agent.consul.holder("shared"), agent.consul.services_["shared"].port) == ("a", 8080)

    del agent.docker.containers["a"]
    agent.event("a", "die")
    agent.settle()
    assert (agent.consul.holder("shared"), agent.consul.services_["shared"].port) == ("b", 9090)


@pytest.mark.parametrize(("background", "slow_call"), [(RESYNC, "services"), (HEARTBEAT, "update_check")])
def test_a_stop_signal_leaves_dns_while_a_reconcile_and_a_resync_or_heartbeat_wait_on_docker_and_consul(background, slow_call):
    agent = Agent()
    agent.start("stopping", health="healthy")
    agent.start("slow", host_port=8081)
    agent.settle()
    slow_inspect = agent.docker.hold("inspect", "slow")
    slow_consul = agent.consul.hold(slow_call)
    agent.event("slow", "update")
    agent.background.add(background)
    workers = [in_thread(agent.controller.work), in_thread(agent.controller.work_background)]
    assert slow_inspect.reached() and slow_consul.reached()

    agent.event("stopping", "kill", SIGTERM)
    urgent = in_thread(agent.controller.work, True)

    assert agent.consul.wait_until(lambda consul: "h:stopping:80" not in consul.services_)
    for hold in (slow_inspect, slow_consul):
        hold.release()
    agent.queue.shutdown()
    agent.background.shutdown()
    joined(*workers, urgent)


def test_a_sighup_neither_drains_nor_spoils_the_next_stop():
    agent = Agent()
    agent.start("web")
    agent.settle()

    agent.event("web", "kill", SIGHUP)
    assert not agent.controller._kills.pending("web")
    agent.settle()
    assert "h:web:80" in agent.consul.services_

    agent.controller.resync()  # the first resync looks at every container
    agent.settle()
    inspects = len(agent.docker.inspected)
    agent.controller.resync()  # later ones not at one that is unchanged, reloaded or not
    agent.settle()
    assert len(agent.docker.inspected) == inspects

    agent.event("web", "kill", SIGTERM)
    assert agent.take() == "web" and agent.controller._kills.first_look("web")


def test_a_signal_to_a_container_not_inspected_yet_is_dropped_once_its_inspect_shows_it_is_no_stop_signal():
    agent = Agent()
    agent.docker.containers["web"] = web("web", name="web", stop_signal=3)  # STOPSIGNAL SIGQUIT
    agent.event("web", "kill", SIGTERM)  # not yet known: kept until the inspect tells
    agent.settle()
    assert "h:web:80" in agent.consul.services_
    assert not agent.controller._kills.pending("web")


def test_a_drained_container_still_running_after_the_drain_timeout_is_registered_again_without_a_resync():
    agent = Agent(resync_seconds=0, drain_timeout=30)
    agent.start("web")
    agent.settle()
    agent.event("web", "kill", SIGTERM)
    agent.settle()
    assert "h:web:80" not in agent.consul.services_

    agent.clock.advance(29)
    agent.settle()
    assert "h:web:80" not in agent.consul.services_
    agent.clock.advance(2)
    agent.settle()
    assert "h:web:80" in agent.consul.services_


def test_a_container_whose_inspect_keeps_failing_does_not_hold_up_the_others():
    agent = Agent()
    agent.docker.failing.add("broken")
    agent.start("broken")
    agent.start("fine", host_port=8081)
    agent.settle()
    assert agent.consul.holder("h:fine:80") == "fine"
    assert agent.queue.failures("broken") == 1 and len(agent.queue) == 0

    agent.docker.failing.clear()
    agent.clock.advance(BACKOFF)
    agent.settle()
    assert agent.consul.holder("h:broken:80") == "broken"
    assert agent.queue.failures("broken") == 0


def test_deregister_on_exit_waits_for_a_registration_in_flight():
    agent = Agent(deregister_on_exit=True)
    register = agent.consul.hold("register", "h:web:80")
    agent.start("web")
    worker = in_thread(agent.controller.process, agent.take())
    assert register.reached()

    leaving = in_thread(agent.controller.deregister_all)
    register.release()
    joined(worker)
    joined(leaving)
    assert agent.consul.writes == [("register", "h:web:80"), ("deregister", "h:web:80")]

    agent.event("web", "update")
    agent.settle()
    assert agent.consul.services_ == {}


def test_stop_ends_run_and_lets_the_reconcile_in_flight_finish():
    agent = Agent()
    inspect = agent.docker.hold("inspect", "web")
    agent.docker.containers["web"] = web("web", name="web")
    agent.event("web", "start")
    running = in_thread(agent.controller.run)
    assert inspect.reached()

    agent.controller.stop.set()
    inspect.release()
    joined(running)
    assert set(agent.consul.services_) == {"h:web:80"}


class StreamOpening(FakeDocker):
    """Like DockerSource, `close_events` closes the stream handed out last, and a stream becomes
    known to it only once the request that opens it has returned."""

    def __init__(self) -> None:
        super().__init__()
        self.opening = Hold()
        self.close_asked = threading.Event()
        self.handed_out: list[queue.Queue[ContainerEvent | None]] = []
        self.closed: list[queue.Queue[ContainerEvent | None]] = []

    def events(self, since: str | None) -> Iterator[ContainerEvent]:
        self.events_calls += 1
        self.opening()
        stream: queue.Queue[ContainerEvent | None] = queue.Queue()
        self.handed_out.append(stream)
        return iter(stream.get, None)

    def close_events(self) -> None:
        self.close_asked.set()
        if self.handed_out and self.handed_out[-1] not in self.closed:
            self.closed.append(self.handed_out[-1])
            self.handed_out[-1].put(None)


def test_run_as_registrator_run_builds_it_registers_what_runs_follows_events_and_deregisters_on_exit():
    """No queue and no clock passed in: the controller makes its own, as `registrator run` has it."""
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web")
    controller = Controller(agent_settings(deregister_on_exit=True), docker, consul)
    running = in_thread(controller.run)
    assert controller.ready.wait(WAIT)
    assert consul.wait_until(lambda c: "h:web:80" in c.services_)  # the first resync
    docker.containers["api"] = web("api", name="api", host_port=9000)
    docker.event_stream.put(ContainerEvent("api", "start", time.time_ns(), None))
    assert consul.wait_until(lambda c: "h:api:80" in c.services_)
    docker.containers["api"] = replace(docker.containers["api"], running=False)
    docker.event_stream.put(ContainerEvent("api", "kill", time.time_ns(), 15))  # its stop signal: the urgent worker drains it
    assert consul.wait_until(lambda c: "h:api:80" not in c.services_)
    controller.stop.set()
    joined(running)
    assert consul.services_ == {}


def test_a_stop_while_the_events_stream_is_being_opened_ends_the_events_thread():
    """Else `run` waits the whole Docker timeout for it (longer than ECS's stopTimeout, which
    SIGKILLs the agent before --deregister-on-exit), and leaves it following the stream."""
    docker = StreamOpening()
    agent = Agent(docker=docker)
    pump = in_thread(agent.controller.pump)
    assert docker.opening.reached()
    agent.controller.stop.set()
    agent.controller._docker.close_events()  # what run does at stop: nothing is open yet
    docker.opening.release()
    joined(pump)
    assert docker.closed == docker.handed_out


class Watched(threading.Event):
    """The agent's stop flag, telling the test when a loop starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.set()
        return super().wait(timeout)


def test_a_stop_during_the_events_reconnect_backoff_does_not_reconnect():
    agent = Agent(stop=Watched())
    agent.docker.events_error = DockerUnavailable("docker events: connection refused")
    pump = in_thread(agent.controller.pump)
    assert agent.controller.stop.waited.wait(WAIT)  # backing off before it connects again
    agent.controller.stop.set()
    joined(pump)
    assert agent.docker.events_calls == 1


def test_a_stream_that_ends_before_any_event_is_opened_again_from_when_the_first_one_was():
    """Without an event to resume from, `since` is when the first stream was asked for: events
    that happened while none was open are replayed. The resync cannot stand in for them: a
    container paused during its look and started again has the same `docker ps` line as before."""
    agent = Agent()
    agent.clock.advance(1.25)
    agent.docker.close_events()  # the stream ends before any event
    with pytest.raises(EventStreamEnded):
        agent.controller.follow_events()
    agent.clock.advance(5)  # a container pauses and is started again meanwhile
    agent.docker.close_events()
    with pytest.raises(EventStreamEnded):
        agent.controller.follow_events()
    assert agent.docker.since_asked == [None, "2001.250000000"]  # Docker's `since`: seconds.nanoseconds


def test_after_the_events_stream_is_opened_again_the_resync_looks_at_every_container():
    """Docker replays only the events it still keeps: a container that changed and changed back
    while no stream was open lists as it did, and only a look tells (found by the simulation's
    long run, seed 9096: a network disconnect Docker no longer had left a service in Consul)."""
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.controller.resync()  # the first resync, a full one: the listing is remembered
    agent.settle()
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], paused=True)
    agent.event("web", "pause")
    agent.settle()
    assert "h:web:80" not in agent.consul.services_
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], paused=False)  # its unpause is lost
    agent.docker.close_events()
    with pytest.raises(EventStreamEnded):
        agent.controller.follow_events()  # opened again: a resync is queued
    agent.settle()
    assert "h:web:80" in agent.consul.services_


def test_a_full_resync_whose_listing_fails_is_a_full_one_when_tried_again():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.controller.resync()  # the first resync, a full one
    agent.settle()
    inspects = len(agent.docker.inspected)
    agent.controller.resync_now()
    agent.docker.down = True
    with pytest.raises(DockerUnavailable):
        agent.controller.resync()
    agent.docker.down = False
    agent.controller.resync()
    agent.settle()
    assert len(agent.docker.inspected) == inspects + 1


@pytest.mark.parametrize("resync_seconds", [0, 60])
def test_sighup_makes_a_full_resync_now(resync_seconds):
    agent = Agent(resync_seconds=resync_seconds)
    agent.start("web")
    agent.settle()
    agent.controller.resync()  # the first resync is a full one
    agent.settle()
    agent.controller.resync()  # the next ones do not look at an unchanged container
    agent.settle()
    inspects = len(agent.docker.inspected)
    loop = in_thread(agent.controller.supervise, "resync", agent.controller._resync_loop)
    agent.controller.resync_now()  # what the SIGHUP handler calls
    assert agent.background.get() == RESYNC  # the loop queued it at once (a blocking get: the loop runs in a thread)
    agent.controller.process(RESYNC)
    agent.settle()
    assert len(agent.docker.inspected) == inspects + 1
    agent.controller.stop.set()
    agent.controller.resync_now()  # run() wakes the loop so at stop
    joined(loop)


def test_healthz_says_what_answers_whether_the_agent_is_ready_and_how_long_ago_it_last_reconciled():
    agent = Agent()
    assert agent.controller.health() == (True, {"docker": "ok", "consul": "ok", "last_reconcile_age_seconds": None,
                                                "ready": False, "loops": {}})
    agent.start("web")
    agent.settle()
    agent.clock.advance(2.5)
    agent.docker.down = True
    agent.consul.failing.add("leader")
    assert agent.controller.health() == (False, {"docker": "docker ping: connection refused",
                                                 "consul": "Consul leader : connection refused",
                                                 "last_reconcile_age_seconds": 2.5, "ready": False, "loops": {}})
    agent.docker.down = False
    assert not agent.controller.health()[0]  # Consul alone is enough to be unhealthy
    agent.consul.failing.clear()
    agent.docker.down = True
    assert not agent.controller.health()[0]


def test_the_events_gauge_is_1_while_a_stream_is_followed_and_0_once_it_ended():
    agent = Agent()
    assert agent.controller.metrics.value("registrator_docker_events_connected") == 0
    failures: list[BaseException] = []

    def follow() -> None:
        try:
            agent.controller.follow_events()
        except EventStreamEnded as ended:
            failures.append(ended)

    following = in_thread(follow)
    assert agent.controller.ready.wait(WAIT)
    assert agent.controller.metrics.value("registrator_docker_events_connected") == 1
    agent.docker.close_events()
    joined(following)
    assert failures and agent.controller.metrics.value("registrator_docker_events_connected") == 0


def test_the_retrying_gauge_counts_the_containers_waiting_for_a_retry():
    agent = Agent()
    agent.start("web")
    agent.start("api", host_port=8081)
    agent.docker.failing.add("web")
    agent.settle()
    assert agent.controller.metrics.value("registrator_retrying_containers") == 1
    agent.docker.failing.clear()
    agent.queue.retry_all_now()
    agent.settle()
    assert agent.controller.metrics.value("registrator_retrying_containers") == 0


def test_a_loop_that_dies_is_restarted_and_healthz_says_so():
    agent = Agent()
    agent.docker.events_error = RuntimeError("decoder blew up")
    agent.controller.restart_backoff = wait_fixed(0)
    pump = in_thread(agent.controller.supervise, "events", agent.controller.pump)
    assert agent.controller.ready.wait(WAIT)

    healthy, details = agent.controller.health()
    assert details["loops"]["events"] == {"restarts": 1, "last_error": "RuntimeError: decoder blew up", "failing": False}
    assert healthy
    assert agent.controller.metrics.value("registrator_loop_restarts_total", loop="events") == 1
    agent.controller.stop.set()
    agent.docker.close_events()
    joined(pump)


def test_a_resync_while_reconciles_write_loses_none_of_their_writes():
    agent = Agent()
    agent.start("a")
    agent.settle()
    listing = agent.consul.hold("services")
    resync = in_thread(agent.controller.process, RESYNC)
    assert listing.reached()  # Consul's answer (without b) is on its way

    agent.start("b", host_port=8081)
    agent.controller.process(agent.take())
    listing.release()
    joined(resync)

    assert agent.controller.reconciler.view.owns("h:b:80")
    writes = len(agent.consul.writes)
    agent.event("b", "update")
    agent.settle()
    assert len(agent.consul.writes) == writes


MIRROR = "service:h:web:80#docker-health"


def two_ports(container_id: str, env: dict[str, str]) -> Any:
    """A running container publishing ports 80 and 81."""
    one = web(container_id, name=container_id, env=env)
    return replace(one, ports=(ContainerPort(80, "tcp", (PortBinding("0.0.0.0", 8080),)),
                               ContainerPort(81, "tcp", (PortBinding("0.0.0.0", 8081),))))


# -- Docker-health mirror ---------------------------------------------------------------------------


def test_after_consul_expired_a_ttl_the_heartbeat_sends_dockers_verdict_not_consuls():
    """The Consul agent was unreachable for longer than the TTL (restarted with its data dir): the
    mirror check is critical, "TTL expired". The probe's resync refreshes the view from Consul, the
    view's mirror becomes Consul's "critical", the container is unchanged so it is not looked at,
    and from then on the heartbeat keeps re-sending "critical" for a healthy container: its service
    stays out of DNS until its Docker health changes or a full resync (every 10th; never again
    under `-resync 0`)."""
    agent = Agent()
    agent.start("web", health="healthy")
    agent.settle()
    agent.controller.resync()  # the first resync (a full one)
    agent.settle()
    assert agent.consul.checks[MIRROR].status == "passing"

    agent.consul.checks[MIRROR] = Check("h:web:80", "critical", "TTL expired")
    agent.controller.resync()  # Consul is back: the probe's resync
    agent.settle()
    agent.controller.process(HEARTBEAT)
    assert agent.consul.checks[MIRROR].status == "passing"


# -- claims -----------------------------------------------------------------------------------------


def test_two_new_containers_racing_for_one_service_id_the_loser_gets_it_when_the_winner_goes():
    """A claim is checked against the view, not reserved: while a's registration of `shared` is in
    flight b's claim finds it free, so both register, the last write wins, and b is never
    remembered as refused. When a goes, nothing wakes b: its service is missing while it runs
    (for good under `-resync 0`)."""
    agent = Agent(resync_seconds=0)
    agent.docker.containers["a"] = web("a", name="a", env={"SERVICE_ID": "shared"})
    agent.docker.containers["b"] = web("b", name="b", host_port=9090, env={"SERVICE_ID": "shared"})
    a_registers = agent.consul.hold("register", "shared")
    agent.event("a", "start")
    agent.event("b", "start")
    worker_a = in_thread(agent.controller.process, agent.take())
    assert a_registers.reached()
    agent.controller.process(agent.take())  # b: its claim passes, it registers `shared`
    a_registers.release()
    joined(worker_a)

    del agent.docker.containers["a"]
    agent.event("a", "die")
    agent.settle()
    assert agent.consul.holder("shared") == "b"


def test_a_wake_is_not_lost_when_the_reconcile_that_released_the_id_fails_afterwards():
    """a holds `shared` (and `zzz`), b was refused `shared`. a dies; its reconcile deregisters
    `shared` (the view pops b from the refused, the wake is in a local variable) and then fails on
    `zzz`: the wake is lost, the retry has nothing to release, and b's `_verified` (which left out
    the refused ID) tells every non-full resync that b is in sync."""
    consul = FakeConsul()
    agent = Agent(consul)
    agent.docker.containers["a"] = two_ports("a", {"SERVICE_80_ID": "shared", "SERVICE_81_ID": "zzz"})
    agent.event("a", "start")
    agent.settle()
    agent.start("b", host_port=9090, env={"SERVICE_ID": "shared"})
    agent.settle()
    agent.controller.resync()  # the first (full) resync; later ones look only at what changed
    agent.settle()
    assert agent.consul.holder("shared") == "a"

    consul.fail_once.add(("deregister", "zzz"))
    del agent.docker.containers["a"]
    agent.event("a", "die")
    agent.settle()
    agent.clock.advance(BACKOFF)
    agent.settle()  # a's retry deregisters zzz
    assert "zzz" not in agent.consul.services_
    agent.controller.resync()  # a periodic resync does not repair it either
    agent.settle()
    assert agent.consul.holder("shared") == "b"


# -- ownership --------------------------------------------------------------------------------------


class AppliedThenLost(FakeConsul):
    """Consul applies the next (call, ID) in `lost`, and its answer is lost (a read timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[tuple[str, str]] = set()

    def register(self, spec: ServiceSpec) -> None:
        super().register(spec)
        self._lose("register", spec.id)

    def deregister(self, service_id: str) -> None:
        super().deregister(service_id)
        self._lose("deregister", service_id)

    def maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        super().maintenance(service_id, enable, reason)
        self._lose("maintenance", service_id)

    def _lose(self, call: str, key: str) -> None:
        if (call, key) in self.lost:
            self.lost.discard((call, key))
            raise ConsulError(f"Consul {call} {key}: read timed out", transient=True)


def test_a_container_cannot_take_over_and_then_remove_a_service_this_host_does_not_own():
    """SERVICE_ID is container-supplied. A service another registrator (another host sharing the
    agent) registered is invisible to the claim, which only looks at this host's view: the
    container's registration overwrites it, and its stop deregisters it."""
    agent = Agent()
    theirs = ServiceSpec("db", "db", "10.0.0.9", 5432, meta=MappingProxyType({"registrator-host": "h2",
                                                                            "registrator-container": "x"}))
    agent.consul.services_["db"] = theirs
    agent.controller.resync()
    agent.settle()

    agent.start("web", env={"SERVICE_ID": "db"})
    agent.settle()
    del agent.docker.containers["web"]
    agent.event("web", "die")
    agent.settle()
    assert agent.consul.services_.get("db") == theirs


def test_cleanup_does_not_remove_a_registration_adopted_while_the_resync_listed_consul():
    """-cleanup: the legacy entry h:web:80 (no Meta) is swept when `web` is not in the `docker ps`
    listing taken at the start of the resync. `web` starts meanwhile and its reconcile adopts the ID
    (registers it with Meta) before the sweep: the sweep, working from the stale listing, deletes
    the fresh registration, and the view (which it does not update) still says it is there, so no
    reconcile writes it again."""
    agent = Agent(cleanup=True)
    agent.consul.services_["h:web:80"] = ServiceSpec("h:web:80", "web", "10.0.0.5", 8080)  # gliderlabs/registrator's
    listing = agent.consul.hold("services")
    resync = in_thread(agent.controller.process, RESYNC)
    assert listing.reached()  # `docker ps` is taken (no web), Consul's answer is on its way

    agent.start("web")
    agent.controller.process(agent.take())  # web adopts h:web:80
    assert agent.consul.holder("h:web:80") == "web"
    listing.release()
    joined(resync)
    agent.settle()
    assert agent.consul.holder("h:web:80") == "web"


def test_a_service_another_owner_registered_after_the_last_refresh_is_neither_taken_over_nor_removed():
    """Foreign IDs were known only as of the last refresh (every resync; with -resync 0 only at
    start): SERVICE_ID naming a service registered since then overwrote it."""
    agent = Agent(resync_seconds=0)
    agent.controller.process(RESYNC)  # the refresh at start: nothing of another owner yet
    theirs = ServiceSpec("db", "db", "10.0.0.9", 5432, meta=MappingProxyType({"registrator-host": "h2",
                                                                            "registrator-container": "x"}))
    agent.consul.services_["db"] = theirs
    agent.start("web", env={"SERVICE_ID": "db"})
    agent.settle()
    assert agent.consul.services_["db"] == theirs
    del agent.docker.containers["web"]
    agent.event("web", "die")
    agent.settle()
    assert agent.consul.services_["db"] == theirs


def test_a_service_whose_registration_may_not_have_gone_through_leaves_dns_when_its_container_is_stopped():
    """In maintenance-mode drains too: it is deregistered, not registered again to be put in maintenance."""
    consul = AppliedThenLost()
    consul.lost.add(("register", "h:web:80"))
    agent = Agent(consul, resync_seconds=0, drain="maintenance")
    agent.start("web")
    agent.settle()  # registered, unsure: the answer was lost
    agent.event("web", "kill", SIGTERM)
    agent.controller.process(agent.take())  # the first look after the stop signal: no inspect
    assert "h:web:80" not in consul.services_
    assert [call for call, _ in consul.writes] == ["register", "deregister"]


def test_maintenance_mode_whose_answer_was_lost_is_left_when_the_container_turns_out_not_to_stop():
    consul = AppliedThenLost()
    agent = Agent(consul, resync_seconds=0, drain="maintenance", drain_timeout=30)
    agent.start("web")
    agent.settle()
    consul.lost.add(("maintenance", "h:web:80"))
    agent.event("web", "kill", SIGTERM)
    agent.settle()  # in maintenance mode; the reconcile failed and waits for its retry
    agent.clock.advance(31)  # web never stopped: past --drain-timeout it is registered as before
    agent.settle()
    assert "_service_maintenance:h:web:80" not in consul.checks


def test_a_container_waiting_for_an_id_another_owner_held_takes_it_at_its_next_look_once_the_owner_is_gone():
    """The view's belief that another owner holds it comes from the last refresh and may be stale
    (with -resync 0, for good): Consul's answer at the write decides."""
    agent = Agent(resync_seconds=0)
    agent.consul.services_["db"] = ServiceSpec("db", "db", "10.0.0.9", 5432)  # an operator's
    agent.controller.process(RESYNC)
    agent.start("web", env={"SERVICE_ID": "db"})
    agent.settle()
    assert agent.consul.holder("db") == ""
    del agent.consul.services_["db"]  # the operator removes it (or Consul restarted without its data)
    agent.event("web", "health_status: healthy")
    agent.settle()
    assert agent.consul.holder("db") == "web"


def test_a_reconcile_that_finds_a_service_of_this_host_gone_from_consul_brings_back_the_others_too():
    """Consul restarted without its data, and a reconcile writes again before the probe looks."""
    agent = Agent(resync_seconds=0)
    agent.start("a")
    agent.start("b", host_port=9000)
    agent.settle()
    agent.consul.services_.clear()
    agent.docker.containers["a"] = replace(agent.docker.containers["a"], health="healthy", has_healthcheck=True)
    agent.event("a", "health_status: healthy")
    agent.settle()
    assert set(agent.consul.services_) == {"h:a:80", "h:b:80"}


def test_a_registration_that_went_through_but_whose_answer_was_lost_is_removed_when_the_container_stops():
    consul = AppliedThenLost()
    consul.lost.add(("register", "h:web:80"))
    agent = Agent(consul, resync_seconds=0)
    agent.start("web")
    agent.settle()  # registered; the reconcile failed and waits for its retry
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], running=False, exit_code=0)
    agent.event("web", "die")
    agent.settle()
    agent.clock.advance(BACKOFF)
    agent.settle()
    assert "h:web:80" not in consul.services_


def test_a_deregistration_that_went_through_but_whose_answer_was_lost_is_undone_when_the_container_restarts():
    consul = AppliedThenLost()
    agent = Agent(consul, resync_seconds=0)
    agent.start("web")
    agent.settle()
    consul.lost.add(("deregister", "h:web:80"))
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], running=False, exit_code=0)
    agent.event("web", "die")
    agent.settle()  # deregistered; the reconcile failed and waits for its retry
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], running=True, started_at=2000.0)
    agent.event("web", "start")
    agent.settle()
    agent.clock.advance(BACKOFF)
    agent.settle()
    assert agent.consul.holder("h:web:80") == "web"


def test_cleanup_removes_each_entry_of_a_gone_container_once_and_says_how_many():
    agent = Agent(cleanup=True, resync_seconds=0)
    for name, port in (("gone", 8081), ("also-gone", 8082), ("running", 8083)):
        agent.consul.services_[f"h:{name}:80"] = ServiceSpec(f"h:{name}:80", name, "10.0.0.5", port)  # registrator's, no Meta
    agent.consul.services_["h:refused:80"] = ServiceSpec("h:refused:80", "refused", "10.0.0.5", 8084)
    agent.consul.denied.add(("deregister", "h:refused:80"))
    reconciler = agent.controller.reconciler
    reconciler.refresh()
    assert reconciler.sweep_legacy({"running"}) == 2
    assert set(agent.consul.services_) == {"h:running:80", "h:refused:80"}
    assert ("deregister", "h:gone:80") in agent.consul.writes
    assert reconciler.sweep_legacy({"running"}) == 0  # the refused one is not tried again, the removed ones are forgotten
    assert [w for w in agent.consul.writes if w[0] == "deregister"] == [("deregister", "h:also-gone:80"),
                                                                        ("deregister", "h:gone:80")]


def test_cleanup_that_consul_fails_on_its_way_raises_after_trying_every_entry():
    agent = Agent(cleanup=True, resync_seconds=0)
    for name, port in (("one", 8081), ("two", 8082)):
        agent.consul.services_[f"h:{name}:80"] = ServiceSpec(f"h:{name}:80", name, "10.0.0.5", port)
    agent.consul.fail_once.add(("deregister", "h:one:80"))
    reconciler = agent.controller.reconciler
    reconciler.refresh()
    with pytest.raises(ConsulError, match="deregister h:one:80"):
        reconciler.sweep_legacy(set())
    assert set(agent.consul.services_) == {"h:one:80"}
    assert reconciler.sweep_legacy(set()) == 1  # tried again at the next resync


def test_cleanup_goes_on_past_a_registrator_entry_consul_will_not_remove():
    """One legacy entry whose removal the ACL denies ended every resync before any container was
    looked at: a lost service was never registered again, a dead container's never removed."""
    agent = Agent(cleanup=True)
    agent.consul.services_["h:oldapp:80"] = ServiceSpec("h:oldapp:80", "oldapp", "10.0.0.5", 8080)  # no Meta
    agent.consul.services_["h:gone:80"] = ServiceSpec("h:gone:80", "gone", "10.0.0.5", 8081)
    agent.consul.denied.add(("deregister", "h:oldapp:80"))
    agent.start("lost")
    agent.start("dead", host_port=9000)
    agent.settle()
    agent.consul.services_.pop("h:lost:80")  # the Consul agent lost it
    agent.docker.containers["dead"] = replace(agent.docker.containers["dead"], running=False)  # its die event was missed
    agent.controller.process(RESYNC)
    agent.settle()
    assert set(agent.consul.services_) == {"h:oldapp:80", "h:lost:80"}


def test_a_cleanup_that_fails_on_its_way_holds_no_container_up():
    agent = Agent(cleanup=True, resync_seconds=0)
    agent.start("lost")
    agent.settle()
    agent.consul.services_.pop("h:lost:80")  # the Consul agent lost it
    agent.consul.services_["h:gone:80"] = ServiceSpec("h:gone:80", "gone", "10.0.0.5", 8081)  # gliderlabs/registrator's
    agent.consul.fail_once.add(("deregister", "h:gone:80"))
    agent.controller.process(RESYNC)  # fails, and waits for its retry
    agent.settle()
    assert "h:lost:80" in agent.consul.services_


def test_a_cleanup_in_flight_does_not_remove_a_registration_adopted_meanwhile():
    agent = Agent(cleanup=True)
    agent.consul.services_["h:web:80"] = ServiceSpec("h:web:80", "web", "10.0.0.5", 8080)  # gliderlabs/registrator's
    sweeping = agent.consul.hold("deregister", "h:web:80")
    resync = in_thread(agent.controller.process, RESYNC)
    assert sweeping.reached()  # `docker ps` had no web: its entry is being removed

    agent.start("web")
    agent.controller.process(agent.take())  # web starts and asks for h:web:80
    sweeping.release()
    joined(resync)
    agent.settle()
    assert agent.consul.holder("h:web:80") == "web"


# -- partial failures -------------------------------------------------------------------------------


def test_a_service_consul_refuses_does_not_keep_the_containers_other_service_out():
    """One of a container's services is refused for good (ACL denies its name, or Consul rejects a
    container-supplied check): the reconcile stops at that op, the key is forgotten, and the
    container's other, acceptable service is never registered."""
    consul = FakeConsul()
    consul.denied.add(("register", "h:web:80"))
    agent = Agent(consul)
    agent.docker.containers["web"] = two_ports("web", {})
    agent.event("web", "start")
    agent.settle()
    agent.controller.resync()
    agent.settle()
    assert "h:web:81" in agent.consul.services_


class FailsOneService(FakeConsul):
    """Every write about one service fails, transiently (a 500 for that definition, time after time)."""

    def __init__(self, service_id: str) -> None:
        super().__init__()
        self.failing_service = service_id

    def _call(self, call: str, key: str) -> None:
        super()._call(call, key)
        if call in ("register", "maintenance") and key == self.failing_service:
            raise ConsulError(f"Consul {call} {key}: 500 rpc error", transient=True)


def test_a_service_consul_keeps_failing_does_not_keep_the_containers_other_service_out_of_date():
    agent = Agent(FailsOneService("h:web:80"), resync_seconds=0, drain="maintenance")
    agent.docker.containers["web"] = replace(two_ports("web", {}), has_healthcheck=True, health="healthy")
    agent.event("web", "start")
    agent.settle()
    assert "h:web:81" in agent.consul.services_ and agent.consul.checks["service:h:web:81#docker-health"].status == "passing"
    assert agent.queue.failures("web") == 1  # and the container is tried again

    agent.event("web", "kill", SIGTERM)  # it is being stopped: out of DNS
    agent.settle()
    assert "_service_maintenance:h:web:81" in agent.consul.checks


def test_deregister_on_exit_removes_every_service_even_if_one_call_fails():
    consul = FakeConsul()
    agent = Agent(consul, deregister_on_exit=True)
    agent.start("a")
    agent.start("b", host_port=8081)
    agent.settle()
    consul.fail_once.add(("deregister", "h:a:80"))
    agent.controller.deregister_all()
    assert "h:b:80" not in agent.consul.services_


# -- memory -----------------------------------------------------------------------------------------


def test_under_resync_0_a_removed_containers_tables_are_pruned():
    """`_verified` is pruned only by a resync: under `-resync 0` every container ever seen leaves an
    entry behind (a CI host running thousands of short-lived containers)."""
    agent = Agent(resync_seconds=0)
    for n in range(3):
        agent.start(f"c{n}")
        agent.settle()
        del agent.docker.containers[f"c{n}"]
        agent.event(f"c{n}", "destroy")
        agent.settle()
    assert agent.consul.services_ == {}
    assert agent.controller.reconciler._verified == {}


class ChecksFail(FakeConsul):
    def check_states(self) -> dict[str, tuple[str, str]]:
        raise ConsulError("Consul agent/checks: rejected: 403", transient=False)


def test_a_failed_refresh_stops_journalling_writes():
    """A refresh that fails between `begin_refresh` and `finish_refresh` leaves the journal on:
    every later write appends a closure until a refresh succeeds (never, for a refusal for good
    under `-resync 0`)."""
    agent = Agent(ChecksFail(), resync_seconds=0)
    agent.controller.process(RESYNC)
    for n in range(3):
        agent.start(f"c{n}")
        agent.settle()
    assert not agent.controller.reconciler.view._journal


# -- the worker pool --------------------------------------------------------------------------------


class SlowListing(FakeConsul):
    """Consul's service listing stalls until the test lets it go (longer than WAIT, so that the wait
    for the registration below cannot be ended by a held call timing out)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.listing, self.go = threading.Event(), threading.Event()
        self.calls = 0

    def services(self) -> dict[str, ServiceSpec]:
        self.calls += 1
        if self.calls > 1:  # the resyncs, not the read before events are followed
            self.listing.set()
            self.go.wait(3 * WAIT)
        return super().services()


def test_with_one_worker_a_resync_waiting_on_consul_does_not_stop_event_handling():
    """`--workers 1` is allowed; the one worker takes RESYNC and waits on Consul's listing, and a
    container that starts meanwhile is not registered until the listing comes back (the urgent
    worker takes only first stop signals)."""
    consul = SlowListing()
    agent = Agent(consul, workers=1, resync_seconds=0)
    running = in_thread(agent.controller.run)
    try:
        assert consul.listing.wait(WAIT)  # the worker took the RESYNC queued when the events stream opened
        agent.docker.containers["web"] = web("web", name="web")
        agent.docker.event_stream.put(ContainerEvent("web", "start", int(agent.clock() * 10**9), None))
        assert agent.consul.wait_until(lambda consul: "h:web:80" in consul.services_)
    finally:
        consul.go.set()
        agent.controller.stop.set()
        joined(running)


# -- the urgent lane --------------------------------------------------------------------------------


class TearingDown(FakeDocker):
    """Docker answers an inspect of a container being torn down only once it is done (here: when
    the test says so, later than WAIT, so no held call times out first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tearing_down: set[str] = set()
        self.done = threading.Event()

    def inspect(self, container_id: str) -> Any:
        if container_id in self.tearing_down:
            self.done.wait(3 * WAIT)
        return super().inspect(container_id)


def test_after_a_restart_of_the_agent_a_stop_signal_leaves_dns_without_waiting_for_dockers_teardown():
    """The agent restarted: web's service is in Consul (the view has it after the first refresh),
    but web was not inspected yet in this process when `docker stop` sends SIGTERM. The kill is
    urgent, but `_stopping` needs a `Running` entry, so the urgent worker inspects a container
    Docker is tearing down: the service stays in DNS for the whole graceful stop, and every other
    container's first stop signal waits behind it."""
    first = Agent()
    first.start("web")
    first.settle()

    docker = TearingDown()
    docker.containers = first.docker.containers
    restarted = Agent(consul=first.consul, docker=docker)
    restarted.controller.resync()  # web is queued (plain) for its first look
    docker.tearing_down.add("web")
    restarted.event("web", "kill", SIGTERM)
    urgent = in_thread(restarted.controller.work, True)
    try:
        assert first.consul.wait_until(lambda consul: "h:web:80" not in consul.services_)
    finally:
        docker.done.set()
        restarted.queue.shutdown()
        joined(urgent)


class FailsMaintenance(FakeConsul):
    """Consul fails every maintenance-mode write, for a passing reason, time after time."""

    def maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        raise ConsulError(f"Consul agent/service/maintenance {service_id}: 500 rpc error", transient=True)


def test_a_stopping_container_not_inspected_yet_whose_drain_keeps_failing_is_inspected_once_its_drain_timed_out():
    """A drain's retries need no inspect while the stop goes on; past --drain-timeout they are
    looks like any other, and find the container gone."""
    first = Agent(FailsMaintenance())
    first.start("web")
    first.settle()
    restarted = Agent(consul=first.consul, docker=first.docker, drain="maintenance", drain_timeout=30, resync_seconds=0)
    restarted.controller.process(RESYNC)  # the view has web's service; web is queued for its first look
    restarted.event("web", "kill", SIGTERM)
    restarted.settle()  # the drain fails
    del restarted.docker.containers["web"]
    for _ in range(8):
        restarted.clock.advance(BACKOFF)
        restarted.settle()
    assert first.consul.services_ == {}
    assert restarted.controller.reconciler.remembered()["kills"] == set()


def test_the_view_is_read_from_consul_before_events_are_followed():
    """Reconciles that ran before the first refresh compared with an empty view: after a restart
    they wrote every unchanged service again (and knew no other owner's IDs)."""
    agent = Agent()
    listing = agent.consul.hold("services")
    running = in_thread(agent.controller.run)
    assert listing.reached()
    assert agent.docker.events_calls == 0
    listing.release()
    assert agent.controller.ready.wait(WAIT)
    agent.controller.stop.set()
    joined(running)


def test_a_container_started_while_a_resync_listed_docker_still_drains_without_an_inspect():
    agent = Agent()
    listing = agent.docker.hold("running")
    resync = in_thread(agent.controller.process, RESYNC)
    assert listing.reached()  # `docker ps` was taken without `late`

    agent.start("late", stop_signal=3)  # STOPSIGNAL SIGQUIT: only its inspect tells it is a stop signal
    agent.settle()
    listing.release()
    joined(resync)  # it queued `late` for a look (it has services and was not listed): that look comes after the kill
    inspects = len(agent.docker.inspected)

    agent.event("late", "kill", 3)
    agent.controller.process(agent.take())
    assert "h:late:80" not in agent.consul.services_
    assert len(agent.docker.inspected) == inspects


def test_docker_run_costs_one_inspect_not_one_per_event():
    """`docker run` sends create, network connect and start: only the start can change what a
    container registers (a created container is not running)."""
    agent = Agent()
    agent.docker.containers["web"] = web("web", name="web")
    for action in ("create", "connect", "start"):
        agent.event("web", action)
        agent.settle()
    assert agent.docker.inspected == ["web"]


def test_network_changes_and_removal_of_a_running_or_registered_container_are_looked_at():
    agent = Agent(deregister="never")
    agent.start("web")
    agent.settle()
    agent.event("web", "disconnect")
    agent.settle()
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], running=False)
    agent.event("web", "die")
    agent.settle()
    assert "h:web:80" in agent.consul.services_  # kept by -deregister never
    del agent.docker.containers["web"]
    agent.event("web", "destroy")
    agent.settle()
    assert agent.docker.inspected == ["web"] * 4
    assert agent.consul.services_ == {}


# -- a Consul that stops accepting writes for a while (a cluster without quorum) ----------------------


def consul_takes_no_writes(agent: Agent, *containers: str) -> None:
    """Consul fails every write while `containers` start, and for six minutes of retries after, so
    that each waits the longest backoff, 60 s, by the end."""
    agent.consul.failing.update({"register", "update_check"})
    for container_id in containers:
        agent.start(container_id, host_port=8000 + len(agent.docker.containers))
    for _ in range(6):
        agent.settle()
        agent.clock.advance(60)
    agent.settle()
    assert {agent.queue.failures(c) for c in containers} == {7} and not agent.consul.services_


def test_when_consul_answers_again_after_an_outage_every_waiting_retry_is_made_at_once():
    agent = Agent(backoff=wait_exponential(multiplier=1, max=60))
    consul_takes_no_writes(agent, "a", "b", "c")
    agent.consul.failing.update({"has_service", "leader"})
    agent.controller.probe_consul()  # unreachable
    agent.consul.failing.clear()
    agent.controller.probe_consul()
    agent.consul.fail_once.add(("services", ""))  # the resync that follows fails: the retries do not wait for the next
    agent.settle()  # the clock has not moved: without the catch-up they would wait a minute
    assert {agent.consul.holder(f"h:{c}:80") for c in "abc"} == set("abc")
    assert {agent.queue.failures(c) for c in "abc"} == {0}


def test_when_the_cluster_has_a_leader_again_every_waiting_retry_is_made_at_once():
    """Without a leader the local agent may still answer reads from its own state: the probe asks
    for the leader while keys wait because Consul failed them."""
    agent = Agent(backoff=wait_exponential(multiplier=1, max=60))
    agent.consul.leaderless = True
    consul_takes_no_writes(agent, "a", "b")
    agent.controller.probe_consul()
    agent.settle()
    assert {agent.queue.failures(c) for c in "ab"} == {7}  # no leader: nothing is tried early

    agent.consul.failing.clear()
    agent.consul.leaderless = False
    agent.controller.probe_consul()
    agent.consul.fail_once.add(("services", ""))
    agent.settle()
    assert {agent.consul.holder(f"h:{c}:80") for c in "ab"} == set("ab")


class OneBadRegistration(FakeConsul):
    """Consul fails one registration every time (a 500 for that definition), and takes every other write."""

    def register(self, spec: ServiceSpec) -> None:
        if spec.id == "h:poison:80":
            raise ConsulError("Consul agent/service/register h:poison:80: 500 rpc error", transient=True)
        super().register(spec)


@pytest.mark.parametrize("busy", [False, True], ids=["alone", "beside-writes-consul-takes"])
def test_a_key_consul_keeps_failing_is_tried_as_its_backoff_says_however_often_consul_is_probed(busy):
    agent = Agent(OneBadRegistration(), backoff=wait_exponential(multiplier=1, max=60), consul_probe_seconds=5)
    agent.start("poison")
    if busy:
        agent.start("busy", host_port=9000)
    agent.settle()
    before = agent.docker.inspected.count("poison")
    for tick in range(120):  # ten minutes of probes, and of other containers' writes that Consul takes
        agent.clock.advance(5)
        agent.controller.probe_consul()
        if busy and tick % 2:
            agent.event("busy", "health_status: healthy")
            agent.docker.containers["busy"] = replace(agent.docker.containers["busy"], started_at=agent.clock())
        agent.settle()
    tries = agent.docker.inspected.count("poison") - before
    assert tries <= 16  # 1, 2, 4, ... 32 s, then every 60 s


def test_a_write_in_flight_when_consul_came_back_that_failed_after_is_tried_again_at_once():
    """Its call was sent during the outage and timed out just after the probe saw Consul back: its
    backoff (up to a minute) is not what it should wait."""
    agent = Agent(backoff=wait_exponential(multiplier=1, max=60))
    consul_takes_no_writes(agent, "a")
    agent.consul.failing.add("leader")
    agent.controller.probe_consul()  # unreachable
    agent.clock.advance(60)
    stalled = agent.consul.hold("register", "h:a:80")
    worker = in_thread(agent.controller.process, agent.take())  # its normal retry, sent while Consul is away
    assert stalled.reached()
    agent.clock.advance(1)
    agent.consul.failing.clear()
    agent.controller.probe_consul()  # Consul is back
    agent.consul.fail_once.update({("register", "h:a:80"), ("services", "")})  # and the resync after it
    stalled.release()  # the stalled call fails
    joined(worker)
    agent.settle()
    assert agent.consul.holder("h:a:80") == "a"


def test_a_resync_that_failed_during_the_outage_is_retried_when_consul_is_back():
    agent = Agent(backoff=wait_exponential(multiplier=1, max=60))
    agent.consul.failing.update({"services", "register"})
    agent.background.add(RESYNC)
    consul_takes_no_writes(agent, "a")
    assert agent.background.failures(RESYNC) == 7
    agent.consul.failing.update({"has_service", "leader"})
    agent.controller.probe_consul()
    agent.consul.failing.clear()
    agent.controller.probe_consul()
    assert len(agent.background) == 1 and agent.background.get() == RESYNC  # due now, not in a minute


def test_the_probe_resyncs_when_consul_lost_our_services_or_answers_again():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.controller.probe_consul()
    assert len(agent.background) == 0

    agent.consul.services_.clear()  # a dev agent restarted, a data dir wiped
    agent.controller.probe_consul()
    agent.settle()
    assert "h:web:80" in agent.consul.services_

    agent.consul.failing.add("has_service")
    agent.controller.probe_consul()
    assert len(agent.background) == 0
    agent.consul.failing.clear()
    agent.controller.probe_consul()
    assert agent.background.get() == RESYNC


def test_the_probe_notices_consul_lost_our_services_though_a_new_one_was_registered_since():
    """The probe reads the oldest service of this host: one registered after Consul lost the
    others (its restart without its data) tells nothing."""
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.consul.services_.clear()
    agent.start("0new", host_port=9000)  # h:0new:80 comes first in ID order
    agent.settle()
    agent.controller.probe_consul()
    agent.settle()
    assert set(agent.consul.services_) == {"h:web:80", "h:0new:80"}


class AnswerAfterApplying(FakeConsul):
    """Consul applies a registration, and its answer reaches the agent after a hold ("answer", ID)."""

    def register(self, spec: ServiceSpec) -> None:
        super().register(spec)
        self.pause("answer", spec.id)


def test_the_probe_notices_consul_lost_a_service_whose_answer_came_after_a_newer_ones():
    """What counts is when a registration was sent: Consul lost everything it applied before its
    restart, whatever order the answers came in (found by the simulation's long run, seed 18293)."""
    agent = Agent(AnswerAfterApplying(), resync_seconds=0)
    answer = agent.consul.hold("answer", "h:web:80")
    agent.start("web")
    look = in_thread(agent.controller.process, agent.take())
    assert answer.reached()  # Consul applied it
    agent.consul.services_.clear()  # and restarted without its data
    agent.start("api", host_port=9000)
    agent.settle()  # h:api:80 is registered after the restart, and its answer comes first
    answer.release()
    joined(look)
    agent.controller.probe_consul()
    agent.settle()
    assert set(agent.consul.services_) == {"h:web:80", "h:api:80"}


def test_without_services_of_its_own_the_probe_takes_no_leader_for_an_outage_not_for_lost_services():
    agent = Agent(resync_seconds=0)
    agent.consul.leaderless = True
    agent.controller.probe_consul()
    agent.controller.probe_consul()
    assert len(agent.background) == 0
    agent.consul.leaderless = False
    agent.controller.probe_consul()
    assert len(agent.background) == 1  # back after an outage: one resync


def remembered(agent: Agent) -> dict[str, set[str]]:
    """Every table of the core that names containers, with the containers it names."""
    tables = dict(agent.controller.reconciler.remembered())
    tables.update({f"queue.{name}": keys for name, keys in agent.queue.remembered().items()})
    return {name: keys for name, keys in tables.items() if keys}


def run_to_completion(agent: Agent, container_id: str, exit_code: int = 0, **kwargs: Any) -> None:
    """`docker run --rm`: start, exit, removal."""
    agent.start(container_id, **kwargs)
    agent.settle()
    agent.docker.containers[container_id] = replace(agent.docker.containers[container_id], running=False, exit_code=exit_code)
    agent.event(container_id, "die")
    agent.settle()
    del agent.docker.containers[container_id]
    agent.event(container_id, "destroy")
    agent.settle()


def test_a_container_that_ran_to_completion_and_was_removed_is_not_remembered():
    agent = Agent(resync_seconds=0)
    run_to_completion(agent, "job", env={"SERVICE_XYZ-1": "bad key"})
    assert remembered(agent) == {}


@pytest.mark.parametrize("deregister", ["never", "on-success"])
def test_a_container_refused_an_id_that_ran_to_completion_and_was_removed_is_not_remembered(deregister):
    agent = Agent(resync_seconds=0, deregister=deregister)
    agent.start("holder", env={"SERVICE_ID": "shared"})
    agent.settle()
    run_to_completion(agent, "job", exit_code=1, host_port=9000, env={"SERVICE_ID": "shared"})  # refused: holder has it
    assert remembered(agent) == {"services": {"holder"}, "running": {"holder"}, "verified": {"holder"}}


def test_a_gone_container_whose_unsure_service_id_another_owner_took_is_not_remembered():
    """It does not ask for the ID any more, so it waits for nothing (found by the simulation's long
    run, seed 11609, with -resync 0: no resync forgets it)."""
    agent = Agent(resync_seconds=0)
    agent.consul.fail_once.add(("register", "shared"))  # may have gone through: unsure
    agent.start("job", env={"SERVICE_ID": "shared"})
    agent.settle()
    agent.consul.services_["shared"] = ServiceSpec("shared", "db", "10.0.0.9", 5432, meta=MappingProxyType(
        {"registrator-host": "h2", "registrator-container": "x"}))
    del agent.docker.containers["job"]
    agent.event("job", "destroy")
    agent.settle()
    assert agent.consul.services_["shared"].address == "10.0.0.9"
    assert remembered(agent) == {}


def test_a_resync_forgets_containers_that_are_gone_whose_removal_the_agent_missed():
    agent = Agent()
    agent.start("job", env={"SERVICE_XYZ-1": "bad key"})
    agent.settle()
    agent.docker.containers["job"] = replace(agent.docker.containers["job"], running=False, exit_code=0)
    agent.event("job", "die")
    agent.settle()
    del agent.docker.containers["job"]  # its destroy event was lost
    agent.controller.resync()
    agent.settle()
    assert remembered(agent) == {}


def test_a_container_refused_an_id_after_a_resync_listed_the_containers_still_gets_it_when_it_is_free():
    agent = Agent(resync_seconds=0)
    agent.start("holder", env={"SERVICE_ID": "shared"})
    agent.settle()
    listing = agent.docker.hold("running")
    resync = in_thread(agent.controller.process, RESYNC)
    assert listing.reached()  # `docker ps` answered without late
    agent.start("late", host_port=9000, env={"SERVICE_ID": "shared"})
    agent.controller.process(agent.take())  # refused: holder has it
    listing.release()
    joined(resync)
    agent.settle()

    del agent.docker.containers["holder"]
    agent.event("holder", "die")
    agent.settle()
    assert agent.consul.holder("shared") == "late"


class AnswerOnItsWay(FakeDocker):
    """Docker makes its answer when the inspect is asked; the answer reaches the agent after a hold."""

    def inspect(self, container_id: str) -> Any:
        self.inspected.append(container_id)
        answer = self.containers.get(container_id)
        self.pause("inspect", container_id)
        return answer


def test_a_network_connect_while_the_first_inspect_is_answered_is_looked_at():
    """`docker run --network bridge -e SERVICE_NETWORK=backend … && docker network connect backend web`."""
    agent = Agent(docker=AnswerOnItsWay(), resync_seconds=0)
    agent.docker.containers["web"] = web("web", name="web", env={"SERVICE_NETWORK": "backend"})
    answer = agent.docker.hold("inspect", "web")
    agent.event("web", "start")
    first_look = in_thread(agent.controller.process, agent.take())
    assert answer.reached()  # Docker answered: on bridge only
    agent.docker.containers["web"] = replace(agent.docker.containers["web"],
                                             networks=(NetworkAttachment("backend", "172.20.0.7"),))
    agent.event("web", "connect")
    answer.release()
    joined(first_look)
    agent.settle()
    assert agent.consul.services_["h:web:80"].address == "172.20.0.7"
    assert agent.docker.inspected == ["web", "web"]


# -- what a resync looks at -------------------------------------------------------------------------


def test_a_look_whose_inspect_docker_answered_before_a_resyncs_listing_is_made_again_after_it():
    """Its write can land after the resync, and when the events since are lost (a dockerd restart
    stops the container and forgets its die), nothing else would look at the container again
    (found by the simulation's long run, seed 6868, with -resync 0)."""
    agent = Agent(docker=AnswerOnItsWay(), resync_seconds=0)
    agent.docker.containers["web"] = web("web")
    answer = agent.docker.hold("inspect", "web")
    agent.event("web", "start")
    look = in_thread(agent.controller.process, agent.take())
    assert answer.reached()  # Docker answered: running
    agent.docker.containers["web"] = replace(agent.docker.containers["web"], running=False, exit_code=143)  # its die is lost
    agent.controller.resync()
    answer.release()
    joined(look)
    agent.settle()
    assert "h:web:80" not in agent.consul.services_


def test_a_resync_looks_again_at_an_unchanged_container_whose_service_consul_lost():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.controller.resync()  # the first resync looks at every container
    agent.settle()
    agent.consul.services_.clear()  # Consul lost it; web itself is unchanged
    agent.controller.resync()
    agent.settle()
    assert "h:web:80" in agent.consul.services_


def test_every_tenth_resync_looks_at_every_container_changed_or_not():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    looks = []
    for _ in range(11):
        inspects = len(agent.docker.inspected)
        agent.controller.resync()
        agent.settle()
        looks.append(len(agent.docker.inspected) - inspects)
    assert looks == [1] + [0] * 9 + [1]


# -- a stop, seen by an agent that has not inspected the container yet --------------------------------


def restarted_agent_with(container: Any) -> tuple[Agent, Agent]:
    """An agent that registered the container, and a new one (restarted) that has only read Consul."""
    first = Agent()
    first.docker.containers[container.id] = container
    first.event(container.id, "start")
    first.settle()
    restarted = Agent(consul=first.consul, docker=first.docker, resync_seconds=0)
    restarted.controller.reconciler.refresh()
    return first, restarted


def test_a_usual_stop_signal_that_is_not_the_containers_drains_it_then_registers_it_again_at_once():
    """SIGTERM to a container whose STOPSIGNAL is SIGQUIT: drained at the signal (no inspect: Docker
    may be tearing it down), then looked at at once, which tells that it was no stop."""
    _, restarted = restarted_agent_with(web("web", name="web", stop_signal=3))
    inspects = len(restarted.docker.inspected)
    restarted.event("web", "kill", SIGTERM)
    restarted.controller.process(restarted.take())
    assert "h:web:80" not in restarted.consul.services_ and len(restarted.docker.inspected) == inspects
    restarted.clock.advance(0.1)  # not the drain timeout (120 s)
    restarted.settle()
    assert "h:web:80" in restarted.consul.services_


def test_a_drain_that_failed_is_tried_again_without_an_inspect():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    inspects = len(agent.docker.inspected)
    agent.consul.fail_once.add(("deregister", "h:web:80"))
    agent.event("web", "kill", SIGTERM)
    agent.settle()
    agent.clock.advance(BACKOFF)
    agent.settle()
    assert "h:web:80" not in agent.consul.services_
    assert len(agent.docker.inspected) == inspects  # Docker is tearing it down: an inspect would wait for that


class Recorded(logging.Handler):
    """Log records as they come, and an event set by the first that matches."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)
        self.matched = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.pattern.fullmatch(message):
            self.matched.set()


@contextmanager
def recorded(pattern: str) -> Iterator[Recorded]:
    handler = Recorded(pattern)
    logger = logging.getLogger("registrator")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass(frozen=True)
class Spawning(Runtime):
    """The system runtime, noting each thread the agent makes: its name and its arguments that are not code."""

    spawned: list[tuple[str, tuple[object, ...]]] = field(default_factory=list)

    def thread(self, target: Callable[..., object], name: str, args: tuple[Any, ...] = ()) -> threading.Thread:
        self.spawned.append((name, tuple(a for a in args if not callable(a))))
        return super().thread(target, name, args)


def test_run_waits_for_consuls_services_then_starts_its_loops_and_workers_under_the_names_healthz_and_the_logs_show():
    docker, consul, runtime = FakeDocker(), FakeConsul(), Spawning()
    consul.failing.add("services")
    controller = Controller(agent_settings(workers=2), docker, consul, runtime=runtime)
    with recorded(r"reading Consul's services: Consul services : connection refused; trying again in \d+\.\ds") as log:
        running = in_thread(controller.run)
        assert log.matched.wait(WAIT), log.messages
    assert runtime.spawned == []
    consul.failing.clear()
    assert controller.ready.wait(WAIT)
    assert runtime.spawned == [("events", ("events",)), ("consul-probe", ("consul-probe",)), ("resync", ("resync",)),
                               ("heartbeat", ("heartbeat",)), ("worker-0", ()), ("worker-1", ()), ("worker-urgent", (True,)),
                               ("worker-background", ())]
    controller.stop.set()
    joined(running)


def test_a_closed_events_stream_is_a_warning_that_names_it():
    agent = Agent()
    pump = in_thread(agent.controller.pump)
    assert agent.controller.ready.wait(WAIT)
    with recorded(r"Docker events: Docker events stream closed; trying again in \d+\.\ds") as log:
        agent.docker.event_stream.put(None)
        assert log.matched.wait(WAIT), log.messages
    agent.controller.stop.set()
    agent.docker.close_events()
    joined(pump)


@pytest.mark.parametrize("action", ["connect", "disconnect", "destroy"])
def test_a_network_change_or_removal_of_a_container_the_agent_knows_nothing_of_is_not_looked_at(action):
    agent = Agent()
    agent.event("stranger", action)
    assert len(agent.queue) == 0


def test_events_are_counted_by_action_without_their_detail():
    agent = Agent()
    agent.event("web", "health_status: healthy")
    agent.event("web", "exec_start: sh -c true")
    assert [agent.controller.metrics.value("registrator_events_total", action=a) for a in ("health_status", "exec_start")] == [1,
                                                                                                                               1]


@pytest.mark.parametrize(("backoff", "ceilings"), [
    (RECONNECT_BACKOFF, [0.5, 1, 2, 4, 8, 10, 10]),
    (RESTART_BACKOFF, [0.5, 1, 2, 4, 8, 16, 30, 30]),
    (DEFAULT_BACKOFF, [0.25, 0.5, 1, 2, 4, 8, 16, 32, 60, 60]),
], ids=["docker-and-consul-reconnect", "dead-loop-restart", "one-container"])
def test_retries_double_from_a_fraction_of_a_second_up_to_their_ceiling(backoff, ceilings, monkeypatch):
    """docs/resilience.md promises: Docker and Consul are tried again at most 10 s apart, one container at most 60 s apart.
    Each wait is random below its ceiling (jitter); here the random draw is the ceiling itself."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert [backoff(SimpleNamespace(attempt_number=n)) for n in range(1, len(ceilings) + 1)] == ceilings


def test_while_consul_takes_this_hosts_writes_the_probe_reads_one_service_and_does_not_ask_for_the_leader():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.consul.failing.add("leader")  # were it asked, Consul would look away, then back, and a resync would follow
    for _ in range(2):
        agent.controller.probe_consul()
    agent.consul.failing.clear()
    agent.controller.probe_consul()
    assert len(agent.background) == 0


def test_after_consul_failed_a_key_the_probe_asks_for_the_leader_until_a_write_goes_through():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.consul.fail_once.add(("register", "h:api:80"))
    agent.start("api", host_port=9000)
    agent.settle()  # its registration failed: its retry waits
    agent.consul.leaderless = True
    agent.controller.probe_consul()  # no leader: Consul is away
    agent.consul.leaderless = False
    agent.controller.probe_consul()  # back: a resync
    assert len(agent.background) == 1 and agent.background.get() == RESYNC
    agent.controller.process(RESYNC)
    agent.settle()
    assert agent.consul.holder("h:api:80") == "api"
    agent.consul.leaderless = True  # a write went through: the leader is not asked any more
    agent.controller.probe_consul()
    agent.consul.leaderless = False
    agent.controller.probe_consul()
    assert len(agent.background) == 0


def test_once_consul_is_back_the_next_probes_find_nothing_to_catch_up():
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.consul.failing.add("has_service")
    agent.controller.probe_consul()
    agent.consul.failing.clear()
    with recorded(r"Consul agent is back: resyncing, and retrying the 0 waiting reconciles now") as log:
        agent.controller.probe_consul()
    assert log.matched.is_set(), log.messages
    agent.settle()
    agent.controller.probe_consul()
    assert len(agent.background) == 0


def test_consul_away_is_one_warning_however_many_probes_find_it_away():
    agent = Agent(resync_seconds=0)
    agent.consul.leaderless = True
    with recorded(r"Consul agent has no cluster leader") as log:
        for _ in range(3):
            agent.controller.probe_consul()
    assert [m for m in log.messages if m.startswith("Consul agent")] == ["Consul agent has no cluster leader"]


def test_every_table_the_memory_bound_is_checked_on_is_named():
    """The simulation's invariant (d) names the table that holds a gone container."""
    agent = Agent()
    assert set(agent.controller.reconciler.remembered()) == {"warned", "verified", "fingerprints", "services", "reserved",
                                                             "refused",
                                                             "kills", "unseen", "running"}
    assert set(agent.queue.remembered()) == {"failures", "urgent", "dirty", "processing", "timers"}


def test_each_write_is_counted_once_and_logged_with_what_it_did():
    agent = Agent(resync_seconds=0, drain="maintenance")
    agent.docker.containers["web"] = two_ports("web", {})
    writes = lambda: agent.controller.metrics.value("registrator_reconcile_writes_total")  # noqa: E731
    with recorded(r"container web: registered h:web:81 \(nginx-81 at 10\.0\.0\.5:8081\)") as log:
        agent.event("web", "start")
        agent.settle()
    assert writes() == 2 and log.matched.is_set(), log.messages

    agent.docker.containers["web"] = replace(two_ports("web", {"SERVICE_81_TAGS": "new"}), started_at=1001.0)
    with recorded(r"container web: updated h:web:81 \(nginx-81 at 10\.0\.0\.5:8081\)") as log:
        agent.event("web", "start")
        agent.settle()
    assert writes() == 3 and log.matched.is_set(), log.messages

    with recorded(r"container web: h:web:81 entered maintenance mode") as log:
        agent.event("web", "kill", 15)
        agent.settle()
    assert writes() == 5 and log.matched.is_set(), log.messages
    assert {k: (c.status, c.output) for k, c in agent.consul.checks.items() if k.startswith("_service_maintenance:")} == {
        f"_service_maintenance:h:web:{port}": ("critical", "container is stopping (registrator)") for port in (80, 81)}


def test_one_service_consul_fails_to_put_in_maintenance_holds_none_of_the_others_back():
    agent = Agent(resync_seconds=0, drain="maintenance")
    agent.docker.containers["web"] = two_ports("web", {})
    agent.event("web", "start")
    agent.settle()
    agent.consul.fail_once.add(("maintenance", "h:web:80"))
    agent.event("web", "kill", 15)
    agent.controller.process(agent.take())
    assert [k for k in agent.consul.checks if k.startswith("_service_maintenance:")] == ["_service_maintenance:h:web:81"]


def outcome_of(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException | None]]:
    """`call` in a thread, and what it raised (None once it returned)."""
    ended: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            ended.append(exc)
        else:
            ended.append(None)
    return in_thread(run), ended


def with_consul_timeout(settings: Settings, seconds: float) -> Settings:
    return replace(settings, options=replace(settings.options, consul=ConsulEndpoint(timeout=seconds)))


@pytest.mark.parametrize("during", ["the-backoff", "the-call"])
def test_a_stop_while_consuls_first_read_keeps_failing_ends_run_quietly(during):
    docker, consul = FakeDocker(), FakeConsul()
    consul.failing.add("services")
    controller = Controller(agent_settings(), docker, consul)
    with recorded(r"reading Consul's services: .*") as log:
        running, ended = outcome_of(controller.run)
        assert log.matched.wait(WAIT), log.messages
    call = consul.hold("services") if during == "the-call" else None
    if call is not None:
        assert call.reached()
    controller.stop.set()
    if call is not None:
        call.release()  # and the call fails
    joined(running)
    assert ended == [None]


def test_a_stop_waits_for_threads_stuck_in_a_call_no_longer_than_the_docker_timeout():
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web")
    stuck = docker.hold("inspect", "web")
    controller = Controller(agent_settings(docker_timeout=0.2), docker, consul)
    running = in_thread(controller.run)
    assert stuck.reached()  # the first resync's look: a worker is stuck in Docker
    controller.stop.set()
    joined(running)
    stuck.release()


def test_a_stop_signal_is_drained_by_the_urgent_worker_while_every_other_worker_is_stuck():
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web")
    controller = Controller(agent_settings(workers=1), docker, consul)
    running = in_thread(controller.run)
    assert consul.wait_until(lambda c: "h:web:80" in c.services_)
    stuck = [docker.hold("inspect", name) for name in ("a", "b")]
    for name in ("a", "b"):
        docker.containers[name] = web(name, name=name, host_port=9000 + len(name))
        docker.event_stream.put(ContainerEvent(name, "start", time.time_ns(), None))
    assert stuck[0].reached()  # the one ordinary worker is stuck; "b" waits for it
    docker.event_stream.put(ContainerEvent("web", "kill", time.time_ns(), 15))
    assert consul.wait_until(lambda c: "h:web:80" not in c.services_)
    for hold in stuck:
        hold.release()
    controller.stop.set()
    joined(running)


def test_deregister_on_exit_removes_the_services_the_agent_knows_of_when_consul_cannot_list_them():
    agent = Agent(deregister_on_exit=True)
    agent.start("web")
    agent.settle()
    agent.consul.failing.add("services")
    agent.controller.deregister_all()
    assert agent.consul.services_ == {}


def test_deregister_on_exit_waits_for_a_write_in_flight_no_longer_than_two_consul_timeouts_and_says_so():
    consul = FakeConsul()
    docker = FakeDocker()
    docker.containers["web"] = web("web")
    controller = Controller(with_consul_timeout(agent_settings(), 0.1), docker, consul)
    stuck = consul.hold("register", "h:web:80")
    look = in_thread(controller.reconciler.reconcile, "web")
    assert stuck.reached()
    with recorded(r"deregistering on exit while a Consul write is still in flight") as log:
        leaving = in_thread(controller.deregister_all)
        joined(leaving)
    assert log.matched.is_set(), log.messages
    stuck.release()
    joined(look)


def test_healthz_gives_the_age_of_the_last_reconcile_to_the_millisecond():
    agent = Agent()
    agent.start("web")
    agent.settle()
    agent.clock.advance(2.5004)
    assert agent.controller.health()[1]["last_reconcile_age_seconds"] == 2.5


def test_a_resync_consul_refuses_for_good_starts_from_the_shortest_backoff_when_it_fails_again():
    agent = Agent(backoff=wait_exponential(multiplier=1, max=60))
    agent.consul.fail_once.add(("services", ""))
    agent.background.add(RESYNC)
    agent.settle()
    assert agent.background.failures(RESYNC) == 1
    agent.consul.denied.add(("services", ""))
    agent.clock.advance(1)
    with recorded(r"\*resync\*: Consul services : permission denied by ACL") as log:
        agent.settle()
    assert agent.background.failures(RESYNC) == 0 and log.matched.is_set(), log.messages


def test_a_failed_resync_and_a_failed_look_are_logged_under_their_names():
    agent = Agent()
    agent.docker.containers["web"] = web("web")
    agent.docker.failing.add("web")
    with recorded(r"container web: .*; trying again in \d+\.\ds") as log:
        agent.event("web", "start")
        agent.settle()
    assert log.matched.is_set(), log.messages
    agent.consul.failing.add("services")
    with recorded(r"\*resync\*: Consul services : connection refused; trying again in \d+\.\ds") as log:
        agent.background.add(RESYNC)
        agent.controller.process(agent.background.get() or "")
    assert log.matched.is_set(), log.messages


def test_consul_refusing_to_read_the_probed_service_is_not_consul_away():
    """A 400 or 403 is an answer: Consul is there (a U+202E in an ID got a 400 on every read, and the
    probe said "unreachable" for ever, so lost services were never noticed; issue 21)."""
    agent = Agent(resync_seconds=0)
    agent.start("web")
    agent.settle()
    agent.consul.denied.add(("has_service", "h:web:80"))
    with recorded(r"Consul agent (unreachable|has no cluster leader).*") as log:
        for _ in range(3):
            agent.controller.probe_consul()
    agent.consul.denied.clear()
    agent.controller.probe_consul()
    assert not log.matched.is_set() and len(agent.background) == 0, log.messages
    assert [m for m in log.messages if m.startswith("Consul agent")] == [
        "Consul agent refuses the probe's read: Consul has_service h:web:80: permission denied by ACL"]


def test_sighup_reads_the_token_file_again_before_its_resync():
    """A token rotated in its file is picked up without a restart (issue 21)."""
    agent = Agent()
    agent.controller.resync_now()  # what the SIGHUP handler calls
    agent.background.add(RESYNC)
    agent.settle()
    agent.background.add(RESYNC)  # a resync SIGHUP did not ask for reads nothing again
    agent.settle()
    assert agent.consul.token_reloads == 1
