"""The pure heart of the agent: a container snapshot + settings → the services it should have.

No I/O here. The same input always gives the same services (ports are sorted, nothing depends on
dict order), so a reconcile that finds nothing changed writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from types import MappingProxyType

from registrator.metadata import service_metadata
from registrator.model import ContainerPort, ContainerSnapshot, ServiceSpec

# Ownership lives in Meta: it is how this agent finds its own services again, never the ID.
META_HOST = "registrator-host"
META_CONTAINER = "registrator-container"
META_HASH = "registrator-hash"


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """The part of the agent's settings that decides what a container registers."""

    hostname: str
    ip: str


def desired_services(snapshot: ContainerSnapshot | None, settings: MappingSettings) -> dict[str, ServiceSpec]:
    """Services keyed by ID; empty for a missing or stopped container."""
    if snapshot is None or not snapshot.running:
        return {}
    published = [port for port in snapshot.ports if port.bindings]
    services = (_service(snapshot, port, settings, multi_port=len(published) > 1) for port in published)
    return {spec.id: spec for spec in services}


def image_basename(image: str) -> str:
    """`registry:5000/team/app:1.2` → `app`; a digest reference `app@sha256:…` → `app`."""
    base = image.rsplit("/", 1)[-1]
    return base.split("@", 1)[0].split(":", 1)[0]


def spec_hash(spec: ServiceSpec) -> str:
    """A digest of everything a registration carries, kept in Meta to detect drift cheaply."""
    meta = {k: v for k, v in spec.meta.items() if k != META_HASH}
    body = [spec.id, spec.name, spec.address, spec.port, list(spec.tags), sorted(meta.items())]
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()[:16]


def _service(
    snapshot: ContainerSnapshot, port: ContainerPort, settings: MappingSettings, *, multi_port: bool
) -> ServiceSpec:
    metadata, scoped = service_metadata(snapshot, port)
    name = metadata.get("name") or image_basename(snapshot.image)
    if multi_port and "name" not in scoped:
        name = f"{name}-{port.port}"
    service_id = f"{settings.hostname}:{snapshot.name}:{port.port}"
    if port.protocol == "udp":
        service_id += ":udp"
    spec = ServiceSpec(
        id=service_id,
        name=name,
        address=settings.ip,
        port=port.bindings[0].host_port,
        meta=MappingProxyType({META_HOST: settings.hostname, META_CONTAINER: snapshot.id}),
    )
    meta = {**spec.meta, META_HASH: spec_hash(spec)}
    return ServiceSpec(spec.id, spec.name, spec.address, spec.port, spec.tags, MappingProxyType(meta))
