"""The concurrent core against fake Docker and Consul: interleavings forced with holds, never slept for."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tenacity import wait_fixed

from registrator.docker.source import ContainerEvent
from registrator.reconcile.controller import HEARTBEAT, RESYNC, Controller
from registrator.reconcile.queue import WorkQueue
from tests.fakes import WAIT, Clock, FakeConsul, FakeDocker, agent_settings, web

SIGHUP, SIGTERM = 1, 15
BACKOFF = 5.0


class Agent:
    """A controller over fakes, with its queue and clock at hand; `settle` handles every key due now."""

    def __init__(self, **options: Any) -> None:
        self.docker, self.consul, self.clock = FakeDocker(), FakeConsul(), Clock()
        self.queue = WorkQueue(backoff=wait_fixed(BACKOFF), clock=self.clock)
        self.controller = Controller(agent_settings(**options), self.docker, self.consul, queue=self.queue, clock=self.clock)

    def start(self, container_id: str, **kwargs: Any) -> None:
        self.docker.containers[container_id] = web(container_id, **{"name": container_id, **kwargs})
        self.event(container_id, "start")

    def event(self, container_id: str, action: str, signal: int | None = None) -> None:
        self.controller.on_event(ContainerEvent(container_id, action, int(self.clock() * 10**9), signal))

    def settle(self) -> None:
        while len(self.queue):
            self.controller.process(self.queue.get() or "")

    def take(self) -> str:
        key = self.queue.get()
        assert key is not None
        return key


def in_thread(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


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
    worker_1.join(WAIT)
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


def test_a_stop_signal_leaves_dns_while_a_reconcile_a_resync_and_a_heartbeat_are_in_flight():
    agent = Agent()
    agent.start("stopping", health="healthy")
    agent.start("slow", host_port=8081)
    agent.settle()
    slow_inspect = agent.docker.hold("inspect", "slow")
    slow_listing = agent.consul.hold("services")
    slow_heartbeat = agent.consul.hold("update_check")
    agent.event("slow", "update")
    agent.queue.add(RESYNC)
    agent.queue.add(HEARTBEAT)
    workers = [in_thread(agent.controller.work) for _ in range(3)]
    assert slow_inspect.reached() and slow_listing.reached() and slow_heartbeat.reached()

    agent.event("stopping", "kill", SIGTERM)
    urgent = in_thread(agent.controller.work, True)

    assert agent.consul.wait_until(lambda consul: "h:stopping:80" not in consul.services_)
    for hold in (slow_inspect, slow_listing, slow_heartbeat):
        hold.release()
    agent.queue.shutdown()
    for thread in (*workers, urgent):
        thread.join(WAIT)


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
    worker.join(WAIT)
    leaving.join(WAIT)
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
    running.join(WAIT)
    assert not running.is_alive()
    assert set(agent.consul.services_) == {"h:web:80"}


def test_a_loop_that_dies_is_restarted_and_healthz_says_so():
    agent = Agent()
    agent.docker.events_error = RuntimeError("decoder blew up")
    agent.controller.restart_backoff = wait_fixed(0)
    pump = in_thread(agent.controller.supervise, "events", agent.controller.pump)
    assert agent.controller.ready.wait(WAIT)

    healthy, details = agent.controller.health()
    assert details["loops"]["events"] == {"restarts": 1, "last_error": "RuntimeError: decoder blew up", "failing": False}
    assert healthy
    agent.controller.stop.set()
    agent.docker.close_events()
    pump.join(WAIT)


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
    resync.join(WAIT)

    assert agent.controller.reconciler.view.owns("h:b:80")
    writes = len(agent.consul.writes)
    agent.event("b", "update")
    agent.settle()
    assert len(agent.consul.writes) == writes
