"""The simulated Docker engine and Consul agent: the protocols the core declares, over plain state.

Every call the core makes is a `Call` the scheduler answers when the driver says so; what the call
reads or changes happens when it is served, so another thread can act between the request and
its answer. The world also keeps what an outside observer knows: who wrote each service (us, or
a foreign owner, and at which step), every write this host made, and the order of events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from registrator.consul.sink import ConsulError
from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import ContainerEvent, Listed
from registrator.model import META_HOST, CheckKind, ContainerPort, ContainerSnapshot, NetworkAttachment, PortBinding, ServiceSpec
from tests.simulation.scheduler import EPOCH, Call, Scheduler

# events Docker keeps to replay `since` (moby keeps 256; fewer here, so reconnects lose some); a live stream loses none
EVENT_BUFFER = 24


@dataclass
class Box:
    """One container as Docker holds it."""

    id: str
    name: str
    ports: tuple[ContainerPort, ...]
    env: dict[str, str] = field(default_factory=dict)
    ip: str = ""
    networks: tuple[NetworkAttachment, ...] = ()
    running: bool = False
    paused: bool = False
    exit_code: int = 0
    started_at: float = 0.0
    stop_signal: int = 15
    has_healthcheck: bool = False
    health: str = ""
    restart_always: bool = False
    auto_remove: bool = False  # `docker run --rm`: removed once it exits
    doomed: bool = False  # exits right after the agent first looks at it

    def snapshot(self) -> ContainerSnapshot:
        return ContainerSnapshot(
            id=self.id, name=self.name, image="registry:5000/team/app:1", running=self.running, paused=self.paused,
            exit_code=self.exit_code, started_at=self.started_at, stop_signal=self.stop_signal, ip=self.ip,
            networks=self.networks, env=MappingProxyType(dict(self.env)), ports=self.ports,
            has_healthcheck=self.has_healthcheck, health=self.health if self.running else "",
        )

    def listed(self) -> Listed:
        health = self.health if self.has_healthcheck else ""
        state = "paused" if self.paused else "running"
        return Listed(self.name, repr((self.name, state, health, self.ports, self.networks)))


class Stream:
    """An events stream: replays from `cursor`, then follows; ends when closed or dropped."""

    def __init__(self, docker: SimDocker, cursor: int) -> None:
        self.docker = docker
        self.cursor = cursor
        self.closed = False
        self.broken: Exception | None = None

    def __iter__(self) -> Iterator[ContainerEvent]:
        return self

    def __next__(self) -> ContainerEvent:
        return self.docker.sched.call(Call("docker", "next-event", "", self._serve, lambda: DockerUnavailable("events: timed "
                                                                                                              "out"),
                                           None, ready=self._ready))  # type: ignore[no-any-return]

    def _ready(self) -> bool:
        return self.closed or self.broken is not None or self.docker.has_event(self.cursor)

    def _serve(self) -> ContainerEvent:
        if self.closed:
            raise StopIteration
        if self.broken is not None:
            raise self.broken
        event = self.docker.log[self.cursor]
        self.cursor += 1
        self.docker.note(f"event {event.action} {event.container_id} reaches the agent")
        return event


class SimDocker:
    def __init__(self, sched: Scheduler, timeout: float) -> None:
        self.sched = sched
        self.timeout = timeout
        self.boxes: dict[str, Box] = {}
        self.down = False
        self.log: list[ContainerEvent] = []  # every event, in order; Docker keeps the last EVENT_BUFFER
        self.forgotten = 0  # events before this index are no longer in Docker's buffer
        self.stream: Stream | None = None  # the stream handed out last (what close_events closes)
        self.streams: list[Stream] = []
        self.note: Any = lambda text: None

    # -- the DockerEngine protocol (calls the scheduler answers) ----------------------------------

    def inspect(self, container_id: str) -> ContainerSnapshot | None:
        return self._call("inspect", container_id, lambda: self._snapshot(container_id))  # type: ignore[no-any-return]

    def running(self) -> dict[str, Listed]:
        # type: ignore[no-any-return]
        return self._call("ps", "", lambda: {cid: b.listed() for cid, b in sorted(self.boxes.items()) if b.running})

    def events(self, since: str | None) -> Iterator[ContainerEvent]:
        stream: Stream = self._call("events", since or "", lambda: Stream(self, self._cursor(since)))
        self.streams.append(stream)
        self.stream = stream  # like DockerSource: known to close_events once the request returned
        return stream

    def close_events(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.closed = True

    def ping(self) -> None:
        self._call("ping", "", lambda: None)

    def _call(self, name: str, key: str, serve: Any) -> Any:
        def served() -> Any:
            if self.down:
                raise DockerUnavailable(f"docker {name}: connection refused")
            return serve()
        return self.sched.call(Call("docker", name, key, served, lambda: DockerUnavailable(f"docker {name}: read timed out"),
                                    self.sched.now + self.timeout))

    def _snapshot(self, container_id: str) -> ContainerSnapshot | None:
        box = self.boxes.get(container_id)
        return box.snapshot() if box is not None else None

    # -- events -----------------------------------------------------------------------------------

    def emit(self, container_id: str, action: str, signal: int | None = None) -> None:
        time_nano = int((EPOCH + self.sched.now) * 10**9) + len(self.log)  # distinct and ordered
        self.log.append(ContainerEvent(container_id, action, time_nano, signal))
        self.forgotten = max(self.forgotten, len(self.log) - EVENT_BUFFER)

    def has_event(self, cursor: int) -> bool:
        return cursor < len(self.log)

    def _cursor(self, since: str | None) -> int:
        """Where a stream opened with `since` starts: the first buffered event at or after it."""
        if since is None:
            return len(self.log)
        seconds, _, fraction = since.partition(".")
        since_nano = int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9] or 0)
        for index in range(self.forgotten, len(self.log)):
            if self.log[index].time_nano >= since_nano:
                return index
        return len(self.log)

    def drop_streams(self, error: Exception | None) -> None:
        """The connection breaks (an error) or the daemon closes it (None: the stream just ends)."""
        for stream in self.streams:
            if error is None:
                stream.closed = True
            else:
                stream.broken = error
        self.streams.clear()

    # -- what happens to containers (the driver's side) --------------------------------------------

    def create(self, box: Box) -> None:
        self.boxes[box.id] = box
        self.emit(box.id, "create")

    def start(self, box: Box) -> None:
        box.running, box.paused, box.exit_code = True, False, 0
        box.started_at = EPOCH + self.sched.now
        box.health = "starting" if box.has_healthcheck else ""
        self.emit(box.id, "connect")
        self.emit(box.id, "start")

    def kill(self, box: Box, signal: int) -> None:
        self.emit(box.id, "kill", signal)

    def die(self, box: Box, exit_code: int) -> None:
        box.running, box.paused, box.exit_code = False, False, exit_code
        self.emit(box.id, "die")
        self.emit(box.id, "disconnect")

    def destroy(self, box: Box) -> None:
        del self.boxes[box.id]
        self.emit(box.id, "destroy")

    def rename(self, box: Box, name: str) -> None:
        box.name = name
        self.emit(box.id, "rename")

    def pause(self, box: Box, paused: bool) -> None:
        box.paused = paused
        self.emit(box.id, "pause" if paused else "unpause")

    def health(self, box: Box, status: str) -> None:
        box.health = status
        self.emit(box.id, f"health_status: {status}")

    def connect(self, box: Box, network: NetworkAttachment) -> None:
        box.networks = tuple(sorted({n.name: n for n in (*box.networks, network)}.values(), key=lambda n: n.name))
        self.emit(box.id, "connect")

    def disconnect(self, box: Box, name: str) -> None:
        box.networks = tuple(n for n in box.networks if n.name != name)
        self.emit(box.id, "disconnect")

    def restart_daemon(self) -> list[Box]:
        """dockerd restarts: its streams end, its event buffer is gone; running containers with a
        restart policy come back (started again, returned), the others are stopped."""
        self.drop_streams(None)
        self.forgotten = len(self.log)
        was_running = [box for _, box in sorted(self.boxes.items()) if box.running]
        for box in was_running:
            box.running, box.paused, box.exit_code = False, False, 143
        restarted = [box for box in was_running if box.restart_always]
        for box in restarted:
            self.start(box)
        return restarted

    def free_name(self, name: str) -> bool:
        """Docker refuses a second container with a name in use."""
        return all(box.name != name for box in self.boxes.values())


@dataclass
class Owner:
    """Who wrote a service to Consul, and at which scheduler step."""

    who: str  # "us", or a foreign owner's label
    step: int


class SimConsul:
    """The Consul agent. `services` hold what the agent lists (IDs, names, addresses, ports, tags,
    Meta), `checks` map a check ID to its service and status."""

    def __init__(self, sched: Scheduler, timeout: float, hostname: str) -> None:
        self.sched = sched
        self.timeout = timeout
        self.hostname = hostname
        self.services_: dict[str, ServiceSpec] = {}
        self.owners: dict[str, Owner] = {}
        self.checks: dict[str, list[str]] = {}  # check ID → [service ID, status, output]
        self.down = False
        self.leaderless = False
        self.denied: set[str] = set()  # service names this host's token may not write
        self.poisoned: set[str] = set()  # service IDs whose registration Consul always fails (500)
        self.writes: list[tuple[str, str, int]] = []  # (call, ID, step) this host made, as applied
        self.clobbered: set[str] = set()  # another owner's services this host wrote to in the race nobody avoids
        self.poison_tries: list[tuple[str, float]] = []  # (ID, time) of every registration tried of a poisoned ID
        self.violations: list[str] = []
        self.note: Any = lambda text: None

    # -- reads ------------------------------------------------------------------------------------

    def services(self) -> dict[str, ServiceSpec]:
        return self._call("services", "", lambda: dict(self._looked(*self.services_)), write=False)  # type: ignore[no-any-return]

    def service(self, service_id: str) -> ServiceSpec | None:
        # type: ignore[no-any-return]
        return self._call("service", service_id, lambda: self._looked(service_id).get(service_id), write=False)

    def has_service(self, service_id: str) -> bool:
        # type: ignore[no-any-return]
        return self._call("has-service", service_id, lambda: service_id in self._looked(service_id), write=False)

    def _looked(self, *service_ids: str) -> dict[str, ServiceSpec]:
        """The reading thread has seen these IDs as they are now (for the ownership invariant)."""
        assert self.sched.serving is not None and self.sched.serving.caller is not None
        for service_id in service_ids:
            self.sched.serving.caller.looked[service_id] = self.sched.steps
        return self.services_

    def check_states(self) -> dict[str, tuple[str, str]]:
        # type: ignore[no-any-return]
        return self._call("checks", "", lambda: {cid: (c[1], c[2]) for cid, c in self.checks.items()}, write=False)

    def leader(self) -> str:
        # type: ignore[no-any-return]
        return self._call("leader", "", lambda: "" if self.leaderless else "10.0.0.2:8300", write=False)

    def reload_token(self) -> bool:
        """The token file is the agent's own business: the simulated Consul takes any token."""
        return False

    # -- writes -----------------------------------------------------------------------------------

    def register(self, spec: ServiceSpec) -> None:
        self._call("register", spec.id, lambda: self._register(spec), write=True)

    def deregister(self, service_id: str) -> None:
        self._call("deregister", service_id, lambda: self._deregister(service_id), write=True)

    def update_check(self, check_id: str, status: str, output: str) -> None:
        self._call("update-check", check_id, lambda: self._update_check(check_id, status, output), write=True)

    def maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        self._call("maintenance", service_id, lambda: self._maintenance(service_id, enable, reason), write=True)

    def _call(self, name: str, key: str, serve: Any, write: bool) -> Any:
        def served() -> Any:
            if self.down:
                raise ConsulError(f"Consul {name} {key}: connection refused", transient=True)
            if write and self.leaderless:
                raise ConsulError(f"Consul {name} {key}: 500 No cluster leader", transient=True)
            return serve()
        return self.sched.call(Call("consul", name, key, served, lambda: ConsulError(f"Consul {name} {key}: read timed "
                                                                                     "out", transient=True),
                                    self.sched.now + self.timeout, write=write))

    def _register(self, spec: ServiceSpec) -> None:
        self._deny(spec.id, spec.name)
        if spec.id in self.poisoned:
            self.poison_tries.append((spec.id, self.sched.now))
            raise ConsulError(f"Consul register {spec.id}: 500 rpc error", transient=True)
        self._guard("register", spec.id)
        self._drop(spec.id)
        self.services_[spec.id] = replace(spec, checks=(), tagged_addresses=())
        self.owners[spec.id] = Owner("us" if spec.meta.get(META_HOST) == self.hostname else "?", self.sched.steps)
        for check in spec.checks:
            status = check.initial_status or ("critical" if check.kind is CheckKind.DOCKER_HEALTH or check.ttl else "critical")
            self.checks[check.check_id] = [spec.id, status, ""]

    def _deregister(self, service_id: str) -> None:
        spec = self.services_.get(service_id)
        if spec is not None:
            self._deny(service_id, spec.name)
        self._guard("deregister", service_id)
        self._drop(service_id)

    def _update_check(self, check_id: str, status: str, output: str) -> None:
        check = self.checks.get(check_id)
        if check is None:
            return  # 404: python-consul2 takes it as done
        self._guard("update-check", check[0], check_id)
        check[1], check[2] = status, output

    def _maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        spec = self.services_.get(service_id)
        if spec is None:
            return  # 404
        self._deny(service_id, spec.name)
        self._guard("maintenance", service_id)
        if enable:
            self.checks[f"_service_maintenance:{service_id}"] = [service_id, "critical", reason]
        else:
            self.checks.pop(f"_service_maintenance:{service_id}", None)

    def _deny(self, service_id: str, name: str) -> None:
        if name in self.denied:
            raise ConsulError(f"Consul write {service_id}: 403 Permission denied", transient=False)

    def _drop(self, service_id: str) -> None:
        self.services_.pop(service_id, None)
        self.owners.pop(service_id, None)
        self.checks = {cid: c for cid, c in self.checks.items() if c[0] != service_id}

    def _guard(self, call: str, service_id: str, subject: str = "") -> None:
        """Invariant (b): no write touches a service another owner holds, checked on the ID sent.

        A foreign registration made after the writing thread took its key, and after its last look
        at that ID, is a race no agent can avoid on Consul's agent API; any older one counts.
        """
        assert self.sched.serving is not None and self.sched.serving.caller is not None
        caller = self.sched.serving.caller
        self.writes.append((call, subject or service_id, self.sched.steps))
        self.note(f"Consul applies {call} {subject or service_id} from {caller.name}")
        owner = self.owners.get(service_id)
        if owner is None or owner.who in ("us", "legacy"):
            return
        seen = max(caller.handling_since, caller.looked.get(service_id, -1))
        if owner.step < seen:
            self.violations.append(f"(b) {call} {subject or service_id}: a service {owner.who} registered at step {owner.step}, "
                                   f"known to the writer since step {seen}")
        else:
            self.clobbered.add(service_id)
            self.note(f"{service_id} of {owner.who} is overwritten: it was registered after the writer looked (a race no agent "
                      "avoids)")

    # -- the driver's side ------------------------------------------------------------------------

    def foreign(self, spec: ServiceSpec, who: str) -> None:
        self.clobbered.discard(spec.id)
        self._drop(spec.id)
        self.services_[spec.id] = spec
        self.owners[spec.id] = Owner(who, self.sched.steps)

    def lose_everything(self) -> None:
        """A dev agent restarted, or its data dir wiped."""
        self.services_.clear()
        self.owners.clear()
        self.checks.clear()

    def ours(self) -> dict[str, ServiceSpec]:
        return {sid: spec for sid, spec in self.services_.items() if spec.meta.get(META_HOST) == self.hostname}


def published(port: int, host_port: int) -> tuple[ContainerPort, ...]:
    return (ContainerPort(port, "tcp", (PortBinding("0.0.0.0", host_port),)),)
