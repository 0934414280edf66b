"""The running agent: an event pump, a periodic resync and a few workers around a keyed queue.

Events and resyncs only enqueue keys: a container ID, or RESYNC for "re-read Consul and look at
every container". The queue never hands one key to two workers, so events for the same container
are handled in order and never concurrently; different containers are reconciled side by side, and
a resync or heartbeat waits for them and runs alone (`Gate`). A container being stopped (a `kill`
event) is urgent: one more worker serves only those, so its service leaves DNS at once even while
the others wait on Docker. Signal handlers only set `stop`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from typing import Any

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    stop_when_event_set,
    wait_fixed,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from registrator.config import Settings
from registrator.consul_sink import ConsulError, ConsulSink
from registrator.docker_source import DockerSource, DockerUnavailable
from registrator.gate import Gate
from registrator.hostip import HostIPError, detect_host_ip, ec2_local_ipv4, interface_ipv4
from registrator.kills import KillLog
from registrator.metrics import Metrics
from registrator.reconciler import Reconciler
from registrator.workqueue import WorkQueue

log = logging.getLogger(__name__)

RESYNC = "*resync*"  # never a container ID
FULL_RESYNC_EVERY = 10  # every 10th resync (and the first) inspects every container, changed or not
HEARTBEAT = "*heartbeat*"


class EventStreamEnded(Exception):
    """Docker closed the events stream (daemon restart or shutdown)."""


class StartupError(Exception):
    """A dependency stayed unreachable for all of `-retry-attempts`."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DockerUnavailable) or (isinstance(exc, ConsulError) and exc.transient)


class Controller:
    def __init__(self, settings: Settings, docker: DockerSource, consul: ConsulSink, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._docker = docker
        self._consul = consul
        self._queue = WorkQueue()
        self._gate = Gate()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self._since: str | None = None
        self.reconciler: Reconciler | None = None
        self._kills = KillLog(settings.drain_timeout)
        self._resyncs = 0

    @property
    def docker(self) -> DockerSource:
        return self._docker

    def prepare(self, consul: bool = True) -> bool:
        """Wait for Docker (and Consul), and settle the host identity, host IP and Consul's abilities.

        Returns False when stopped meanwhile; raises StartupError when `-retry-attempts` ran out.
        """
        hostname = self._wait_for_docker()
        if consul:
            self._wait_for_consul()
        if self.stop.is_set():
            return False
        host_ip = self._detect_host_ip()
        if self.stop.is_set():
            return False
        runs_scripts = self._agent_runs_scripts() if consul else True
        checks = dataclasses.replace(self.settings.mapping.checks, agent_runs_scripts=runs_scripts)
        mapping = dataclasses.replace(self.settings.mapping, hostname=hostname, host_ip=host_ip, checks=checks)
        self.settings = dataclasses.replace(self.settings, mapping=mapping)
        self.reconciler = Reconciler(self._docker, self._consul, self.settings.mapping, self._kills, metrics=self.metrics)
        return True

    def run(self) -> None:
        """Run until `stop` is set; raises StartupError if Consul or Docker never answered."""
        if not self.prepare():
            return
        log.info("host identity %s; published ports registered at %s", self.settings.mapping.hostname,
                 self.settings.mapping.ip or self.settings.mapping.host_ip)
        threads = [
            threading.Thread(target=self._pump, name="events", daemon=True),
            threading.Thread(target=self._watch_consul, name="consul-probe", daemon=True),
            threading.Thread(target=self._resync_loop, name="resync", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            *[threading.Thread(target=self._work, name=f"worker-{n}", daemon=True) for n in range(self.settings.workers)],
            threading.Thread(target=self._work, args=(True,), name="worker-urgent", daemon=True),
        ]
        for thread in threads:
            thread.start()
        self.stop.wait()
        log.info("stopping")
        self._docker.close_events()
        self._queue.shutdown()
        for thread in threads:
            thread.join(timeout=self.settings.docker_timeout)
        if self.settings.deregister_on_exit:
            self._deregister_all()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: Docker and Consul answer now, and when the last reconcile finished."""
        details: dict[str, Any] = {}
        for name, probe in (("docker", self._docker.ping), ("consul", self._consul.leader)):
            try:
                probe()
                details[name] = "ok"
            except (DockerUnavailable, ConsulError) as exc:
                details[name] = str(exc)
        last = self.metrics.value("registrator_last_reconcile_timestamp_seconds")
        details["last_reconcile_age_seconds"] = round(time.time() - last, 3) if last else None
        details["ready"] = self.ready.is_set()
        return details["docker"] == "ok" and details["consul"] == "ok", details

    def _deregister_all(self) -> None:
        """--deregister-on-exit: take this host's services out of Consul before the agent goes."""
        try:
            owned = self._consul.owned_services(self.settings.mapping.hostname)
            for service_id in sorted(owned):
                self._consul.deregister(service_id)
            log.info("deregistered %d services on exit", len(owned))
        except ConsulError as exc:
            log.error("deregistering on exit: %s", exc)

    def _sleep(self, seconds: float) -> None:
        """Back off, but wake at once on `stop`."""
        self.stop.wait(seconds)

    def _retrying(self, retry: Any) -> Retrying:
        """Retry with jittered backoff until success or `stop`; a stop ends the call with None."""
        return Retrying(
            retry=retry,
            wait=wait_random_exponential(multiplier=0.5, max=10),
            stop=stop_when_event_set(self.stop),
            sleep=self._sleep,
            before_sleep=before_sleep_log(log, logging.WARNING),
            retry_error_callback=lambda state: None,
        )

    def _startup_retrying(self, retry: Any, what: str) -> Retrying:
        """registrator's `-retry-attempts` (-1: forever) and `-retry-interval` for reaching a dependency."""
        attempts = self.settings.retry_attempts
        stop: stop_base = stop_when_event_set(self.stop)
        if attempts >= 0:
            stop = stop_any(stop, stop_after_attempt(attempts + 1))

        def give_up(state: Any) -> None:
            if not self.stop.is_set():
                outcome = state.outcome.exception() if state.outcome and state.outcome.failed else "no leader"
                raise StartupError(f"{what} not reachable after {state.attempt_number} attempts: {outcome}")

        def report(state: Any) -> None:
            failure = state.outcome.exception() if state.outcome and state.outcome.failed else "no leader yet"
            log.warning("%s: %s; retrying in %.1fs", what, failure, state.upcoming_sleep)

        return Retrying(
            retry=retry,
            wait=wait_fixed(self.settings.retry_interval_ms / 1000),
            stop=stop,
            sleep=self._sleep,
            before_sleep=report,
            retry_error_callback=give_up,
        )

    def _wait_for_docker(self) -> str:
        """The host identity: `--hostname`, else the Docker daemon's name (stable across agent restarts)."""
        configured = self.settings.mapping.hostname
        name = self._startup_retrying(retry_if_exception_type(DockerUnavailable), "Docker")(
            lambda: configured or self._docker.daemon_name()
        )
        return str(name or configured)

    def _detect_host_ip(self) -> str:
        """The address for published ports (`--ip-from`), unless `-ip` gave one; retried like startup."""
        if self.settings.mapping.ip:
            return ""
        method = self.settings.ip_from

        def detect() -> str:
            if method == "route":
                return detect_host_ip()
            if method.startswith("interface:"):
                return interface_ipv4(method.partition(":")[2])
            if method == "ec2":
                return ec2_local_ipv4(self.settings.ec2_metadata_url)
            address = self._docker.advertised_address()
            if not address:
                raise HostIPError("the Docker daemon advertises no address (not in swarm mode)")
            return address

        address = self._startup_retrying(retry_if_exception_type((HostIPError, DockerUnavailable)), f"host IP (--ip-from {method})")(detect)
        if address:
            log.info("host IP %s (--ip-from %s)", address, method)
        return str(address or "")

    def _wait_for_consul(self) -> None:
        """Block until the Consul agent answers and its cluster has a leader (registrator#593)."""
        retry = retry_if_exception(_transient) | retry_if_result(lambda leader: not leader)
        leader = self._startup_retrying(retry, f"Consul at {self._consul.endpoint.url}")(self._consul.leader)
        if leader:
            log.info("Consul at %s has leader %s", self._consul.endpoint.url, leader)

    def _agent_runs_scripts(self) -> bool:
        """Script and Docker exec checks need the Consul agent's enable_script_checks; ask it once."""
        try:
            runs = self._consul.runs_script_checks()
        except ConsulError as exc:
            runs = None
            log.warning("%s", exc)
        if runs is None:
            log.warning("cannot read the Consul agent's configuration (ACL agent:read); script and Docker exec checks are left out")
        elif not runs:
            log.info("the Consul agent has enable_script_checks off; script and Docker exec checks are left out")
        if self.settings.mapping.checks.allow_scripts:
            log.warning("--allow-script-checks: SERVICE_CHECK_SCRIPT commands from containers run on the Consul host")
        return bool(runs)

    def _pump(self) -> None:
        self._retrying(retry_if_exception_type((DockerUnavailable, EventStreamEnded)))(self._follow_events)

    def _follow_events(self) -> None:
        events = self._docker.events(since=self._since)
        self._queue.add(RESYNC)
        if not self.ready.is_set():
            log.info("ready: following Docker events, resync every %ss", self.settings.resync_seconds)
            self.ready.set()
        for event in events:
            self._since = f"{event.time_nano // 10**9}.{event.time_nano % 10**9:09d}"
            log.debug("event %s for %s", event.action, event.container_id[:12])
            self.metrics.inc("registrator_events_total", action=event.action.split(":")[0])
            # The first kill of a stop is urgent (drain now); the SIGKILL that may follow is not: by then
            # Docker is tearing the container down and answers its inspect only when done.
            urgent = event.action == "kill" and not self._kills.pending(event.container_id)
            if event.action == "kill" and event.signal is not None:
                self._kills.record(event.container_id, event.signal, event.time_nano / 10**9)
            self._queue.add(event.container_id, urgent=urgent)
        if not self.stop.is_set():
            raise EventStreamEnded("Docker events stream closed; reconnecting")

    def _resync_loop(self) -> None:
        period = self.settings.resync_seconds
        if period <= 0:
            return
        while not self.stop.wait(period * random.uniform(0.9, 1.1)):
            self._queue.add(RESYNC)

    def _watch_consul(self) -> None:
        """Notice quickly when the Consul agent lost what we registered (a restarted dev agent, a wiped
        data dir) or was unreachable: probe one owned service, and resync when it is gone or Consul is back."""
        unreachable = False
        while not self.stop.wait(self.settings.consul_probe_seconds):
            sentinel = self.reconciler.sentinel if self.reconciler else None
            try:
                present = self._consul.has_service(sentinel) if sentinel else bool(self._consul.leader())
            except ConsulError as exc:
                if not unreachable:
                    log.warning("Consul unreachable: %s", exc)
                unreachable = True
                continue
            if unreachable or not present:
                log.warning("Consul agent %s; resyncing", "is back" if unreachable else f"lost service {sentinel}")
                self._queue.add(RESYNC)
            unreachable = False

    def _heartbeat_loop(self) -> None:
        checks = self.settings.mapping.checks
        if checks.docker_health:
            while not self.stop.wait(checks.docker_health_ttl / 3):
                self._queue.add(HEARTBEAT)

    def _resync(self) -> None:
        """Queue every running container and every container this host still has services for."""
        assert self.reconciler is not None
        self.metrics.inc("registrator_resyncs_total")
        running = self._docker.running()
        owned = self.reconciler.refresh()
        if self.settings.cleanup:
            self.reconciler.sweep_legacy({listed.name for listed in running.values()})
        self.reconciler.forget_containers_except(set(running))
        self._resyncs += 1
        full = self._resyncs % FULL_RESYNC_EVERY == 1
        stale = {cid for cid, listed in running.items() if self.reconciler.needs_look(cid, listed.fingerprint) or full}
        containers = owned - set(running) | stale
        log.debug("resync: %d containers to look at, %d unchanged", len(containers), len(running) - len(stale))
        for container_id in sorted(containers):
            self._queue.add(container_id)

    def _handle(self, key: str) -> None:
        assert self.reconciler is not None
        if key == RESYNC:
            with self._gate.exclusive():
                self._resync()
        elif key == HEARTBEAT:
            with self._gate.exclusive():
                self.reconciler.heartbeat()
        else:
            with self._gate.shared():
                self.reconciler.reconcile(key)

    def _work(self, urgent_only: bool = False) -> None:
        retrying = self._retrying(retry_if_exception(_transient))
        while (key := self._queue.get(urgent_only)) is not None:
            try:
                retrying(self._handle, key)
            except ConsulError as exc:
                log.error("container %s: %s", key[:12], exc)
            except Exception:
                log.exception("container %s: unexpected error while reconciling", key[:12])
            finally:
                self._queue.done(key)
