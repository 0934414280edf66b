"""Level-triggered reconcile of one container: the only code that writes to Consul.

Like Consul's own anti-entropy, it keeps a local view of what this host has registered: read in
full from the agent by `refresh` (at start and every resync) and updated by every write it makes.
A per-container reconcile then costs one Docker inspect and no Consul read, and writes only what
differs, so an unchanged resync sends nothing to Consul.

Reconciles of different containers may run at once (the work queue never hands one container to
two workers): their Docker and Consul calls overlap, and a lock guards the local view. `refresh`,
`needs_look`, `forget_containers_except`, `sweep_legacy` and `heartbeat` need no reconcile in
flight; the controller's gate sees to that.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from registrator.checks import MIRROR_SUFFIX
from registrator.diff import plan
from registrator.kills import KillLog
from registrator.mapping import META_CONTAINER, META_HOST, Desired, MappingSettings, desired_services, drained
from registrator.metrics import Metrics
from registrator.model import ContainerSnapshot, Deregister, Op, Register, ServiceSpec

log = logging.getLogger(__name__)
MAINTENANCE_PREFIX = "_service_maintenance:"  # Consul's check ID for a service in maintenance mode


class Docker(Protocol):
    def inspect(self, container_id: str) -> ContainerSnapshot | None: ...


class Consul(Protocol):
    def services(self) -> dict[str, ServiceSpec]: ...
    def check_states(self) -> dict[str, tuple[str, str]]: ...
    def register(self, spec: ServiceSpec) -> None: ...
    def deregister(self, service_id: str) -> None: ...
    def update_check(self, check_id: str, status: str, output: str) -> None: ...
    def maintenance(self, service_id: str, enable: bool, reason: str) -> None: ...


class Reconciler:
    """`reconcile` is safe from several threads for different containers; the rest runs alone."""

    def __init__(self, docker: Docker, consul: Consul, settings: MappingSettings, kills: KillLog | None = None,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or Metrics()
        self._lock = threading.Lock()  # the tables below, while reconciles run side by side
        self._docker = docker
        self._consul = consul
        self._settings = settings
        self._kills = kills
        self._clock = clock
        self._maintenance: set[str] = set()  # services this agent put in maintenance mode
        self.sentinel: str | None = None  # one owned service ID, probed to notice a Consul agent that lost its state
        self._owned: dict[str, ServiceSpec] = {}
        self._by_container: dict[str, dict[str, ServiceSpec]] = {}
        self._warned: dict[str, tuple[str, ...]] = {}
        self._legacy: dict[str, str] = {}
        self._verified: dict[str, dict[str, ServiceSpec]] = {}  # what the last successful reconcile left in Consul
        self._fingerprints: dict[str, str] = {}  # `docker ps` fingerprint at the last resync
        self._last: dict[str, ContainerSnapshot] = {}  # name, start and stop signal of each running container
        self._mirrors: dict[str, tuple[str, str]] = {}  # Docker-health check ID → (status, output) in Consul
        self._legacy_id = re.compile(rf"^{re.escape(settings.hostname)}:([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?$")

    def refresh(self) -> set[str]:
        """Re-read the Consul agent's services; returns the containers this host has services for."""
        self._owned = {}
        self._by_container = {}
        self._legacy = {}
        for spec in self._consul.services().values():
            if spec.meta.get(META_HOST) == self._settings.hostname:
                self._remember(spec)
            elif META_HOST not in spec.meta and (match := self._legacy_id.match(spec.id)):
                self._legacy[spec.id] = match.group(1)
        states = self._consul.check_states()
        self._mirrors = {
            check_id: state for check_id, state in states.items()
            if check_id.endswith(f":{MIRROR_SUFFIX}") and _service_of(check_id) in self._owned
        }
        self._maintenance = {c.removeprefix(MAINTENANCE_PREFIX) for c in states if c.startswith(MAINTENANCE_PREFIX)} & set(self._owned)
        self.sentinel = next(iter(sorted(self._owned)), None)
        return set(self._by_container)

    def needs_look(self, container_id: str, fingerprint: str) -> bool:
        """For a resync: whether a running container must be inspected again. Not when its `docker ps`
        entry is unchanged since the last resync and Consul still holds exactly what its last
        reconcile left there (after `refresh`); events bring every real change anyway."""
        previous, self._fingerprints[container_id] = self._fingerprints.get(container_id), fingerprint
        verified = self._verified.get(container_id)
        in_consul = self._by_container.get(container_id, {})
        unchanged = previous == fingerprint and verified is not None and not plan(verified, in_consul)
        return not unchanged or (self._kills is not None and self._kills.pending(container_id))

    def forget_containers_except(self, running: set[str]) -> None:
        for table in (self._fingerprints, self._verified, self._last):
            for container_id in set(table) - running:
                del table[container_id]

    def heartbeat(self) -> int:
        """Re-send every Docker-health check's status, so its TTL never runs out while we live."""
        for check_id, (status, output) in sorted(self._mirrors.items()):
            self._consul.update_check(check_id, status, output)
        return len(self._mirrors)

    def sweep_legacy(self, running_names: set[str]) -> int:
        """`-cleanup`: remove services gliderlabs/registrator left for this host's gone containers.

        They carry no ownership Meta, so this is the one place that reads an ID: registrator's own
        `host:container:port[:udp]` pattern with this host's name, as its `-cleanup` did. Entries of
        running containers are left for their reconcile to adopt (same ID, now with Meta).
        """
        stale = sorted(sid for sid, name in self._legacy.items() if name not in running_names)
        for service_id in stale:
            self._consul.deregister(service_id)
            self._legacy.pop(service_id)
            log.info("cleanup: deregistered %s left by registrator for a container that is gone", service_id)
        self._metrics.inc("registrator_deregistrations_total", len(stale))
        return len(stale)

    def reconcile(self, container_id: str) -> int:
        """Make Consul hold exactly the services this container should have now; returns the writes made.

        Why we were asked (which event) does not matter: Docker is read again, so a late or
        duplicated event can never register a dead container.
        """
        started = time.monotonic()
        try:
            return self._reconcile(container_id)
        finally:
            self._metrics.inc("registrator_reconciles_total")
            self._metrics.observe("registrator_reconcile_duration_seconds", time.monotonic() - started)
            self._metrics.set("registrator_services_owned", len(self._owned))
            self._metrics.set("registrator_last_reconcile_timestamp_seconds", self._clock())

    def plan(self, container_id: str) -> tuple[str, list[Op]]:
        """What reconcile would write for this container now (its name, and the ops); writes nothing."""
        label, _, wanted, actual = self._desired(container_id)
        return label, plan(wanted, actual) if wanted is not None else []

    def _desired(self, container_id: str) -> tuple[str, Desired, dict[str, ServiceSpec] | None, dict[str, ServiceSpec]]:
        """The container's label, its desired state, the services to have (None: keep what is there), and what is there."""
        if (stopping := self._stopping(container_id)) is not None:
            label, actual = stopping
            desired = drained(actual, self._settings)
            return label, desired, dict(desired.services), actual
        snapshot = self._inspect(container_id)
        label = snapshot.name if snapshot else container_id[:12]
        draining = self._kills is not None and self._kills.draining(container_id, snapshot, self._clock())
        desired = desired_services(snapshot, self._settings, draining)
        with self._lock:
            self._report(container_id, label, desired.warnings, gone=snapshot is None)
            actual = dict(self._by_container.get(container_id, {}))
            holders = {service_id: self._owned.get(service_id) for service_id in desired.services}
        for note in desired.notes:
            log.debug("container %s: %s", label, note)
        if desired.retain:
            return label, desired, None, actual
        wanted = {}
        for service_id, spec in desired.services.items():
            holder = holders[service_id]
            if holder is not None and holder.meta.get(META_CONTAINER) != container_id:
                log.warning("container %s: service ID %s is already registered for container %s; skipped",
                            label, service_id, holder.meta.get(META_CONTAINER, "?")[:12])
                continue
            wanted[service_id] = spec
        return label, desired, wanted, actual

    def _stopping(self, container_id: str) -> tuple[str, dict[str, ServiceSpec]] | None:
        """For the first look after a stop began: the container's name and current services, if it
        is draining by what the last inspect said; else None (inspect).

        A container that ends on its stop signal is torn down at once, and Docker answers an inspect
        only when that is done (hundreds of ms, seconds under load), while the service should leave
        DNS now. The drain needs no fresh data; the next event inspects again.
        """
        if self._kills is None or not self._kills.first_look(container_id):
            return None
        with self._lock:
            known = self._last.get(container_id)
            actual = dict(self._by_container.get(container_id, {}))
        if known is None or not self._kills.draining(container_id, known, self._clock()):
            return None
        return known.name, actual

    def _inspect(self, container_id: str) -> ContainerSnapshot | None:
        snapshot = self._docker.inspect(container_id)
        with self._lock:
            if snapshot is not None and snapshot.running:  # what `_stopping` needs, not the whole inspect
                self._last[container_id] = ContainerSnapshot(id=snapshot.id, name=snapshot.name, image="", running=True,
                                                             started_at=snapshot.started_at, stop_signal=snapshot.stop_signal)
            else:
                self._last.pop(container_id, None)
        return snapshot

    def _reconcile(self, container_id: str) -> int:
        with self._lock:
            self._verified.pop(container_id, None)
        label, desired, wanted, actual = self._desired(container_id)
        if wanted is None:
            return 0
        ops = plan(wanted, actual)
        for op in ops:
            match op:
                case Register(spec):
                    self._consul.register(spec)
                    with self._lock:
                        self._remember(spec)
                    self._metrics.inc("registrator_registrations_total")
                    verb = "updated" if spec.id in actual else "registered"
                    log.info("container %s: %s %s (%s at %s:%d)", label, verb, spec.id, spec.name, spec.address, spec.port)
                case Deregister(service_id):
                    self._consul.deregister(service_id)
                    with self._lock:
                        self._forget(service_id)
                    self._metrics.inc("registrator_deregistrations_total")
                    log.info("container %s: deregistered %s", label, service_id)
        self._metrics.inc("registrator_reconcile_writes_total", len(ops))
        self._set_maintenance(label, set(wanted), desired.maintenance)
        self._push_health(label, desired.check_status, registered={op.spec.id for op in ops if isinstance(op, Register)})
        if not ops:
            log.debug("container %s: in sync (%d services)", label, len(wanted))
        with self._lock:
            self._verified[container_id] = wanted
        return len(ops)

    def _set_maintenance(self, label: str, service_ids: set[str], enable: bool) -> None:
        for service_id in sorted(service_ids):
            if (service_id in self._maintenance) != enable:
                self._consul.maintenance(service_id, enable, "container is stopping (registrator)")
                with self._lock:
                    (self._maintenance.add if enable else self._maintenance.discard)(service_id)
                log.info("container %s: %s %s maintenance mode", label, service_id, "entered" if enable else "left")

    def _push_health(self, label: str, check_status: Mapping[str, tuple[str, str]], registered: set[str]) -> None:
        """Bring each Docker-health check to Docker's verdict; a fresh registration starts from scratch."""
        for check_id, state in sorted(check_status.items()):
            service_id = _service_of(check_id)
            if service_id not in self._owned:
                continue
            if service_id in registered or self._mirrors.get(check_id) != state:
                self._consul.update_check(check_id, *state)
                with self._lock:
                    self._mirrors[check_id] = state
                log.info("container %s: %s is %s (Docker health)", label, check_id, state[0])

    def _remember(self, spec: ServiceSpec) -> None:
        self._forget(spec.id)
        self._owned[spec.id] = spec
        self.sentinel = self.sentinel or spec.id
        self._by_container.setdefault(spec.meta.get(META_CONTAINER, ""), {})[spec.id] = spec

    def _forget(self, service_id: str) -> None:
        for check_id in [c for c in self._mirrors if c.startswith(f"service:{service_id}:")]:
            del self._mirrors[check_id]
        self._maintenance.discard(service_id)
        old = self._owned.pop(service_id, None)
        if self.sentinel == service_id:
            self.sentinel = next(iter(self._owned), None)
        if old is not None:
            container_id = old.meta.get(META_CONTAINER, "")
            services = self._by_container.get(container_id, {})
            services.pop(service_id, None)
            if not services:
                self._by_container.pop(container_id, None)

    def _report(self, container_id: str, label: str, warnings: tuple[str, ...], *, gone: bool) -> None:
        """Log a container's metadata warnings once, and again only when they change."""
        if gone:
            self._warned.pop(container_id, None)
        elif self._warned.get(container_id) != warnings:
            self._warned[container_id] = warnings
            for warning in warnings:
                log.warning("container %s: %s", label, warning)


def _service_of(check_id: str) -> str:
    """`service:<service ID>:<suffix>` → the service ID (which may itself contain colons)."""
    return check_id.removeprefix("service:").rsplit(":", 1)[0]
