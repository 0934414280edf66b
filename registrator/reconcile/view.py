"""The local view: what this host has in the Consul agent, kept here so a reconcile reads no Consul.

Like Consul's own anti-entropy, the view is read in full from the agent (`refresh`, at start and at
every resync) and updated by every write the agent makes. Readers get copies, never the live
tables. A refresh builds a new view from Consul's answer and swaps it in atomically; writes that
finish while the answer is on its way are journalled and applied again on the new view, so a
refresh never needs reconciles to pause and never loses what they wrote.

It also remembers which containers were refused a service ID that another container holds, so
that whatever releases that ID can hand the container back to the queue (a container recreated
under the same name asks for its predecessor's ID while that one is still being torn down).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from registrator.mapping.checks import mirror_check_id
from registrator.mapping.services import META_CONTAINER, META_HOST
from registrator.model import ServiceSpec

MAINTENANCE_PREFIX = "_service_maintenance:"  # Consul's check ID for a service in maintenance mode

# Check IDs are only ever built from a service ID (never parsed back): Consul's own maintenance
# check, and the Docker-health mirror the mapping gives a service.


@dataclass(frozen=True, slots=True)
class Mirror:
    """A Docker-health check's status as last sent; `version` tells a heartbeat whether it was overtaken."""

    status: str
    output: str
    version: int


@dataclass(slots=True)
class _Tables:
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    by_container: dict[str, dict[str, ServiceSpec]] = field(default_factory=dict)
    mirrors: dict[str, Mirror] = field(default_factory=dict)  # service ID → its Docker-health check as Consul shows it
    maintenance: set[str] = field(default_factory=set)  # services this agent put in maintenance mode

    def put(self, spec: ServiceSpec) -> None:
        self.drop(spec.id, keep_checks=True)
        self.services[spec.id] = spec
        self.by_container.setdefault(spec.meta.get(META_CONTAINER, ""), {})[spec.id] = spec

    def drop(self, service_id: str, keep_checks: bool = False) -> None:
        old = self.services.pop(service_id, None)
        if not keep_checks:
            self.maintenance.discard(service_id)
            self.mirrors.pop(service_id, None)
        if old is not None:
            container_id = old.meta.get(META_CONTAINER, "")
            services = self.by_container.get(container_id, {})
            services.pop(service_id, None)
            if not services:
                self.by_container.pop(container_id, None)

    def set_mirror(self, service_id: str, mirror: Mirror | None) -> None:
        if mirror is None:
            self.mirrors.pop(service_id, None)
        elif service_id in self.services:
            self.mirrors[service_id] = mirror

    def set_maintenance(self, service_id: str, enabled: bool) -> None:
        (self.maintenance.add if enabled else self.maintenance.discard)(service_id)


Change = Callable[[_Tables], None]


class LocalView:
    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._lock = threading.Lock()
        self._tables = _Tables()
        self._journal: list[Change] | None = None  # changes made while a refresh is under way
        self._refused: dict[str, set[str]] = {}  # service ID → containers refused it
        self._versions = itertools.count(1)

    # -- refresh ------------------------------------------------------------------------------------

    def begin_refresh(self) -> None:
        """Call before asking Consul for its services and checks; from here on writes are journalled."""
        with self._lock:
            self._journal = []

    def finish_refresh(self, services: Iterable[ServiceSpec], check_states: Mapping[str, tuple[str, str]]) -> set[str]:
        """Swap in the view built from Consul's answer; returns the containers to look at again
        because a service ID they were refused is no longer held."""
        tables = _Tables()
        for spec in services:
            if spec.meta.get(META_HOST) == self._hostname:
                tables.put(spec)
        with self._lock:
            for service_id in tables.services:
                if MAINTENANCE_PREFIX + service_id in check_states:
                    tables.maintenance.add(service_id)
                if (state := check_states.get(mirror_check_id(service_id))) is not None:
                    tables.mirrors[service_id] = Mirror(*state, next(self._versions))
            for change in self._journal or ():
                change(tables)
            self._tables, self._journal = tables, None
            return self._release(set(self._refused) - set(tables.services))

    # -- reads (copies) -----------------------------------------------------------------------------

    def services_of(self, container_id: str) -> dict[str, ServiceSpec]:
        with self._lock:
            return dict(self._tables.by_container.get(container_id, {}))

    def containers(self) -> set[str]:
        """Containers this host has services for."""
        with self._lock:
            return set(self._tables.by_container)

    def owned(self) -> dict[str, ServiceSpec]:
        with self._lock:
            return dict(self._tables.services)

    def owns(self, service_id: str) -> bool:
        with self._lock:
            return service_id in self._tables.services

    def sentinel(self) -> str | None:
        """One owned service ID, probed to notice a Consul agent that lost its state."""
        with self._lock:
            return min(self._tables.services, default=None)

    def mirrors(self) -> dict[str, Mirror]:
        with self._lock:
            return dict(self._tables.mirrors)

    def mirror(self, service_id: str) -> Mirror | None:
        with self._lock:
            return self._tables.mirrors.get(service_id)

    def in_maintenance(self, service_id: str) -> bool:
        with self._lock:
            return service_id in self._tables.maintenance

    def __len__(self) -> int:
        with self._lock:
            return len(self._tables.services)

    # -- claims --------------------------------------------------------------------------------------

    def claim(self, container_id: str, service_ids: Iterable[str]) -> dict[str, str]:
        """Which of these IDs another container holds (ID → holder). The container is remembered
        as refused them, in the same step, so a release after this call always wakes it."""
        with self._lock:
            for waiting in self._refused.values():
                waiting.discard(container_id)
            held = {}
            for service_id in service_ids:
                holder = self._tables.services.get(service_id)
                holder_container = holder.meta.get(META_CONTAINER, "") if holder is not None else container_id
                if holder_container != container_id:
                    held[service_id] = holder_container
                    self._refused.setdefault(service_id, set()).add(container_id)
            self._refused = {sid: waiting for sid, waiting in self._refused.items() if waiting}
            return held

    # -- writes (after Consul accepted them) --------------------------------------------------------

    def registered(self, spec: ServiceSpec) -> None:
        self._change(lambda tables: tables.put(spec))

    def deregistered(self, service_id: str) -> set[str]:
        """Returns the containers that were refused this ID: they may have it now."""
        with self._lock:
            self._change_locked(lambda tables: tables.drop(service_id))
            return self._release({service_id})

    def maintenance_set(self, service_id: str, enabled: bool) -> None:
        self._change(lambda tables: tables.set_maintenance(service_id, enabled))

    def mirror_intended(self, service_id: str, status: str, output: str) -> Mirror:
        """Record a Docker-health status before sending it, so a heartbeat sending an older one notices."""
        mirror = Mirror(status, output, next(self._versions))
        self._change(lambda tables: tables.set_mirror(service_id, mirror))
        return mirror

    def mirror_unknown(self, service_id: str) -> None:
        """Sending a status failed: what Consul shows is unknown, so the next reconcile sends it."""
        self._change(lambda tables: tables.set_mirror(service_id, None))

    def _change(self, change: Change) -> None:
        with self._lock:
            self._change_locked(change)

    def _change_locked(self, change: Change) -> None:
        change(self._tables)
        if self._journal is not None:
            self._journal.append(change)

    def _release(self, service_ids: set[str]) -> set[str]:
        woken: set[str] = set()
        for service_id in service_ids:
            woken |= self._refused.pop(service_id, set())
        return woken

