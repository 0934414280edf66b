"""Immutable values that flow between the layers: Docker snapshot → desired services → Consul ops."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

# Ownership lives in a service's Meta: it is how an agent finds its own services again, never the ID.
META_HOST = "registrator-host"
META_CONTAINER = "registrator-container"
META_HASH = "registrator-hash"
# Which agent process wrote the service: another one appearing under this host's identity is a
# second live writer. Left out of the hash and of drift, so a restarted agent rewrites nothing.
META_AGENT = "registrator-agent"


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PortBinding:
    """One host-side binding of a container port (`-p host_ip:host_port:port`)."""

    host_ip: str
    host_port: int


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A port the container exposes, with every host binding Docker made for it."""

    port: int
    protocol: str
    bindings: tuple[PortBinding, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    """The container's addresses on one Docker network."""

    name: str
    ip: str = ""
    ipv6: str = ""


@dataclass(frozen=True, slots=True)
class ContainerSnapshot:
    """What the mapping needs to know about one container, read from `docker inspect`.

    `attrs` is the raw inspect document, kept read-only for `-tags` templates.
    """

    id: str
    name: str
    image: str
    running: bool
    paused: bool = False
    exit_code: int = 0
    started_at: float = 0.0  # epoch seconds of the last start
    stop_signal: int = 15  # the signal `docker stop` sends (image STOPSIGNAL, SIGTERM by default)
    network_mode: str = "default"
    ip: str = ""  # default bridge (or the shared container's, in container: mode)
    ipv6: str = ""
    networks: tuple[NetworkAttachment, ...] = ()
    task_ip: str = ""  # ECS awsvpc task ENI address, from the ECS agent
    env: Mapping[str, str] = field(default_factory=_empty)
    labels: Mapping[str, str] = field(default_factory=_empty)
    ports: tuple[ContainerPort, ...] = ()
    has_healthcheck: bool = False
    health: str = ""  # Docker's verdict: starting, healthy or unhealthy
    health_output: str = ""  # output of Docker's last health probe
    attrs: Mapping[str, Any] = field(default_factory=_empty)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def networks_with_address(self) -> tuple[NetworkAttachment, ...]:
        return tuple(n for n in self.networks if n.ip or n.ipv6)


class CheckKind(Enum):
    """What a check does; the Consul sink picks the check's JSON fields by it."""

    HTTP = "http"
    HTTPS = "https"
    TCP = "tcp"
    UDP = "udp"
    GRPC = "grpc"
    TTL = "ttl"
    SCRIPT = "script"
    DOCKER = "docker"
    DOCKER_HEALTH = "docker-health"  # a TTL check mirroring Docker's HEALTHCHECK, kept alive by this agent


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One Consul check of a service, as the mapping decided it; only the Consul sink knows its JSON.

    An empty string, None or () is a setting left to Consul's default.
    """

    check_id: str
    kind: CheckKind
    name: str
    target: str = ""  # the URL (http, https), or host:port (tcp, udp), or host:port[/service] (grpc)
    interval: str = ""  # durations in Go's syntax (`10s`)
    timeout: str = ""
    ttl: str = ""
    method: str = ""
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, values), in order
    tls_skip_verify: bool | None = None  # None: not set by the container
    tls_server_name: str = ""
    grpc_use_tls: bool = False
    args: tuple[str, ...] = ()  # script and docker checks
    docker_container_id: str = ""
    initial_status: str = ""  # passing | warning | critical
    deregister_critical_after: str = ""
    success_before_passing: int | None = None
    failures_before_critical: int | None = None
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service as it should be registered with the Consul agent.

    `meta` already includes the ownership keys, so a spec fully describes the registration.
    """

    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=_empty)
    checks: tuple[CheckSpec, ...] = ()
    tagged_addresses: tuple[tuple[str, str, int], ...] = ()  # (lan_ipv4 | lan_ipv6, address, port)


@dataclass(frozen=True, slots=True)
class Register:
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class Deregister:
    service_id: str


Op = Register | Deregister


def plain(value: Any) -> Any:
    """Frozen mappings and tuples as the dicts and lists JSON wants."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def host_port(address: str, port: int) -> str:
    """`address:port`, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
