"""Level-triggered reconcile of one container: the only code that writes to Consul.

A reconcile reads Docker again (why it was asked does not matter, so a late or duplicated event can
never register a dead container), maps the container to the services it should have, and writes
what differs from the local view (`view.py`). An unchanged container costs one inspect and no
Consul call. Reconciles of different containers run side by side; nothing here holds a lock across
a Docker or Consul call, and a refresh of the view never waits for them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from registrator.consul.sink import ConsulError
from registrator.mapping.checks import mirror_check_id
from registrator.mapping.services import META_HOST, Desired, MappingSettings, desired_services, drained
from registrator.model import ContainerSnapshot, Deregister, Op, Register, ServiceSpec
from registrator.ops.metrics import Metrics
from registrator.reconcile.diff import plan
from registrator.reconcile.kills import KillLog
from registrator.reconcile.view import FOREIGN, LocalView, Mirror
from registrator.runtime import SYSTEM, Runtime

log = logging.getLogger(__name__)


class Docker(Protocol):
    def inspect(self, container_id: str) -> ContainerSnapshot | None: ...


class Consul(Protocol):
    def services(self) -> dict[str, ServiceSpec]: ...
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


class Reconciler:
    """`reconcile` is safe from several threads for different containers (the queue never hands
    one container to two workers); `refresh`, `heartbeat` and `needs_look` may run beside it.

    `wake` is handed containers to look at again (see `LocalView`); the controller queues them.
    `wrote` is called after every write Consul took (the controller learns from it that Consul takes
    writes again after failures).
    """

    def __init__(self, docker: Docker, consul: Consul, settings: MappingSettings, kills: KillLog,
                 wake: Callable[[set[str]], None] = lambda _: None, runtime: Runtime = SYSTEM,
                 metrics: Metrics | None = None, wrote: Callable[[], None] = lambda: None) -> None:
        self._metrics = metrics or Metrics()
        self._docker = docker
        self._consul = consul
        self._settings = settings
        self._kills = kills
        self._clock = runtime.time
        self.view = LocalView(settings.hostname, wake)
        self._lock = threading.Lock()  # the per-container tables below
        self._warned: dict[str, tuple[str, ...]] = {}
        self._verified: dict[str, dict[str, ServiceSpec]] = {}  # what the last successful reconcile left in Consul
        self._fingerprints: dict[str, str] = {}  # `docker ps` fingerprint at the last resync
        self._legacy: dict[str, str] = {}  # gliderlabs/registrator's services for this host: ID → container name
        self._legacy_id = re.compile(rf"^{re.escape(settings.hostname)}:([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?$")
        self._writes = runtime.condition()
        self._writes_in_flight = 0
        self._closed = False
        self._wrote = wrote

    def refresh(self) -> set[str]:
        """Re-read the Consul agent's services into the view; returns the containers this host has services for."""
        self.view.begin_refresh()
        try:
            services = self._consul.services()
            states = self._consul.check_states()
        except BaseException:
            self.view.abort_refresh()
            raise
        legacy = {sid: match.group(1) for sid, spec in services.items()
                  if META_HOST not in spec.meta and (match := self._legacy_id.match(sid))}
        self.view.finish_refresh(services.values(), states, adoptable=legacy)
        with self._lock:
            self._legacy = legacy
        self._metrics.set("registrator_services_owned", len(self.view))
        return self.view.containers()

    def needs_look(self, container_id: str, fingerprint: str) -> bool:
        """For a resync: whether a running container must be inspected again. Not when its `docker ps`
        entry is unchanged since the last resync and Consul still holds exactly what its last
        reconcile left there (after `refresh`); events bring every real change anyway."""
        with self._lock:
            previous, self._fingerprints[container_id] = self._fingerprints.get(container_id), fingerprint
            verified = self._verified.get(container_id)
        unchanged = previous == fingerprint and verified is not None and not plan(verified, self.view.services_of(container_id))
        return not unchanged or self._kills.pending(container_id)

    def forget_containers_except(self, running: set[str], mark: int) -> None:
        """After a resync whose listing was taken at `mark` (`KillLog.mark`)."""
        with self._lock:
            for table in (self._fingerprints, self._verified, self._warned):
                for container_id in set(table) - running:
                    del table[container_id]
        self._kills.forget_except(running, mark)
        refused = self.view.remembered()["refused"] - running
        self.view.forget_refusals({cid for cid in refused if self._kills.running(cid) is None})  # not seen running since the listing

    def heartbeat(self) -> int:
        """Re-send every Docker-health check's status, so its TTL never runs out while we live.

        A reconcile may send a newer status meanwhile (it records it first): then that one is sent
        again, so the heartbeat's older one never stays.
        """
        sent = 0
        failed: list[ConsulError] = []
        for service_id, first in sorted(self.view.mirrors().items()):
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
        running containers are left for their reconcile to adopt (same ID, now with Meta).
        """
        with self._lock:
            stale = sorted(sid for sid, name in self._legacy.items() if name not in running_names)
        removed = 0
        for service_id in stale:
            if self.view.owns(service_id):  # adopted meanwhile by a container that started after the listing
                continue
            self._write(self._consul.deregister, service_id)
            with self._lock:
                self._legacy.pop(service_id, None)
            removed += 1
            log.info("cleanup: deregistered %s left by registrator for a container that is gone", service_id)
        self._metrics.inc("registrator_deregistrations_total", removed)
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
        return label, plan(wanted, actual) if wanted is not None else []

    def _desired(self, container_id: str, claim: bool = True) -> tuple[str, Desired, dict[str, ServiceSpec] | None, dict[str, ServiceSpec]]:
        """The container's label, its desired state, the services to have (None: keep what is there), and what is there."""
        if (stopping := self._stopping(container_id)) is not None:
            actual = self.view.services_of(container_id)
            desired = drained(actual, self._settings)
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
            owner = holder if holder == FOREIGN else f"container {holder[:12]}"
            log.warning("container %s: service ID %s is held by %s; waiting for it to be released", label, service_id, owner)
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
            return container_id[:12] if self._kills.usual_stop(container_id) and self.view.services_of(container_id) else None
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
            written, refused = self._apply(label, wanted, actual)
            in_place = set(wanted) - refused
            writes = len(written) + self._set_maintenance(label, in_place, desired.maintenance)
            writes += self._push_health(label, in_place, desired.check_status, registered=written)
        except BaseException:
            self._kills.look_failed(container_id)
            raise
        finally:
            self.view.end_claims(container_id)
        self._metrics.inc("registrator_reconcile_writes_total", writes)
        if not writes:
            log.debug("container %s: in sync (%d services)", label, len(wanted))
        if not refused and self._kills.running(container_id) is not None:  # a resync may skip it while unchanged
            with self._lock:
                self._verified[container_id] = wanted
        return Outcome(writes, look_again_in)

    def _apply(self, label: str, wanted: dict[str, ServiceSpec], actual: dict[str, ServiceSpec]) -> tuple[set[str], set[str]]:
        """Register and deregister what differs; returns the service IDs written and those Consul refused.

        A refusal for good (an ACL denial, a registration Consul rejects) is logged and the rest of
        the plan still goes through; a transient failure ends the reconcile, to be retried whole.
        """
        written: set[str] = set()
        refused: set[str] = set()
        for op in plan(wanted, actual):
            try:
                match op:
                    case Register(spec):
                        self._write(self._consul.register, spec)
                        self.view.registered(spec)
                        self._metrics.inc("registrator_registrations_total")
                        verb = "updated" if spec.id in actual else "registered"
                        log.info("container %s: %s %s (%s at %s:%d)", label, verb, spec.id, spec.name, spec.address, spec.port)
                        written.add(spec.id)
                    case Deregister(service_id):
                        self._write(self._consul.deregister, service_id)
                        self.view.deregistered(service_id)
                        self._metrics.inc("registrator_deregistrations_total")
                        log.info("container %s: deregistered %s", label, service_id)
                        written.add(service_id)
            except ConsulError as exc:
                if exc.transient:
                    raise
                log.error("container %s: %s", label, exc)
                refused.add(op.spec.id if isinstance(op, Register) else op.service_id)
        return written, refused

    def _set_maintenance(self, label: str, service_ids: set[str], enable: bool) -> int:
        changed = [sid for sid in sorted(service_ids) if self.view.in_maintenance(sid) != enable]
        for service_id in changed:
            self._write(self._consul.maintenance, service_id, enable, "container is stopping (registrator)")
            self.view.maintenance_set(service_id, enable)
            log.info("container %s: %s %s maintenance mode", label, service_id, "entered" if enable else "left")
        return len(changed)

    def _push_health(self, label: str, service_ids: set[str], check_status: Mapping[str, tuple[str, str]], registered: set[str]) -> int:
        """Bring each Docker-health check to Docker's verdict; a fresh registration starts from scratch."""
        sent = 0
        for service_id in sorted(service_ids):
            if (state := check_status.get(service_id)) is None:
                continue
            check_id = mirror_check_id(service_id)
            known = self.view.mirror(service_id)
            if service_id in registered or known is None or (known.status, known.output) != state:
                self.view.mirror_intended(service_id, *state)
                try:
                    self._write(self._consul.update_check, check_id, *state)
                except Exception:
                    self.view.mirror_unknown(service_id)
                    raise
                log.info("container %s: %s is %s (Docker health)", label, check_id, state[0])
                sent += 1
        return sent

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
