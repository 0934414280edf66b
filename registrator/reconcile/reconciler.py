"""Level-triggered reconcile of one container: the only code that writes to Consul.

A reconcile reads Docker again (why it was asked does not matter, so a late or duplicated event can
never register a dead container), maps the container to the services it should have, and writes
what differs from the local view (`view.py`). An unchanged container costs one inspect and no
Consul call. Reconciles of different containers run side by side; nothing here holds a lock across
a Docker or Consul call, and a refresh of the view never waits for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from registrator.consul.sink import ConsulError
from registrator.mapping.checks import mirror_check_id
from registrator.mapping.services import Desired, desired_services, drained
from registrator.mapping.settings import MappingSettings
from registrator.metrics import Metrics
from registrator.model import ContainerSnapshot, Deregister, Op, Register, ServiceSpec
from registrator.reconcile.diff import plan
from registrator.reconcile.kills import KillLog
from registrator.reconcile.ownership import FOREIGN, FREE, LEGACY, OURS, Ownership
from registrator.reconcile.view import LocalView, Mirror
from registrator.runtime import SYSTEM, Runtime

log = logging.getLogger(__name__)


class Docker(Protocol):
    def inspect(self, container_id: str) -> ContainerSnapshot | None: ...


class Consul(Protocol):
    def services(self) -> dict[str, ServiceSpec]: ...
    def service(self, service_id: str) -> ServiceSpec | None: ...
    def check_states(self) -> dict[str, tuple[str, str]]: ...
    def register(self, spec: ServiceSpec) -> None: ...
    def deregister(self, service_id: str) -> None: ...
    def update_check(self, check_id: str, status: str, output: str) -> None: ...
    def maintenance(self, service_id: str, enable: bool, reason: str) -> None: ...


class Closed(Exception):
    """The reconciler was closed (the agent is exiting): no more writes."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reconcile did, and when to look at the container again by itself."""

    writes: int = 0  # Consul writes: registrations, deregistrations, maintenance and health updates
    look_again_in: float | None = None  # a drain in progress: when it times out


@dataclass(slots=True)
class _Writes:
    """One pass's writes for a container: who Consul said holds each ID it wrote (read once, before
    the first write), and what came of them."""

    container_id: str
    label: str
    looks: dict[str, str] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # refused for good by Consul
    held: set[str] = field(default_factory=set)  # held by another owner: the container waits for them
    failed: set[str] = field(default_factory=set)  # a call about them failed for a passing reason
    error: ConsulError | None = None  # the first such failure: the container is tried again after its backoff
    count: int = 0

    def fail(self, service_id: str, exc: ConsulError) -> None:
        """A write (or the read before it) failed: refused for good, or to be tried again; either way
        the container's other services are still written."""
        if exc.transient:
            self.failed.add(service_id)
            self.error = self.error or exc
        else:
            self.refused.add(service_id)
            log.error("container %s: %s", self.label, exc)

    def settled(self, services: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        """The services whose registration this pass left as wanted (their checks come next)."""
        return {sid: spec for sid, spec in services.items() if sid not in self.refused | self.held | self.failed}


class Reconciler:
    """`reconcile` is safe from several threads for different containers (the queue never hands
    one container to two workers); `refresh`, `heartbeat` and `needs_look` may run beside it.

    `wake` is handed containers to look at again (see `LocalView`); the controller queues them.
    `wrote` is called after every write Consul took (the controller learns from it that Consul takes
    writes again after failures); `lost` when Consul no longer holds a service the view says this
    host has (the agent restarted without its data: the controller resyncs).
    """

    def __init__(self, docker: Docker, consul: Consul, settings: MappingSettings, kills: KillLog,
                 wake: Callable[[set[str]], None] = lambda _: None, runtime: Runtime = SYSTEM,
                 metrics: Metrics | None = None, wrote: Callable[[], None] = lambda: None,
                 lost: Callable[[str], None] = lambda _: None) -> None:
        self._metrics = metrics or Metrics()
        self._docker = docker
        self._consul = consul
        self._settings = settings
        self._kills = kills
        self._clock = runtime.time
        self.view = LocalView(settings.hostname, wake, settings.host.agent)
        self._wake = wake
        self._lock = threading.Lock()  # the per-container tables below
        self._warned: dict[str, tuple[str, ...]] = {}
        self._verified: dict[str, dict[str, ServiceSpec]] = {}  # what the last successful reconcile left in Consul
        self._fingerprints: dict[str, str] = {}  # `docker ps` fingerprint at the last resync
        self._legacy: dict[str, str] = {}  # gliderlabs/registrator's services for this host: ID → container name
        self._legacy_refused: set[str] = set()  # of those, the ones Consul refused for good to remove
        self._ownership = Ownership(settings.hostname)
        self._writes = runtime.condition()
        self._writes_in_flight = 0
        self._closed = False
        self._wrote = wrote
        self._lost = lost

    def refresh(self) -> set[str]:
        """Re-read the Consul agent's services into the view; returns the containers this host has services for."""
        refreshing = self.view.begin_refresh()
        try:
            services = self._consul.services()
            states = self._consul.check_states()
        except BaseException:
            self.view.abort_refresh(refreshing)
            raise
        legacy = {sid: name for sid, spec in services.items() if (name := self._ownership.legacy_container(sid, spec))}
        others = self.view.finish_refresh(refreshing, services.values(), states, adoptable=legacy)
        if others:
            self._metrics.inc("registrator_other_agent_writes_total", len(others))
            writers = ", ".join(sorted({writer or "one that records no instance" for writer in others.values()}))
            log.error("another agent (%s) wrote %d of this host's services since this agent (%s) last looked, e.g. %s; "
                      "two agents run with host identity %s, and they rewrite and remove each other's services: "
                      "give each host its own -hostname, and run one agent per host",
                      writers, len(others), self._settings.host.agent, min(others), self._settings.hostname)
        with self._lock:
            self._legacy = legacy
            self._legacy_refused &= set(legacy)
        self._metrics.set("registrator_services_owned", len(self.view))
        return self.view.containers()

    def needs_look(self, container_id: str, fingerprint: str) -> bool:
        """For a resync: whether a running container must be inspected again. Not when its `docker ps`
        entry is unchanged since the last resync and Consul still holds exactly what its last
        reconcile left there (after `refresh`); events bring every real change anyway."""
        with self._lock:
            previous, self._fingerprints[container_id] = self._fingerprints.get(container_id), fingerprint
            verified = self._verified.get(container_id)
        actual = self.view.services_of(container_id)
        drifted = verified is None or bool(plan(verified, actual, self.view.unsure_of(container_id)))
        unchanged = previous == fingerprint and not drifted
        return not unchanged or self._kills.pending(container_id)

    def forget_containers_except(self, running: set[str], mark: int) -> None:
        """After a resync whose listing was taken at `mark` (`KillLog.mark`)."""
        with self._lock:
            for table in (self._fingerprints, self._verified, self._warned):
                for container_id in set(table) - running:
                    del table[container_id]
        self._kills.forget_except(running, mark)
        refused = self.view.remembered()["refused"] - running
        # not seen running since the listing
        self.view.forget_refusals({cid for cid in refused if self._kills.running(cid) is None})

    def heartbeat(self) -> int:
        """Re-send every Docker-health check's status, so its TTL never runs out while we live.

        Only to services Consul lists as this host's now (one listing per heartbeat: a service
        another owner took over since is left alone). A reconcile may send a newer status meanwhile
        (it records it first): then that one is sent again, so the heartbeat's older one never stays.
        """
        mirrors = self.view.mirrors()
        if not mirrors:
            return 0
        listed = self._consul.services()
        sent = 0
        failed: list[ConsulError] = []
        for service_id, first in sorted(mirrors.items()):
            holder = self._ownership.of(service_id, listed.get(service_id))
            if holder != OURS:
                if holder == FOREIGN:
                    self.view.held_by_another_owner(service_id, "")
                continue
            mirror: Mirror | None = first
            while mirror is not None:
                try:
                    self._write(self._consul.update_check, mirror_check_id(service_id), mirror.status, mirror.output)
                except ConsulError as exc:
                    if self.view.owns(service_id):  # else it was deregistered meanwhile: nothing to keep alive
                        failed.append(exc)
                    break
                sent += 1
                latest = self.view.mirror(service_id)
                mirror = latest if latest is not None and latest.version != mirror.version else None
        if failed:
            raise failed[0]
        return sent

    def sweep_legacy(self, running_names: set[str]) -> int:
        """`-cleanup`: remove services gliderlabs/registrator left for this host's gone containers.

        They carry no ownership Meta, so this is the one place that reads an ID: registrator's own
        `host:container:port[:udp]` pattern with this host's name, as its `-cleanup` did. Entries of
        running containers are left for their reconcile to adopt (same ID, now with Meta); a
        container that adopts one while its removal is on its way is looked at again, since the
        removal may have landed after its registration. One Consul refuses to remove is logged once
        and left, and the others are still removed.
        """
        with self._lock:
            stale = sorted(sid for sid, name in self._legacy.items() if name not in running_names
                           and sid not in self._legacy_refused)
        removed = 0
        failed: list[ConsulError] = []
        for service_id in stale:
            if self.view.owns(service_id):  # adopted meanwhile by a container that started after the listing
                continue
            try:
                if self._holder_now(service_id, {}, "", "cleanup") == LEGACY:
                    self._write(self._consul.deregister, service_id)
                    removed += 1
                    log.info("cleanup: deregistered %s left by registrator for a container that is gone", service_id)
                    if adopter := self.view.container_of(service_id):
                        self.view.maybe_deregistered(service_id)
                        self._wake({adopter})
                with self._lock:
                    self._legacy.pop(service_id, None)
            except ConsulError as exc:
                if exc.transient:
                    failed.append(exc)
                else:
                    with self._lock:
                        self._legacy_refused.add(service_id)
                    log.error("cleanup: %s; left in Consul", exc)
        self._metrics.inc("registrator_deregistrations_total", removed)
        if failed:
            raise failed[0]
        return removed

    def remembered(self) -> dict[str, set[str]]:
        """The containers each table holds, the view's and the kill log's included (the simulation
        bounds them by the live containers)."""
        with self._lock:
            tables = {"warned": set(self._warned), "verified": set(self._verified), "fingerprints": set(self._fingerprints)}
        return {**tables, **self.view.remembered(), **self._kills.remembered()}

    def close(self, timeout: float) -> bool:
        """No write starts after this; waits up to `timeout` for those in flight. False if some still are."""
        with self._writes:
            self._closed = True
            return self._writes.wait_for(lambda: self._writes_in_flight == 0, timeout)

    def leave(self, timeout: float) -> None:
        """Deregister every service of this host, for good: writes are closed first and those in
        flight waited for up to `timeout`, so no reconcile can register again after this (thread
        joins can time out; the close cannot be overtaken). The services are those Consul lists
        for this host, else those the view knows."""
        if not self.close(timeout):
            log.warning("deregistering on exit while a Consul write is still in flight")
        try:
            owned = sorted(sid for sid, spec in self._consul.services().items() if self._ownership.of(sid, spec) == OURS)
        except ConsulError as exc:
            owned = sorted(self.view.owned())
            log.error("deregistering on exit: %s; removing the %d services the agent knows of", exc, len(owned))
        left = []
        for service_id in owned:
            try:
                self._consul.deregister(service_id)
            except ConsulError as exc:
                left.append(service_id)
                log.error("deregistering on exit: %s", exc)
        remaining = f"; {len(left)} left: {', '.join(left)}" if left else ""
        log.info("deregistered %d services on exit%s", len(owned) - len(left), remaining)

    def reconcile(self, container_id: str) -> Outcome:
        """Make Consul hold exactly the services this container should have now."""
        started = time.monotonic()
        try:
            return self._reconcile(container_id)
        finally:
            self._metrics.inc("registrator_reconciles_total")
            self._metrics.observe("registrator_reconcile_duration_seconds", time.monotonic() - started)
            self._metrics.set("registrator_services_owned", len(self.view))
            self._metrics.set("registrator_last_reconcile_timestamp_seconds", self._clock())

    def plan(self, container_id: str) -> tuple[str, list[Op]]:
        """What reconcile would write for this container now (its name, and the ops); writes nothing."""
        label, _, wanted, actual = self._desired(container_id, claim=False)
        return label, plan(wanted, actual, self.view.unsure_of(container_id)) if wanted is not None else []

    def _desired(self, container_id: str,
                 claim: bool = True) -> tuple[str, Desired, dict[str, ServiceSpec] | None, dict[str, ServiceSpec]]:
        """The container's label, its desired state, the services to have (None: keep what is there), and what is there."""
        if (stopping := self._stopping(container_id)) is not None:
            actual = self.view.services_of(container_id)
            unsure = self.view.unsure_of(container_id)  # to hide one that may not be there, remove it: never register it again
            desired = drained({sid: spec for sid, spec in actual.items() if sid not in unsure}, self._settings)
            return stopping, desired, dict(desired.services), actual
        snapshot = self._docker.inspect(container_id)
        self._kills.observe(snapshot, container_id)
        label = snapshot.name if snapshot else container_id[:12]
        draining = self._kills.draining(container_id, self._kills.running(container_id), self._clock())
        desired = desired_services(snapshot, self._settings, draining)
        if snapshot is None or not snapshot.running:
            self._forget_container(container_id)
        else:
            self._report(container_id, label, desired.warnings)
        for note in desired.notes:
            log.debug("container %s: %s", label, note)
        actual = self.view.services_of(container_id)
        if desired.retain:
            return label, desired, None, actual
        held = self.view.claim(container_id, desired.services) if claim else {}
        for service_id, holder in sorted(held.items()):
            log.warning("container %s: service ID %s is held by container %s; waiting for it to be released", label, service_id,
                        holder[:12])
        return label, desired, {sid: spec for sid, spec in desired.services.items() if sid not in held}, actual

    def _stopping(self, container_id: str) -> str | None:
        """For the first look after a stop began: the container's name, if it is draining by what the
        last inspect said; else None (inspect).

        A container that ends on its stop signal is torn down at once, and Docker answers an inspect
        only when that is done (hundreds of ms, seconds under load), while the service should leave
        DNS now. The drain needs no fresh data; the next look inspects again. A container this
        process has not inspected yet (the agent just started) drains on SIGTERM or SIGKILL, and is
        looked at again at once to learn whether that was its stop signal.
        """
        if not self._kills.first_look(container_id):
            return None
        known = self._kills.running(container_id)
        if known is None:  # not inspected by this process yet (it just started): a usual stop signal counts
            usual = self._kills.usual_stop(container_id, self._clock())
            return container_id[:12] if usual and self.view.services_of(container_id) else None
        return known.name if self._kills.draining(container_id, known, self._clock()) else None

    def _reconcile(self, container_id: str) -> Outcome:
        with self._lock:
            self._verified.pop(container_id, None)
        try:
            label, desired, wanted, actual = self._desired(container_id)
            look_again_in = self._kills.drain_ends_in(container_id, self._clock())  # still draining after this look
            if look_again_in is not None and self._kills.running(container_id) is None:
                look_again_in = 0.0  # drained without knowing its stop signal: the next look inspects and tells
            if wanted is None:
                return Outcome(look_again_in=look_again_in)
            writes = _Writes(container_id, label)
            self._apply(writes, wanted, actual)
            self._set_maintenance(writes, writes.settled(wanted), desired.maintenance)
            self._push_health(writes, writes.settled(wanted), desired.check_status)
            if writes.error is not None:
                raise writes.error
        except BaseException:
            self._kills.look_failed(container_id)
            raise
        finally:
            self.view.end_claims(container_id)
        self._metrics.inc("registrator_reconcile_writes_total", writes.count)
        if not writes.count:
            log.debug("container %s: in sync (%d services)", label, len(wanted))
        if not writes.refused and self._kills.running(container_id) is not None:  # a resync may skip it while unchanged
            with self._lock:
                self._verified[container_id] = {sid: spec for sid, spec in wanted.items() if sid not in writes.held}
        return Outcome(writes.count, look_again_in)

    def _apply(self, writes: _Writes, wanted: dict[str, ServiceSpec], actual: dict[str, ServiceSpec]) -> None:
        """Register and deregister what differs from the view, each ID only once Consul said who holds it.

        A failed call is noted (`_Writes.fail`) and the rest of the plan still goes through: one
        service Consul refuses, or keeps failing, holds none of the container's others back. A
        write that failed may still have been applied: the view marks its service unsure, so the
        next reconcile writes it again (or deregisters it).
        """
        for op in plan(wanted, actual, self.view.unsure_of(writes.container_id)):
            service_id = op.spec.id if isinstance(op, Register) else op.service_id
            try:
                holder = self._holder_now(service_id, writes.looks, writes.container_id if isinstance(op, Register) else "",
                                          writes.label)
                match op:
                    case Register(spec):
                        if holder == FOREIGN:
                            writes.held.add(service_id)
                        else:
                            self._register(writes, spec, "updated" if service_id in actual else "registered")
                    case Deregister(_) if holder in (OURS, LEGACY):
                        self._deregister(writes, service_id)
            except ConsulError as exc:
                writes.fail(service_id, exc)

    def _holder_now(self, service_id: str, looks: dict[str, str], asker: str, label: str) -> str:
        """Who holds the ID in Consul now, read once per pass before its first write (see ownership.py).

        What Consul answers wins over the view: a service another owner holds is left alone (the
        container that asks to register it, `asker`, waits for the ID), one Consul lost is dropped
        from the view.
        """
        if service_id in looks:
            return looks[service_id]
        holder = looks[service_id] = self._ownership.of(service_id, self._consul.service(service_id))
        if holder == FOREIGN:
            if asker:
                log.warning("container %s: service ID %s is held by %s; waiting for it to be released", label, service_id,
                            FOREIGN)
            elif self.view.owns(service_id):
                log.warning("container %s: service ID %s is held by %s now; left to it", label, service_id, FOREIGN)
            self.view.held_by_another_owner(service_id, asker)
        elif holder == FREE and self.view.owns(service_id):
            if service_id not in self.view.unsure_of(self.view.container_of(service_id)):
                self._lost(service_id)
            self.view.deregistered(service_id)
        return holder

    def _register(self, writes: _Writes, spec: ServiceSpec, verb: str = "registered") -> None:
        sent = self.view.ticket()
        try:
            self._write(self._consul.register, spec)
        except ConsulError as exc:
            if exc.transient:
                self.view.maybe_registered(spec, sent)
            raise
        self.view.registered(spec, sent)
        writes.looks[spec.id] = OURS
        writes.registered.add(spec.id)
        writes.count += 1
        self._metrics.inc("registrator_registrations_total")
        log.info("container %s: %s %s (%s at %s:%d)", writes.label, verb, spec.id, spec.name, spec.address, spec.port)

    def _deregister(self, writes: _Writes, service_id: str) -> None:
        try:
            self._write(self._consul.deregister, service_id)
        except ConsulError as exc:
            if exc.transient:
                self.view.maybe_deregistered(service_id)
            raise
        self.view.deregistered(service_id)
        writes.looks[service_id] = FREE
        writes.count += 1
        self._metrics.inc("registrator_deregistrations_total")
        log.info("container %s: deregistered %s", writes.label, service_id)

    def _in_consul(self, writes: _Writes, spec: ServiceSpec) -> bool:
        """Before a write to one of the service's checks: whether Consul holds it as this host's; one
        Consul lost (it restarted without its data) is registered again first."""
        holder = self._holder_now(spec.id, writes.looks, writes.container_id, writes.label)
        if holder == FREE:
            self._register(writes, spec)
        return holder != FOREIGN

    def _set_maintenance(self, writes: _Writes, services: dict[str, ServiceSpec], enable: bool) -> None:
        for service_id, spec in sorted(services.items()):
            if self.view.in_maintenance(service_id) == enable:
                continue
            try:
                # registered again: out of it
                if not self._in_consul(writes, spec) or self.view.in_maintenance(service_id) == enable:
                    continue
                try:
                    self._write(self._consul.maintenance, service_id, enable, "container is stopping (registrator)")
                except ConsulError as exc:
                    if exc.transient:  # Consul may have applied it: the next reconcile writes it whatever it wants
                        self.view.maintenance_set(service_id, None)
                    raise
            except ConsulError as exc:
                writes.fail(service_id, exc)
                continue
            self.view.maintenance_set(service_id, enable)
            writes.count += 1
            log.info("container %s: %s %s maintenance mode", writes.label, service_id, "entered" if enable else "left")

    def _push_health(self, writes: _Writes, services: dict[str, ServiceSpec],
                     check_status: Mapping[str, tuple[str, str]]) -> None:
        """Bring each Docker-health check to Docker's verdict; a fresh registration starts from scratch."""
        for service_id in sorted(services):
            if (state := check_status.get(service_id)) is None:
                continue
            known = self.view.mirror(service_id)
            if service_id not in writes.registered and known is not None and (known.status, known.output) == state:
                continue
            try:
                if not self._in_consul(writes, services[service_id]):
                    continue
                self.view.mirror_intended(service_id, *state)
                try:
                    self._write(self._consul.update_check, mirror_check_id(service_id), *state)
                except ConsulError:
                    self.view.mirror_unknown(service_id)
                    raise
            except ConsulError as exc:
                writes.fail(service_id, exc)
                continue
            writes.count += 1
            log.info("container %s: %s is %s (Docker health)", writes.label, mirror_check_id(service_id), state[0])

    def _write(self, call: Callable[..., None], *args: object) -> None:
        """Every Consul write goes through here, so that `close` can wait for the last one."""
        with self._writes:
            if self._closed:
                raise Closed("the agent is exiting")
            self._writes_in_flight += 1
        try:
            call(*args)
        finally:
            with self._writes:
                self._writes_in_flight -= 1
                self._writes.notify_all()
        self._wrote()

    def _forget_container(self, container_id: str) -> None:
        """A container that is gone or stopped needs no memory: nothing may tell when it is removed
        (its destroy event does not matter to a container with no services)."""
        with self._lock:
            for table in (self._fingerprints, self._verified, self._warned):
                table.pop(container_id, None)
        self.view.forget_refusals({container_id})

    def _report(self, container_id: str, label: str, warnings: tuple[str, ...]) -> None:
        """Log a container's metadata warnings once, and again only when they change (only those of
        running containers are remembered: nothing tells when a stopped one is removed)."""
        with self._lock:
            if self._warned.get(container_id, ()) == warnings:
                return
            if warnings:
                self._warned[container_id] = warnings
            else:
                self._warned.pop(container_id, None)
        for warning in warnings:
            log.warning("container %s: %s", label, warning)
