"""The running agent: an event pump, a periodic resync and one worker around a keyed queue.

Events and resyncs only enqueue container IDs; the worker reconciles one container at a time, so
events for the same container are handled in order and never concurrently. Signal handlers only
set `stop`.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_when_event_set,
    wait_random_exponential,
)

from registrator.config import Settings
from registrator.consul_sink import ConsulError, ConsulSink
from registrator.docker_source import DockerSource, DockerUnavailable
from registrator.mapping import META_CONTAINER
from registrator.reconciler import Reconciler
from registrator.workqueue import WorkQueue

log = logging.getLogger(__name__)


class EventStreamEnded(Exception):
    """Docker closed the events stream (daemon restart or shutdown)."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DockerUnavailable) or (isinstance(exc, ConsulError) and exc.transient)


class Controller:
    def __init__(self, settings: Settings, docker: DockerSource, consul: ConsulSink) -> None:
        self._settings = settings
        self._docker = docker
        self._consul = consul
        self._reconciler = Reconciler(docker, consul, settings.mapping)
        self._queue = WorkQueue()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self._since: str | None = None

    def run(self) -> None:
        """Run until `stop` is set."""
        self._wait_for_consul()
        threads = [
            threading.Thread(target=self._pump, name="events", daemon=True),
            threading.Thread(target=self._resync_loop, name="resync", daemon=True),
            threading.Thread(target=self._work, name="worker", daemon=True),
        ]
        for thread in threads:
            thread.start()
        self.stop.wait()
        log.info("stopping")
        self._docker.close_events()
        self._queue.shutdown()
        for thread in threads:
            thread.join(timeout=self._settings.docker_timeout)

    def _retrying(self, retry: Any) -> Retrying:
        """Retry with jittered backoff until success or `stop`; a stop ends the call with None."""
        return Retrying(
            retry=retry,
            wait=wait_random_exponential(multiplier=0.5, max=30),
            stop=stop_when_event_set(self.stop),
            sleep=self.stop.wait,
            before_sleep=before_sleep_log(log, logging.WARNING),
            retry_error_callback=lambda state: None,
        )

    def _wait_for_consul(self) -> None:
        """Block until the Consul agent answers and its cluster has a leader (or we are stopped)."""
        retrying = self._retrying(retry_if_exception_type(ConsulError) | retry_if_result(lambda leader: not leader))
        leader = retrying(self._consul.leader)
        if leader:
            log.info("Consul at %s has leader %s", self._consul.endpoint.url, leader)

    def _pump(self) -> None:
        self._retrying(retry_if_exception_type((DockerUnavailable, EventStreamEnded)))(self._follow_events)

    def _follow_events(self) -> None:
        events = self._docker.events(since=self._since)
        self.enqueue_all()
        if not self.ready.is_set():
            log.info("ready: following Docker events, resync every %ss", self._settings.resync_seconds)
            self.ready.set()
        for event in events:
            self._since = f"{event.time_nano // 10**9}.{event.time_nano % 10**9:09d}"
            log.debug("event %s for %s", event.action, event.container_id[:12])
            self._queue.add(event.container_id)
        if not self.stop.is_set():
            raise EventStreamEnded("Docker events stream closed; reconnecting")

    def enqueue_all(self) -> None:
        """Queue every running container and every container we still have services for."""
        try:
            ids = set(self._docker.running_ids())
        except DockerUnavailable as exc:
            log.warning("resync: %s", exc)
            return
        try:
            owned = self._consul.owned_services(self._settings.mapping.hostname)
            ids |= {spec.meta[META_CONTAINER] for spec in owned.values() if META_CONTAINER in spec.meta}
        except ConsulError as exc:
            log.warning("resync: %s", exc)
        for container_id in sorted(ids):
            self._queue.add(container_id)

    def _resync_loop(self) -> None:
        period = self._settings.resync_seconds
        if period <= 0:
            return
        while not self.stop.wait(period * random.uniform(0.9, 1.1)):
            self.enqueue_all()

    def _work(self) -> None:
        retrying = self._retrying(retry_if_exception(_transient))
        while (container_id := self._queue.get()) is not None:
            try:
                retrying(self._reconciler.reconcile, container_id)
            except ConsulError as exc:
                log.error("container %s: %s", container_id[:12], exc)
            except Exception:
                log.exception("container %s: unexpected error while reconciling", container_id[:12])
            finally:
                self._queue.done(container_id)
