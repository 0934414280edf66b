"""The local view: what this host has in the Consul agent, kept here so a reconcile reads no Consul.

Like Consul's own anti-entropy, the view is read in full from the agent (`refresh`, at start and at
every resync) and updated by every write the agent makes. Readers get copies, never the live
tables. A refresh builds a new view from Consul's answer and swaps it in atomically; writes that
finish while the answer is on its way are journalled and applied again on the new view, so a
refresh never needs reconciles to pause and never loses what they wrote.

Each refresh also tells which of this host's services another agent process wrote since the view
last looked (Meta `registrator-agent`): two agents that share a host identity rewrite, and remove,
each other's services at every resync, and nothing else would notice.

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
from registrator.model import META_AGENT, META_CONTAINER, META_HOST, ServiceSpec
from registrator.reconcile.ownership import FOREIGN

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
    maintenance_unsure: set[str] = field(default_factory=set)  # services whose last maintenance write failed
    unsure: set[str] = field(default_factory=set)  # services whose last write failed after Consul may have applied it
    since: dict[str, int] = field(default_factory=dict)  # service ID → when its registration was sent (an ever-growing count)

    def put(self, spec: ServiceSpec, since: int) -> None:
        """A registration replaces the service's checks: their status and maintenance mode start over."""
        born = self.since.get(spec.id, since)
        self.drop(spec.id)
        self.services[spec.id] = spec
        self.since[spec.id] = born
        self.by_container.setdefault(spec.meta.get(META_CONTAINER, ""), {})[spec.id] = spec

    def drop(self, service_id: str) -> None:
        old = self.services.pop(service_id, None)
        self.maintenance.discard(service_id)
        self.maintenance_unsure.discard(service_id)
        self.mirrors.pop(service_id, None)
        self.unsure.discard(service_id)
        self.since.pop(service_id, None)
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

    def set_maintenance(self, service_id: str, enabled: bool | None) -> None:
        """None: unknown (a write failed after Consul may have applied it)."""
        (self.maintenance.add if enabled else self.maintenance.discard)(service_id)
        (self.maintenance_unsure.add if enabled is None else self.maintenance_unsure.discard)(service_id)


Change = Callable[[_Tables], None]


@dataclass(frozen=True, slots=True)
class _Begun:
    """A refresh under way: where the journal stood, and who had written what, when it began."""

    journal: int
    writers: dict[str, str]
    unsure: frozenset[str]


class LocalView:
    """`wake` is called (outside the view's lock) with containers that should be looked at again:
    they were refused a service ID that is free now, or Consul's health status for one of their
    services is not the one the agent last sent."""

    def __init__(self, hostname: str, wake: Callable[[set[str]], None], agent: str = "") -> None:
        self._hostname = hostname
        self._agent = agent
        self._looked = False  # a refresh finished: from then on, services another agent writes are told
        self._wake = wake
        self._lock = threading.Lock()
        self._tables = _Tables()
        self._journal: list[Change] = []  # changes made while refreshes are under way
        self._refreshes: dict[int, _Begun] = {}
        self._refresh_numbers = itertools.count()
        self._foreign: set[str] = set()  # IDs on the Consul agent that this host does not own
        self._reserved: dict[str, str] = {}  # service ID → the container whose reconcile is about to register it
        self._refused: dict[str, set[str]] = {}  # service ID → containers refused it
        self._versions = itertools.count(1)

    # -- refresh ------------------------------------------------------------------------------------

    def begin_refresh(self) -> int:
        """Call before asking Consul for its services and checks; from here on writes are journalled.
        Returns the refresh's number, for `finish_refresh` or `abort_refresh`."""
        with self._lock:
            refresh = next(self._refresh_numbers)
            tables = self._tables
            writers = {sid: spec.meta.get(META_AGENT, "") for sid, spec in tables.services.items()}
            self._refreshes[refresh] = _Begun(len(self._journal), writers, frozenset(tables.unsure))
            return refresh

    def abort_refresh(self, refresh: int) -> None:
        """Asking Consul failed: keep the view as it is (journalling stops once no refresh is under way)."""
        with self._lock:
            self._end_refresh(refresh)

    def _end_refresh(self, refresh: int) -> None:
        del self._refreshes[refresh]
        if not self._refreshes:
            self._journal.clear()

    def finish_refresh(self, refresh: int, services: Iterable[ServiceSpec], check_states: Mapping[str, tuple[str, str]],
                       adoptable: Iterable[str] = ()) -> dict[str, str]:
        """Swap in the view built from Consul's answer; returns this host's services that another
        agent process wrote since the view last looked (service ID → that writer).

        Services of other owners are remembered as foreign: no container may take their IDs, except
        `adoptable` ones (gliderlabs/registrator's entries for this host). A Docker-health status
        that Consul shows differently from what the agent last sent (a TTL that ran out while
        Consul was unreachable) is taken as unknown, so the container's next look sends it again.
        """
        tables, foreign = _Tables(), set()
        with self._lock:
            begun = self._refreshes[refresh]
            others = {}
            for spec in sorted(services, key=lambda spec: spec.id):
                if spec.meta.get(META_HOST) == self._hostname:
                    tables.put(spec, self._tables.since.get(spec.id, next(self._versions)))
                    if self._looked and self._written_by_another(spec, begun):
                        others[spec.id] = spec.meta.get(META_AGENT, "")
                else:
                    foreign.add(spec.id)
            woken = set()
            for service_id, spec in tables.services.items():
                if MAINTENANCE_PREFIX + service_id in check_states:
                    tables.maintenance.add(service_id)
                state = check_states.get(mirror_check_id(service_id))
                sent = self._tables.mirrors.get(service_id)
                if state is not None and (sent is None or sent.status == state[0]):
                    tables.mirrors[service_id] = sent or Mirror(*state, next(self._versions))
                elif sent is not None:
                    woken.add(spec.meta.get(META_CONTAINER, ""))
            for change in self._journal[begun.journal:]:
                change(tables)
            self._tables = tables
            self._end_refresh(refresh)
            self._looked = True
            self._foreign = foreign - set(adoptable)
            woken |= self._release({sid for sid in self._refused if self._holder(sid) is None})
        self._wake(woken - {""})
        return others

    def _written_by_another(self, found: ServiceSpec, begun: _Begun) -> bool:
        """Whether Consul shows a writer other than this agent and than the one the view knew when
        the refresh began (a write of its own may finish either side of Consul's answer). A write
        that failed after Consul may have applied it proves nothing either way."""
        writer = found.meta.get(META_AGENT, "")
        return writer != self._agent and found.id not in begun.unsure and writer != begun.writers.get(found.id)

    # -- reads (copies) -----------------------------------------------------------------------------

    def services_of(self, container_id: str) -> dict[str, ServiceSpec]:
        with self._lock:
            return dict(self._tables.by_container.get(container_id, {}))

    def container_of(self, service_id: str) -> str:
        """The container this host registered the service for; "" if the host has no such service."""
        with self._lock:
            spec = self._tables.services.get(service_id)
            return spec.meta.get(META_CONTAINER, "") if spec is not None else ""

    def unsure_of(self, container_id: str) -> set[str]:
        """The container's services whose last write failed after Consul may have applied it."""
        with self._lock:
            return set(self._tables.by_container.get(container_id, {})) & self._tables.unsure

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
        """The owned service whose registration was sent first, probed to notice a Consul agent that
        lost its state: Consul lost all it applied before, whatever order the answers came in, and
        one sent since tells nothing (nor one whose last write failed: it may never have been
        there). A reconcile that writes the sentinel again reads it first."""
        with self._lock:
            tables = self._tables
            return min(tables.services.keys() - tables.unsure, key=lambda sid: (tables.since[sid], sid), default=None)

    def mirrors(self) -> dict[str, Mirror]:
        with self._lock:
            return dict(self._tables.mirrors)

    def mirror(self, service_id: str) -> Mirror | None:
        with self._lock:
            return self._tables.mirrors.get(service_id)

    def in_maintenance(self, service_id: str) -> bool | None:
        """None while unknown: the last maintenance write failed after Consul may have applied it."""
        with self._lock:
            if service_id in self._tables.maintenance_unsure:
                return None
            return service_id in self._tables.maintenance

    def remembered(self) -> dict[str, set[str]]:
        """The containers each table holds (the simulation bounds them by the live containers)."""
        with self._lock:
            return {"services": set(self._tables.by_container), "reserved": set(self._reserved.values()),
                    "refused": set().union(*self._refused.values())}

    def __len__(self) -> int:
        with self._lock:
            return len(self._tables.services)

    # -- claims --------------------------------------------------------------------------------------

    def claim(self, container_id: str, service_ids: Iterable[str]) -> dict[str, str]:
        """The IDs another of this host's containers holds (ID → that container); the others are
        reserved for this container until `end_claims`, so two containers never both register one.
        The container is remembered as refused the held ones in the same step, so their release
        always wakes it. An ID last seen held by another owner is reserved too: whether it still is
        is Consul's answer, read before the write (the view's may be stale)."""
        with self._lock:
            for waiting in self._refused.values():
                waiting.discard(container_id)
            held = {}
            for service_id in service_ids:
                holder = self._holder(service_id)
                if holder in (None, container_id, FOREIGN):
                    self._reserved[service_id] = container_id
                else:
                    held[service_id] = holder
                    self._refused.setdefault(service_id, set()).add(container_id)
            self._refused = {sid: waiting for sid, waiting in self._refused.items() if waiting}
            return held

    def forget_refusals(self, containers: set[str]) -> None:
        """These containers stopped or are gone: they wait for no ID any more."""
        with self._lock:
            self._refused = {sid: waiting - containers for sid, waiting in self._refused.items() if waiting - containers}

    def end_claims(self, container_id: str) -> None:
        """The container's reconcile is over: IDs it reserved but did not register are free again."""
        with self._lock:
            ended = [sid for sid, holder in self._reserved.items() if holder == container_id]
            for service_id in ended:
                del self._reserved[service_id]
            woken = self._release({sid for sid in ended if self._holder(sid) is None})
        self._wake(woken)

    # -- writes (after Consul accepted them) --------------------------------------------------------

    def ticket(self) -> int:
        """Taken before a registration is sent, and given to `registered` (see `sentinel`)."""
        return next(self._versions)

    def registered(self, spec: ServiceSpec, sent: int) -> None:
        self._change(lambda tables: tables.put(spec, sent))

    def deregistered(self, service_id: str) -> None:
        """The containers refused this ID are woken: they may have it now."""
        with self._lock:
            self._change_locked(lambda tables: tables.drop(service_id))
            woken = self._release({service_id} if self._holder(service_id) is None else set())
        self._wake(woken)

    def maybe_registered(self, spec: ServiceSpec, sent: int) -> None:
        """A registration failed after Consul may have applied it: the service counts as there, unsure."""
        def change(tables: _Tables) -> None:
            tables.put(spec, sent)
            tables.unsure.add(spec.id)
        self._change(change)

    def maybe_deregistered(self, service_id: str) -> None:
        """A deregistration failed after Consul may have applied it: the service stays, unsure."""
        self._change(lambda tables: tables.unsure.add(service_id) if service_id in tables.services else None)

    def held_by_another_owner(self, service_id: str, container_id: str) -> None:
        """Consul answered that another owner holds this ID now: it is not this host's (any more), and
        the container that asked for it waits until a refresh finds it free."""
        with self._lock:
            self._change_locked(lambda tables: tables.drop(service_id))
            self._foreign.add(service_id)
            if container_id:
                self._refused.setdefault(service_id, set()).add(container_id)

    def maintenance_set(self, service_id: str, enabled: bool | None) -> None:
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
        if self._refreshes:
            self._journal.append(change)

    def _holder(self, service_id: str) -> str | None:
        """Who has this ID now: the owning container, the one about to register it, FOREIGN, or None."""
        spec = self._tables.services.get(service_id)
        if spec is not None:
            return spec.meta.get(META_CONTAINER, "")
        if service_id in self._reserved:
            return self._reserved[service_id]
        return FOREIGN if service_id in self._foreign else None

    def _release(self, service_ids: set[str]) -> set[str]:
        woken: set[str] = set()
        for service_id in service_ids:
            woken |= self._refused.pop(service_id, set())
        return woken
