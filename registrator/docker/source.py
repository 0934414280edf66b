"""The Docker edge: read-only calls only (inspect, list, events), returning our own types."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import docker
import docker.errors
import requests
import urllib3
from docker.transport import UnixHTTPAdapter

from registrator.docker.ecs import EcsAgent, EcsError
from registrator.docker.snapshot import shared_network, snapshot_from_inspect
from registrator.docker.unix_socket import UnixSocketAdapter
from registrator.model import ContainerSnapshot
from registrator.ops.metrics import Metrics

log = logging.getLogger(__name__)


class DockerUnavailable(Exception):
    """The Docker daemon could not be reached or answered with a server error."""


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
        "networks": {name: [n.get("IPAddress"), n.get("GlobalIPv6Address")] for name, n in networks.items() if isinstance(n, dict)},
    }
    return Listed(name=str((entry.get("Names") or ["/"])[0]).lstrip("/"), fingerprint=json.dumps(stable, sort_keys=True, default=str))


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """An event that says "look at this container again"; the action is for logs only."""

    container_id: str
    action: str
    time_nano: int
    signal: int | None = None  # for `kill` events


def _engine_client(timeout: float) -> docker.APIClient:
    client = docker.APIClient(**docker.utils.kwargs_from_env(), timeout=timeout, version="auto")
    # No HTTP(S)_PROXY or .netrc for the Docker API: a host's egress proxy has no business between
    # the agent and its own engine, and reading the environment on every request cost a third of
    # each inspect's CPU.
    client.trust_env = False
    adapter = client.adapters.get("http+docker://")
    if isinstance(adapter, UnixHTTPAdapter):
        client.mount("http+docker://", UnixSocketAdapter(f"http+unix://{adapter.socket_path}", timeout=adapter.timeout,
                                                         max_pool_size=adapter.max_pool_size))
    return client


class DockerSource:
    """`ecs`, when given, supplies the address of ECS awsvpc tasks, which Docker does not know."""

    def __init__(self, timeout: float, ecs: EcsAgent | None = None, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._timeout = timeout
        self._ecs = ecs
        self._client: docker.APIClient | None = None
        self._stream: Any = None
        self._lock = threading.Lock()

    @property
    def api(self) -> docker.APIClient:
        """Connect lazily, from DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH or the local socket."""
        with self._lock:
            if self._client is None:
                address = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
                path = address.removeprefix("unix://") if address.startswith("unix://") else ""
                if path and os.path.exists(path) and not stat.S_ISSOCK(os.stat(path).st_mode):
                    raise DockerUnavailable(f"cannot connect to Docker at {address}: {path} is not a socket")
                try:
                    self._client = _engine_client(self._timeout)
                except docker.errors.DockerException as exc:
                    raise DockerUnavailable(f"cannot connect to Docker: {exc}") from exc
            return self._client

    def daemon_name(self) -> str:
        """The Docker daemon's host name (`docker info` Name)."""
        try:
            return str(self.api.info().get("Name") or "")
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"docker info: {exc}") from exc

    def ping(self) -> None:
        try:
            self.api.ping()
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"docker ping: {exc}") from exc

    def advertised_address(self) -> str:
        """The address the daemon advertises to its swarm; "" outside swarm mode."""
        try:
            return str((self.api.info().get("Swarm") or {}).get("NodeAddr") or "")
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"docker info: {exc}") from exc

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
        api = self.api
        adapter = api.adapters.get("http+docker://")
        if isinstance(adapter, UnixSocketAdapter):
            raw = _inspect_over_socket(api, adapter, container_id)
            return None if raw is None else snapshot_from_inspect(raw)
        try:
            return snapshot_from_inspect(api.inspect_container(container_id))
        except docker.errors.NotFound:
            return None
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"docker inspect {container_id[:12]}: {exc}") from exc

    def running(self) -> dict[str, Listed]:
        """Running containers by ID, as `docker ps` shows them (one call for all)."""
        try:
            self._metrics.inc("registrator_docker_requests_total", call="list")
            listed = self.api.containers()
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"docker ps: {exc}") from exc
        return {c["Id"]: listed_container(c) for c in listed}

    def events(self, since: str | None) -> Iterator[ContainerEvent]:
        """Subscribe now (before any listing, so nothing falls in a gap) and yield container events.

        The iterator ends when the daemon closes the stream; the caller reconnects with `since`.
        Exec events from health checks are not state changes and are dropped here.
        """
        try:
            self._metrics.inc("registrator_docker_requests_total", call="events")
            stream = self.api.events(since=since, decode=True, filters={"type": ["container", "network"]})
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"docker events: {exc}") from exc
        self._stream = stream
        return _container_events(stream)

    def close_events(self) -> None:
        """Unblock a reader of `events` from another thread (shutdown)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


def _inspect_over_socket(api: docker.APIClient, adapter: UnixSocketAdapter, container_id: str) -> dict[str, Any] | None:
    """`docker inspect` over the engine's unix socket, straight through docker-py's own connection pool.

    An inspect is on the path of every start and every resync look. Through requests it cost about
    1.2 ms of CPU, most of it requests' per-call work (hooks, cookies, settings merges), against
    0.35 ms on the same pool (issue 13's profiles). docker-py still builds the URL (its API version
    and escaping) and owns the connections; TCP and TLS engines keep docker-py's whole path.
    """
    pool = adapter.pool()
    target = urllib.parse.urlsplit(api._url("/containers/{0}/json", container_id))
    try:
        response = pool.urlopen("GET", target.path, headers={"User-Agent": api.headers.get("User-Agent", "")}, retries=False,
                                redirect=False, timeout=urllib3.Timeout(connect=api.timeout, read=api.timeout))
    except urllib3.exceptions.HTTPError as exc:
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: {type(exc).__name__}: {exc}") from exc
    if response.status == 404:
        return None
    if response.status != 200:
        reason = response.data.decode("utf-8", "replace").strip()[:300]
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: HTTP {response.status} {reason}")
    try:
        raw = json.loads(response.data)
    except ValueError as exc:
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: not a JSON object")
    return raw


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
