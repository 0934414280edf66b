"""The Docker edge: the engine's read-only calls (`engine.py`: inspect, list, events), as our own types."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from registrator.docker.ecs import EcsAgent, EcsError
from registrator.docker.engine import Engine
from registrator.docker.snapshot import shared_network, snapshot_from_inspect
from registrator.metrics import Metrics
from registrator.model import ContainerSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listed:
    """A `docker ps` entry: the name, and a fingerprint of everything in it that can change what
    the container registers (state, health, ports, labels, networks). The same fingerprint means
    inspecting it again would show nothing new."""

    name: str
    fingerprint: str


_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_CONTAINER_REF = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # a container ID, or a name as Docker allows it


def listed_container(entry: dict[str, Any]) -> Listed:
    networks = (entry.get("NetworkSettings") or {}).get("Networks") or {}
    health = _HEALTH.search(str(entry.get("Status") or ""))
    stable = {
        "names": entry.get("Names"), "image": entry.get("Image"), "image_id": entry.get("ImageID"), "state": entry.get("State"),
        "health": health.group(1) if health else "", "labels": entry.get("Labels"),
        "ports": sorted(json.dumps(p, sort_keys=True) for p in entry.get("Ports") or []),
        "mode": (entry.get("HostConfig") or {}).get("NetworkMode"),
        "networks": {name: [n.get("IPAddress"), n.get("GlobalIPv6Address")]
                     for name, n in networks.items() if isinstance(n, dict)},
    }
    return Listed(name=str((entry.get("Names") or ["/"])[0]).lstrip("/"),
                  fingerprint=json.dumps(stable, sort_keys=True, default=str))


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """An event that says "look at this container again"; the action is for logs only."""

    container_id: str
    action: str
    time_nano: int
    signal: int | None = None  # for `kill` events


class DockerSource:
    """`ecs`, when given, supplies the address of ECS awsvpc tasks, which Docker does not know."""

    def __init__(self, timeout: float, ecs: EcsAgent | None = None, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._engine = Engine(timeout)
        self._ecs = ecs
        self._stream: Any = None

    def daemon_name(self) -> str:
        """The Docker daemon's host name (`docker info` Name)."""
        return str(self._engine.call("docker info", "info").get("Name") or "")

    def ping(self) -> None:
        self._engine.call("docker ping", "ping")

    def api_version(self) -> str:
        return self._engine.api_version()

    def advertised_address(self) -> str:
        """The address the daemon advertises to its swarm; "" outside swarm mode."""
        return str((self._engine.call("docker info", "info").get("Swarm") or {}).get("NodeAddr") or "")

    def inspect(self, container_id: str) -> ContainerSnapshot | None:
        """The container's snapshot, or None once it is gone (vanishing is normal, not an error).

        A container in another container's network namespace (`container:<id>`, also ECS awsvpc
        tasks) gets that container's addresses and published ports, and an awsvpc task its ENI
        address from the ECS agent.
        """
        snapshot = self._inspect(container_id)
        if snapshot is None or not snapshot.network_mode.startswith("container:"):
            return snapshot
        owner = self._inspect(snapshot.network_mode.partition(":")[2])
        if owner is not None:
            snapshot = shared_network(snapshot, owner)
        if self._ecs is not None and not (snapshot.ip or snapshot.networks_with_address):
            try:
                snapshot = replace(snapshot, task_ip=self._ecs.task_ip(snapshot.id))
            except EcsError as exc:
                log.warning("container %s: %s", snapshot.name, exc)
        return snapshot

    def _inspect(self, container_id: str) -> ContainerSnapshot | None:
        if not _CONTAINER_REF.fullmatch(container_id):  # docker-py leaves '/' and '..' in the path it builds
            return None
        self._metrics.inc("registrator_docker_requests_total", call="inspect")
        raw = self._engine.inspect(container_id)
        return None if raw is None else snapshot_from_inspect(raw)

    def running(self) -> dict[str, Listed]:
        """Running containers by ID, as `docker ps` shows them (one call for all)."""
        self._metrics.inc("registrator_docker_requests_total", call="list")
        return {c["Id"]: listed_container(c) for c in self._engine.call("docker ps", "containers")}

    def events(self, since: str | None) -> Iterator[ContainerEvent]:
        """Subscribe now (before any listing, so nothing falls in a gap) and yield container events.

        The iterator ends when the daemon closes the stream; the caller reconnects with `since`.
        Exec events from health checks are not state changes and are dropped here.
        """
        self._metrics.inc("registrator_docker_requests_total", call="events")
        stream = self._engine.stream("docker events", "events", since=since, decode=True,
                                     filters={"type": ["container", "network"]})
        self._stream = stream
        return _container_events(stream)

    def close_events(self) -> None:
        """Unblock a reader of `events` from another thread (shutdown)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def _container_events(stream: Iterator[dict[str, Any]]) -> Iterator[ContainerEvent]:
    for raw in stream:
        event = container_event(raw)
        if event is not None:
            yield event


def container_event(raw: dict[str, Any]) -> ContainerEvent | None:
    """The container an event is about: the actor of a container event, the attribute of a network one."""
    action = str(raw.get("Action") or raw.get("status") or "")
    actor = raw.get("Actor") or {}
    if raw.get("Type") == "network":
        container_id = (actor.get("Attributes") or {}).get("container")
    else:
        container_id = actor.get("ID") or raw.get("id")
    if not container_id or action.startswith("exec_"):
        return None
    signal = str((actor.get("Attributes") or {}).get("signal") or "")
    return ContainerEvent(container_id=str(container_id), action=action, time_nano=int(raw.get("timeNano") or 0),
                          signal=int(signal) if signal.isdecimal() else None)
