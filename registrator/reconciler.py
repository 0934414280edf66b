"""Level-triggered reconcile of one container: the only code that writes to Consul."""

from __future__ import annotations

import logging
from typing import Protocol

from registrator.diff import plan
from registrator.mapping import MappingSettings, desired_services
from registrator.model import ContainerSnapshot, Deregister, Register, ServiceSpec

log = logging.getLogger(__name__)


class Docker(Protocol):
    def inspect(self, container_id: str) -> ContainerSnapshot | None: ...


class Consul(Protocol):
    def owned_services(self, hostname: str, container_id: str | None = None) -> dict[str, ServiceSpec]: ...
    def register(self, spec: ServiceSpec) -> None: ...
    def deregister(self, service_id: str) -> None: ...


class Reconciler:
    def __init__(self, docker: Docker, consul: Consul, settings: MappingSettings) -> None:
        self._docker = docker
        self._consul = consul
        self._settings = settings

    def reconcile(self, container_id: str) -> int:
        """Make Consul hold exactly the services this container should have now; returns the writes made.

        Why we were asked (which event) does not matter: Docker is read again, so a late or
        duplicated event can never register a dead container.
        """
        snapshot = self._docker.inspect(container_id)
        label = snapshot.name if snapshot else container_id[:12]
        desired = desired_services(snapshot, self._settings)
        actual = self._consul.owned_services(self._settings.hostname, container_id)
        ops = plan(desired, actual)
        for op in ops:
            match op:
                case Register(spec):
                    self._consul.register(spec)
                    verb = "updated" if spec.id in actual else "registered"
                    log.info("container %s: %s %s (%s at %s:%d)", label, verb, spec.id, spec.name, spec.address, spec.port)
                case Deregister(service_id):
                    self._consul.deregister(service_id)
                    log.info("container %s: deregistered %s", label, service_id)
        if not ops:
            log.debug("container %s: in sync (%d services)", label, len(desired))
        return len(ops)
