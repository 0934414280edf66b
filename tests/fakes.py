"""In-memory Docker and Consul that implement the protocols the core declares, for tests of the core.

Interleavings are forced, never slept for: `hold(call, key)` makes the next such call stop inside
the fake until the test releases it, and tells the test when a worker got there.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tenacity import wait_fixed
from tenacity.wait import wait_base

from registrator.config import Options, Settings
from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulError
from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import ContainerEvent, Listed
from registrator.mapping.settings import DeregisterPolicy, HostFacts, MappingPolicy, MappingSettings
from registrator.model import ContainerPort, ContainerSnapshot, PortBinding, ServiceSpec
from registrator.reconcile.controller import Controller
from registrator.reconcile.queue import WorkQueue
from registrator.runtime import Runtime

# seconds a test waits for what must happen; reached only when it does not
WAIT = float(os.environ.get("REGISTRATOR_TEST_WAIT", "10"))
BACKOFF = 5.0  # a failed key's backoff in the controller harness
# holds never released: the worker that waited in one failed, and a retry may hide it (conftest fails the test)
EXPIRED: list[str] = []


class Hold:
    """A point inside a fake call where the caller stops until `release`."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()

    def reached(self) -> bool:
        return self.entered.wait(WAIT)

    def release(self) -> None:
        self._released.set()

    def __call__(self) -> None:
        self.entered.set()
        if not self._released.wait(WAIT):
            EXPIRED.append(threading.current_thread().name)
            raise AssertionError("a held call was never released")


class Holds:
    def __init__(self) -> None:
        self._holds: dict[tuple[str, str], list[Hold]] = {}
        self._holds_lock = threading.Lock()

    def hold(self, call: str, key: str = "") -> Hold:
        """The next `call` (for `key`, or for any key when empty) stops until released."""
        made = Hold()
        with self._holds_lock:
            self._holds.setdefault((call, key), []).append(made)
        return made

    def pause(self, call: str, key: str) -> None:
        with self._holds_lock:
            waiting = self._holds.get((call, key)) or self._holds.get((call, ""))
            hold = waiting.pop(0) if waiting else None
        if hold is not None:
            hold()


def web(container_id: str, name: str = "web", port: int = 80, host_port: int = 8080, stop_signal: int = 15,
        started_at: float = 1000.0, env: dict[str, str] | None = None, health: str = "") -> ContainerSnapshot:
    """A running container publishing one TCP port."""
    return ContainerSnapshot(
        id=container_id, name=name, image="nginx:1", running=True, started_at=started_at, stop_signal=stop_signal,
        ports=(ContainerPort(port, "tcp", (PortBinding("0.0.0.0", host_port),)),),
        env=MappingProxyType(env or {}), has_healthcheck=bool(health), health=health,
    )


class FakeDocker(Holds):
    def __init__(self) -> None:
        super().__init__()
        self.containers: dict[str, ContainerSnapshot] = {}
        self.failing: set[str] = set()  # inspects of these raise DockerUnavailable
        self.inspected: list[str] = []
        self.event_stream: queue.Queue[ContainerEvent | None] = queue.Queue()
        self.events_calls = 0
        self.since_asked: list[str | None] = []  # the `since` of each `events` call
        self.events_error: Exception | None = None  # raised by the next `events` call
        self.name = "docker-host"  # `docker info` Name
        self.down = False

    def inspect(self, container_id: str) -> ContainerSnapshot | None:
        self.inspected.append(container_id)
        self.pause("inspect", container_id)
        if container_id in self.failing:
            raise DockerUnavailable(f"docker inspect {container_id}: 500 Server Error")
        return self.containers.get(container_id)

    def running(self) -> dict[str, Listed]:
        if self.down:
            raise DockerUnavailable("docker ps: connection refused")
        listing = {cid: Listed(c.name, repr(c)) for cid, c in self.containers.items() if c.running}
        self.pause("running", "")  # the listing is on its way while containers start
        return listing

    def events(self, since: str | None) -> Iterator[ContainerEvent]:
        self.events_calls += 1
        self.since_asked.append(since)
        if self.events_error is not None:
            error, self.events_error = self.events_error, None
            raise error
        return iter(self.event_stream.get, None)

    def close_events(self) -> None:
        self.event_stream.put(None)

    def ping(self) -> None:
        if self.down:
            raise DockerUnavailable("docker ping: connection refused")

    def daemon_name(self) -> str:
        self.pause("info", "")
        if self.down:
            raise DockerUnavailable("docker info: connection refused")
        return self.name

    def advertised_address(self) -> str:
        return ""


@dataclass
class Check:
    service_id: str
    status: str = "critical"
    output: str = ""


@dataclass
class FakeConsul(Holds):
    services_: dict[str, ServiceSpec] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)  # (call, ID) in the order Consul applied them
    failing: set[str] = field(default_factory=set)  # calls that raise a transient ConsulError
    fail_once: set[tuple[str, str]] = field(default_factory=set)  # (call, ID): the next such call fails, transiently
    denied: set[tuple[str, str]] = field(default_factory=set)  # (call, ID): refused for good, like an ACL denial
    endpoint: ConsulEndpoint = field(default_factory=ConsulEndpoint)
    scripts: bool | None = False  # what the agent says of enable_script_checks; None: ACL denies reading it
    leaderless: bool = False  # /v1/status/leader answers "" (an election, or no quorum)
    token_reloads: int = 0  # times the agent asked for its token file to be read again

    def __post_init__(self) -> None:
        Holds.__init__(self)
        self._lock = threading.Condition(threading.RLock())

    def wait_until(self, predicate: Callable[[FakeConsul], bool]) -> bool:
        """Wait (at most WAIT) until a write makes `predicate` true."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), WAIT)

    def services(self) -> dict[str, ServiceSpec]:
        with self._lock:
            answer = dict(self.services_)
        self._call("services", "")  # the answer is on its way while others write
        return answer

    def check_states(self) -> dict[str, tuple[str, str]]:
        with self._lock:
            return {cid: (c.status, c.output) for cid, c in self.checks.items()}

    def register(self, spec: ServiceSpec) -> None:
        self._call("register", spec.id)
        with self._lock:
            self.services_[spec.id] = spec
            for check in spec.checks:
                self.checks[check.check_id] = Check(spec.id, check.initial_status or "critical")
            self.writes.append(("register", spec.id))
            self._lock.notify_all()

    def deregister(self, service_id: str) -> None:
        self._call("deregister", service_id)
        with self._lock:
            self.services_.pop(service_id, None)
            self.checks = {cid: c for cid, c in self.checks.items() if c.service_id != service_id}
            self.writes.append(("deregister", service_id))
            self._lock.notify_all()

    def update_check(self, check_id: str, status: str, output: str) -> None:
        self._call("update_check", check_id)
        with self._lock:
            if check_id not in self.checks:
                raise ConsulError(f"Consul agent/check/update {check_id}: Unknown check ID", transient=False)
            self.checks[check_id].status, self.checks[check_id].output = status, output
            self.writes.append(("update_check", f"{check_id}={status}"))
            self._lock.notify_all()

    def maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        self._call("maintenance", service_id)
        with self._lock:
            if enable:
                self.checks[f"_service_maintenance:{service_id}"] = Check(service_id, "critical", reason)
            else:
                self.checks.pop(f"_service_maintenance:{service_id}", None)
            self.writes.append(("maintenance", f"{service_id}={enable}"))
            self._lock.notify_all()

    def service(self, service_id: str) -> ServiceSpec | None:
        self._call("service", service_id)
        with self._lock:
            return self.services_.get(service_id)

    def has_service(self, service_id: str) -> bool:
        self._call("has_service", service_id)
        with self._lock:
            return service_id in self.services_

    def leader(self) -> str:
        self._call("leader", "")
        return "" if self.leaderless else "127.0.0.1:8300"

    def runs_script_checks(self) -> bool | None:
        self._call("agent_self", "")
        return self.scripts

    def reload_token(self) -> bool:
        self.token_reloads += 1
        return False

    def holder(self, service_id: str) -> str:
        """The container a service is registered for, by its ownership Meta."""
        with self._lock:
            spec = self.services_.get(service_id)
        return spec.meta.get("registrator-container", "") if spec else ""

    def _call(self, call: str, key: str) -> None:
        self.pause(call, key)
        if (call, key) in self.denied:
            raise ConsulError(f"Consul {call} {key}: permission denied by ACL", transient=False)
        if call in self.failing or (call, key) in self.fail_once:
            self.fail_once.discard((call, key))
            raise ConsulError(f"Consul {call} {key}: connection refused", transient=True)


class Clock:
    """A clock that moves only when told: for backoffs and drain timeouts."""

    def __init__(self, now: float = 2000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def manual(clock: Callable[[], float]) -> Runtime:
    """Real threads, and time that moves only when the test says so."""
    return Runtime(time=clock, monotonic=clock)


def agent_settings(host: str = "h", *, drain: str = "deregister", deregister: str = "always", drain_timeout: float = 120.0,
                   agent: str = "", **options: Any) -> Settings:
    """Settings as `startup.resolve` would settle them for an agent run with `-ip 10.0.0.5`."""
    policy = MappingPolicy(drain=drain, deregister=DeregisterPolicy(deregister))
    return Settings(Options(consul=ConsulEndpoint(), mapping=policy, drain_timeout=drain_timeout, **options),
                    MappingSettings.of(policy, HostFacts(host, "10.0.0.5", agent=agent)))


class Agent:
    """A controller over fakes, with its queue and clock at hand; `settle` handles every key due now."""

    def __init__(self, consul: FakeConsul | None = None, docker: FakeDocker | None = None, backoff: wait_base | None = None,
                 stop: threading.Event | None = None, **options: Any) -> None:
        self.docker = docker if docker is not None else FakeDocker()
        self.consul = consul if consul is not None else FakeConsul()
        self.clock = Clock()
        self.runtime = manual(self.clock)
        self.queue = WorkQueue(backoff=backoff or wait_fixed(BACKOFF), runtime=self.runtime)
        self.background = WorkQueue(backoff=backoff or wait_fixed(BACKOFF), runtime=self.runtime)
        self.controller = Controller(agent_settings(**options), self.docker, self.consul, queue=self.queue,
                                     background=self.background, runtime=self.runtime, stop=stop)

    def start(self, container_id: str, **kwargs: Any) -> None:
        self.docker.containers[container_id] = web(container_id, **{"name": container_id, **kwargs})
        self.event(container_id, "start")

    def event(self, container_id: str, action: str, signal: int | None = None) -> None:
        self.controller.on_event(ContainerEvent(container_id, action, int(self.clock() * 10**9), signal))

    def settle(self) -> None:
        """Handle every key due now, resyncs and heartbeats included."""
        while len(self.queue) or len(self.background):
            self.controller.process((self.queue if len(self.queue) else self.background).get() or "")

    def take(self) -> str:
        """The next key due now (a test that expects one must not block when there is none)."""
        assert len(self.queue), "no key is due"
        key = self.queue.get()
        assert key is not None
        return key


def in_thread(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def joined(*threads: threading.Thread) -> None:
    """Wait for the threads to end; a thread still running after WAIT is a hang, and fails the test."""
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), f"thread {thread.name} still runs after {WAIT}s"
