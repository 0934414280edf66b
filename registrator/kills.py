"""Which containers are being stopped: Docker's `kill` event is the only sign of a stop in progress.

ECS and `docker stop` send the container's stop signal, wait up to its stop timeout, then SIGKILL.
Taking the service out of DNS at the first signal, not at `die`, keeps clients off an instance that
is shutting down. Inspect cannot tell, so the events are remembered here (thread-safe: the event
pump writes, the worker reads).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from registrator.model import ContainerSnapshot

SIGKILL = 9


@dataclass(frozen=True, slots=True)
class Kill:
    signal: int
    at: float  # epoch seconds


class KillLog:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._kills: dict[str, Kill] = {}
        self._unseen: set[str] = set()  # stops that no reconcile has looked at yet
        self._lock = threading.Lock()

    def record(self, container_id: str, signal: int, at: float) -> None:
        with self._lock:
            if container_id not in self._kills:
                self._unseen.add(container_id)
            self._kills[container_id] = Kill(signal, at)

    def first_look(self, container_id: str) -> bool:
        """True once per stop: for the first reconcile after the container's first kill."""
        with self._lock:
            if container_id in self._unseen:
                self._unseen.discard(container_id)
                return True
            return False

    def pending(self, container_id: str) -> bool:
        """A stop signal was seen and the container has not been seen stopped yet."""
        with self._lock:
            return container_id in self._kills

    def draining(self, container_id: str, snapshot: ContainerSnapshot | None, now: float) -> bool:
        """A running container that was sent its stop signal (or SIGKILL) since its last start.

        Other signals (a SIGHUP to reload) do not count, and a container still running `timeout`
        seconds later is taken as not stopping after all.
        """
        if snapshot is None or not snapshot.running:
            with self._lock:
                self._kills.pop(container_id, None)
                self._unseen.discard(container_id)
            return False
        with self._lock:
            kill = self._kills.get(container_id)
        if kill is None or kill.at < snapshot.started_at or now - kill.at > self._timeout:
            return False
        return kill.signal in (snapshot.stop_signal, SIGKILL)
