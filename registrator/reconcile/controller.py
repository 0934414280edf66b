"""The running agent: an event pump, a periodic resync and a few workers around a keyed queue.

Events and resyncs only enqueue keys: a container ID, RESYNC ("re-read Consul and look at every
container") or HEARTBEAT. The queue never hands one key to two workers, so events for the same
container are handled in order and never concurrently; different containers, a resync and a
heartbeat all run side by side (the local view makes that safe), so a resync never holds up an
event. A container being stopped (its first stop-signal `kill`) is urgent: one more worker serves
only those, so its service leaves DNS at once even while the others wait on Docker. A key whose
handling fails goes back to the queue after its own backoff. When the Consul probe sees Consul
answer again (with a leader) after it did not, every waiting key is retried at once, so the agent
catches up within a probe period of Consul's return, not a backoff of a minute; what tells that
Consul is back is a read of its state, never the write of one key, so a key that Consul keeps
failing for its own reason waits out its backoff.
Signal handlers only set `stop`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception, retry_if_exception_type, wait_random_exponential
from tenacity.wait import wait_base

from registrator.config import Settings
from registrator.consul.sink import ConsulError
from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import ContainerEvent, Listed
from registrator.metrics import Metrics
from registrator.reconcile.kills import KillLog
from registrator.reconcile.queue import WorkQueue
from registrator.reconcile.reconciler import Closed, Consul, Docker, Outcome, Reconciler
from registrator.retrying import sleeper, transient
from registrator.runtime import SYSTEM, Event, Runtime

log = logging.getLogger(__name__)

RESYNC = "*resync*"  # never a container ID
HEARTBEAT = "*heartbeat*"
FULL_RESYNC_EVERY = 10  # every 10th resync (and the first) inspects every container, changed or not
DRAIN_MARGIN = 0.05  # seconds past a drain's end before looking again, so the look sees it ended
RECONNECT_BACKOFF = wait_random_exponential(multiplier=0.5, max=10)  # Docker's events, Consul's first read: at most 10 s apart
RESTART_BACKOFF = wait_random_exponential(multiplier=0.5, max=30)  # a loop that died


def _report(what: str) -> Callable[[Any], None]:
    """tenacity's before_sleep: one warning line naming what failed and when it is tried again."""
    def report(state: Any) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; trying again in %.1fs", what, failure, state.upcoming_sleep)
    return report


def _docker_time(nanos: int) -> str:
    """A time as Docker's `since` takes it, to the nanosecond: `seconds.nanoseconds`."""
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


class EventStreamEnded(Exception):
    """Docker closed the events stream (daemon restart or shutdown)."""


class DockerEngine(Docker, Protocol):
    def running(self) -> dict[str, Listed]: ...
    def events(self, since: str | None) -> Any: ...
    def close_events(self) -> None: ...
    def ping(self) -> None: ...


class ConsulAgent(Consul, Protocol):
    def has_service(self, service_id: str) -> bool: ...
    def leader(self) -> str: ...
    def reload_token(self) -> bool: ...


@dataclass(slots=True)
class LoopState:
    """For /healthz: how often a background loop died of an unexpected error, and the last one."""

    restarts: int = 0
    last_error: str = ""
    failing: bool = False


class Controller:
    def __init__(self, settings: Settings, docker: DockerEngine, consul: ConsulAgent, metrics: Metrics | None = None,
                 queue: WorkQueue | None = None, background: WorkQueue | None = None, runtime: Runtime = SYSTEM,
                 stop: Event | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._docker = docker
        self._consul = consul
        self._runtime = runtime
        self._queue = queue if queue is not None else WorkQueue(runtime=runtime)
        # RESYNC and HEARTBEAT, one worker
        self._background = background if background is not None else WorkQueue(runtime=runtime)
        self.stop = stop if stop is not None else runtime.event()
        self.ready = runtime.event()
        self._since: str | None = None  # where the next events stream resumes (Docker's clock is this host's)
        self._kills = KillLog(settings.options.drain_timeout)
        self.reconciler = Reconciler(docker, consul, settings.mapping, self._kills, wake=self._wake, runtime=runtime,
                                     metrics=self.metrics,
                                     wrote=self._wrote, lost=self._lost)
        self._clock = runtime.time
        self._consul_away = ""  # why the probe took Consul to be away (unreachable, no leader); "" while it answers
        self._back_at = float("-inf")  # when the probe last saw Consul back
        self._probe_refused = ""  # what Consul last answered when it refused the probe's read (said once)
        self._consul_failed = False  # Consul failed a key since the last write that went through: the probe asks for the leader
        self._resyncs = 0
        self._resync_woken = runtime.event()  # the resync loop's wake-up: its period, SIGHUP, or stop
        self._full_resync_asked = False
        self._token_reload_asked = False
        self.loops: dict[str, LoopState] = {}
        self.restart_backoff: wait_base = RESTART_BACKOFF

    def run(self) -> None:
        """Run until `stop` is set.

        The view is read from Consul before anything else starts, so the first reconciles compare
        with what Consul holds (an unchanged service is not written again after a restart) and know
        the IDs of other owners.
        """
        self._until_stopped(retry_if_exception(transient), RECONNECT_BACKOFF,
                            _report("reading Consul's services"))(self.reconciler.refresh)
        loops = {"events": self.pump, "consul-probe": self._watch_consul, "resync": self._resync_loop,
                 "heartbeat": self._heartbeat_loop}
        spawn = self._runtime.thread
        threads = [spawn(self.supervise, name, (name, loop)) for name, loop in loops.items()]
        threads += [spawn(self.work, f"worker-{n}") for n in range(self.settings.options.workers)]
        threads.append(spawn(self.work, "worker-urgent", (True,)))
        threads.append(spawn(self.work_background, "worker-background"))
        for thread in threads:
            thread.start()
        self.stop.wait()
        log.info("stopping")
        self._resync_woken.set()
        self._docker.close_events()
        self._queue.shutdown()
        self._background.shutdown()
        monotonic = self._runtime.monotonic
        deadline = monotonic() + self.settings.options.docker_timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - monotonic()))
        if self.settings.options.deregister_on_exit:
            self.deregister_all()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: Docker and Consul answer now, every loop is alive, when the last reconcile finished."""
        details: dict[str, Any] = {}
        for name, probe in (("docker", self._docker.ping), ("consul", self._consul.leader)):
            try:
                probe()
                details[name] = "ok"
            except (DockerUnavailable, ConsulError) as exc:
                details[name] = str(exc)
        last = self.metrics.value("registrator_last_reconcile_timestamp_seconds")
        details["last_reconcile_age_seconds"] = round(self._clock() - last, 3) if last else None  # on the clock that stamped it
        details["ready"] = self.ready.is_set()
        details["loops"] = {name: {"restarts": s.restarts, "last_error": s.last_error, "failing": s.failing}
                            for name, s in sorted(self.loops.items())}
        loops_ok = not any(s.failing for s in self.loops.values())
        return details["docker"] == "ok" and details["consul"] == "ok" and loops_ok, details

    def deregister_all(self) -> None:
        """--deregister-on-exit: take this host's services out of Consul before the agent goes
        (connecting and reading each have the Consul timeout, so writes in flight get twice it)."""
        self.reconciler.leave(2 * self.settings.options.consul_timeout)

    # -- background loops ---------------------------------------------------------------------------

    def supervise(self, name: str, loop: Callable[[], None]) -> None:
        """Run a loop until `stop`; an unexpected error is logged and the loop restarted after a backoff."""
        state = self.loops.setdefault(name, LoopState())

        def report(retry_state: Any) -> None:
            exc = retry_state.outcome.exception()
            state.restarts += 1
            self.metrics.inc("registrator_loop_restarts_total", loop=name)
            state.last_error = f"{type(exc).__name__}: {exc}"
            state.failing = True
            log.error("%s loop died (%s); restarting in %.1fs", name, state.last_error, retry_state.upcoming_sleep,
                      exc_info=exc)

        def run_once() -> None:
            state.failing = False
            loop()

        self._until_stopped(retry_if_exception_type(Exception), self.restart_backoff, report)(run_once)

    def pump(self) -> None:
        """Follow Docker events; reconnect with `since` after a closed stream or an unreachable daemon."""
        self._until_stopped(retry_if_exception_type((DockerUnavailable, EventStreamEnded)), RECONNECT_BACKOFF,
                            _report("Docker events"))(self.follow_events)

    def _until_stopped(self, retry: Any, wait: wait_base, report: Callable[[Any], None]) -> Callable[[Callable[[], Any]], Any]:
        """Retry with backoff until success or `stop`; a stop ends the call with None, at once (a
        backoff that the stop cut short is not followed by one more attempt)."""
        retrying = Retrying(retry=retry, wait=wait, stop=lambda _: self.stop.is_set(), sleep=sleeper(self.stop),
                            before_sleep=report,
                            retry_error_callback=lambda _: None)
        return lambda call: retrying(lambda: None if self.stop.is_set() else call())

    def follow_events(self) -> None:
        asked_at = self._clock()
        events = self._docker.events(since=self._since)
        if self._since is None:  # should this stream end before its first event, the next resumes from here
            self._since = _docker_time(int(asked_at * 10**9))
        if self.stop.is_set():  # `run` may have closed the streams before this one was known: close it here
            self._docker.close_events()
            return
        self._full_resync_asked = True  # Docker replays only the events it still keeps: a gap may have lost some
        self._background.add(RESYNC)
        self.metrics.set("registrator_docker_events_connected", 1)
        if not self.ready.is_set():
            log.info("ready: following Docker events, resync every %ss", self.settings.options.resync_seconds)
            self.ready.set()
        try:
            for event in events:
                self.on_event(event)
        finally:
            self.metrics.set("registrator_docker_events_connected", 0)
        if not self.stop.is_set():
            raise EventStreamEnded("Docker events stream closed")

    def on_event(self, event: ContainerEvent) -> None:
        self._since = _docker_time(event.time_nano)
        log.debug("event %s for %s", event.action, event.container_id[:12])
        self.metrics.inc("registrator_events_total", action=event.action.split(":")[0])
        if not self._may_matter(event):
            return
        # The first stop signal of a stop is urgent (drain now); the SIGKILL that may follow is not: by
        # then Docker is tearing the container down and answers its inspect only when done.
        urgent = event.action == "kill" and event.signal is not None and self._kills.record(event.container_id, event.signal,
                                                                                            event.time_nano / 10**9)
        self._queue.add(event.container_id, urgent=urgent)

    def _may_matter(self, event: ContainerEvent) -> bool:
        """Whether the event can change what the container registers. `docker run` sends create,
        network connect and start: a container that is not running has nothing to register, so
        only its start is worth an inspect. A network change or removal matters only for a
        container known to run or to have services, or one about to be looked at or being looked
        at (its first inspect may have been answered before the change)."""
        if event.action == "create":
            return False
        if event.action in ("connect", "disconnect", "destroy"):
            container_id = event.container_id
            return (self._kills.running(container_id) is not None or bool(self.reconciler.view.services_of(container_id))
                    or self._queue.has(container_id))
        return True

    def resync_now(self) -> None:
        """SIGHUP: a full resync now, whatever `-resync` says (the signal handler calls only this,
        which sets a flag and an event)."""
        self._full_resync_asked = True
        self._token_reload_asked = True
        self._resync_woken.set()

    def _resync_loop(self) -> None:
        period = self.settings.options.resync_seconds
        while not self.stop.is_set():
            self._resync_woken.wait(period * random.uniform(0.9, 1.1) if period > 0 else None)
            if self.stop.is_set():
                return
            self._resync_woken.clear()
            self._background.add(RESYNC)

    def _watch_consul(self) -> None:
        while not self.stop.wait(self.settings.options.consul_probe_seconds):
            self.probe_consul()

    def probe_consul(self) -> None:
        """Notice quickly when the Consul agent lost what we registered (a restarted dev agent, a wiped
        data dir) or comes back after it was away: probe one owned service (a local read), and while
        Consul fails keys ask also for the cluster's leader (the local agent answers reads from its
        own state without one, but takes no write). When Consul is back, every waiting key is tried
        now and a resync follows; a lost service is resynced."""
        sentinel = self.reconciler.view.sentinel()
        try:
            present = self._consul.has_service(sentinel) if sentinel else True
            leader = self._consul.leader() if self._consul_failed or not sentinel else "not asked"
        except ConsulError as exc:
            if not exc.transient:  # it answered, refusing this read (an ACL, an ID it cannot address): not away
                if str(exc) != self._probe_refused:
                    log.warning("Consul agent refuses the probe's read: %s", exc)
                self._probe_refused = str(exc)
                return
            self._away(f"unreachable: {exc}")
            return
        self._probe_refused = ""
        if not leader:
            self._away("has no cluster leader")
            return
        if self._consul_away:
            self._consul_away, self._back_at = "", self._clock()
            waiting = self._queue.retry_all_now() + self._background.retry_all_now()
            log.warning("Consul agent is back: resyncing, and retrying the %d waiting reconciles now", waiting)
            self._background.add(RESYNC)
        elif not present:
            log.warning("Consul agent lost service %s; resyncing", sentinel)
            self._background.add(RESYNC)

    def _away(self, why: str) -> None:
        if not self._consul_away:
            log.warning("Consul agent %s", why)
        self._consul_away = why

    def _lost(self, service_id: str) -> None:
        """A reconcile found a service of ours gone from Consul: others may be gone too."""
        log.warning("Consul agent lost service %s; resyncing", service_id)
        self._background.add(RESYNC)

    def _wrote(self) -> None:
        """A write went through: Consul takes writes (the probe need not ask for a leader)."""
        self._consul_failed = False

    def _heartbeat_loop(self) -> None:
        checks = self.settings.mapping.checks
        if checks.docker_health:
            while not self.stop.wait(checks.docker_health_ttl / 3):
                self._background.add(HEARTBEAT)

    # -- work ---------------------------------------------------------------------------------------

    def resync(self) -> None:
        """Refresh the view, and queue every container that may differ from what Consul holds."""
        self.metrics.inc("registrator_resyncs_total")
        mark = self._kills.mark()
        self._resyncs += 1
        full = self._resyncs % FULL_RESYNC_EVERY == 1 or self._full_resync_asked  # asked before this listing
        self._full_resync_asked = False
        if self._token_reload_asked:  # SIGHUP: a token rotated in its file is picked up now
            self._token_reload_asked = False
            if self._consul.reload_token():
                log.info("Consul ACL token read again from its file")
        try:
            running = self._docker.running()
            owned = self.reconciler.refresh()
        except BaseException:
            self._full_resync_asked |= full  # the retry looks at every container still
            raise
        under_way = self._queue.processing()  # their inspect may be older than the listing, and their events lost
        self.reconciler.forget_containers_except(set(running), mark)
        stale = {cid for cid, listed in running.items() if self.reconciler.needs_look(cid, listed.fingerprint) or full}
        containers = (owned - set(running)) | stale | under_way
        log.debug("resync: %d containers to look at, %d unchanged", len(containers), len(running) - len(stale))
        for container_id in sorted(containers):
            self._queue.add(container_id)
        if self.settings.options.cleanup:  # after the containers are queued: a failed sweep holds none of them up
            self.reconciler.sweep_legacy({listed.name for listed in running.values()})

    def handle(self, key: str) -> None:
        if key == RESYNC:
            self.resync()
        elif key == HEARTBEAT:
            self.reconciler.heartbeat()
        else:
            self._follow_up(key, self.reconciler.reconcile(key))

    def _wake(self, containers: set[str]) -> None:
        for container_id in sorted(containers):
            self._queue.add(container_id)

    def _follow_up(self, container_id: str, outcome: Outcome) -> None:
        if outcome.look_again_in is not None:
            self._queue.add_after(container_id, outcome.look_again_in + DRAIN_MARGIN)

    def work(self, urgent_only: bool = False) -> None:
        """A container worker: one key at a time until the queue shuts down."""
        while (key := self._queue.get(urgent_only)) is not None:
            self.process(key)

    def work_background(self) -> None:
        """The one worker for resyncs and heartbeats: however long Consul takes to answer them, the
        container workers go on handling events."""
        while (key := self._background.get()) is not None:
            self.process(key)

    def process(self, key: str) -> None:
        """Handle a key taken from its queue; a failed one goes back after its own backoff."""
        queue = self._background if key in (RESYNC, HEARTBEAT) else self._queue
        started = self._clock()
        try:
            self.handle(key)
            queue.forget(key)
        except Closed:
            pass
        except Exception as exc:
            self._failed(queue, key, exc, started)
        finally:
            queue.done(key)
            if queue is self._queue:
                self.metrics.set("registrator_retrying_containers", queue.retrying())

    def _failed(self, queue: WorkQueue, key: str, exc: Exception, started: float) -> None:
        label = key if key in (RESYNC, HEARTBEAT) else f"container {key[:12]}"
        if isinstance(exc, ConsulError) and not exc.transient:
            queue.forget(key)
            log.error("%s: %s", label, exc)
            return
        delay = queue.retry(key)
        if isinstance(exc, ConsulError):
            self._consul_failed = True
            if started < self._back_at:  # it was tried while Consul was away, and failed after the probe saw it back
                queue.add(key)
                delay = 0.0
        if transient(exc):
            log.warning("%s: %s; trying again in %.1fs", label, exc, delay)
        else:
            log.exception("%s: unexpected error; trying again in %.1fs", label, delay)
