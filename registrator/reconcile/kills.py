"""Which containers are being stopped: Docker's `kill` event is the only sign of a stop in progress.

ECS and `docker stop` send the container's stop signal, wait up to its stop timeout, then SIGKILL.
Taking the service out of DNS at the first signal, not at `die`, keeps clients off an instance that
is shutting down. Inspect cannot tell, so the events are remembered here, together with what the
last inspect said of each running container (name, start time, stop signal): enough to drain it
at the first signal without asking Docker, which answers inspects of a container being torn down
only when it is done. Only stop signals count: a SIGHUP to reload is not a stop.

Thread-safe: the event pump records, the workers read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from registrator.model import ContainerSnapshot

SIGKILL, SIGTERM = 9, 15


@dataclass(frozen=True, slots=True)
class Kill:
    signal: int
    at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class Running:
    """What a drain needs to know of a running container, from its last inspect."""

    name: str
    started_at: float
    stop_signal: int
    seen: int = 0  # when it was observed, by `mark`'s count


class KillLog:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._kills: dict[str, Kill] = {}
        self._unseen: set[str] = set()  # stops that no reconcile has looked at yet
        self._running: dict[str, Running] = {}
        self._observations = 0
        self._lock = threading.Lock()

    def record(self, container_id: str, signal: int, at: float) -> bool:
        """A `kill` event; True for the first stop signal of a stop (the one to act on at once).

        A signal that is neither the container's stop signal (as last inspected) nor SIGKILL is not
        kept. Of a container not inspected yet it is kept until its inspect tells (`draining`).
        """
        with self._lock:
            known = self._running.get(container_id)
            if known is not None and signal not in (known.stop_signal, SIGKILL):
                return False
            first = container_id not in self._kills
            if first:
                self._unseen.add(container_id)
            self._kills[container_id] = Kill(signal, at)
            return first

    def observe(self, snapshot: ContainerSnapshot | None, container_id: str) -> None:
        """Remember what an inspect said; a container that is gone or stopped ends its stop."""
        with self._lock:
            if snapshot is not None and snapshot.running:
                self._observations += 1
                self._running[container_id] = Running(snapshot.name, snapshot.started_at, snapshot.stop_signal,
                                                      self._observations)
            else:
                self._running.pop(container_id, None)
                self._end(container_id)

    def running(self, container_id: str) -> Running | None:
        with self._lock:
            return self._running.get(container_id)

    def first_look(self, container_id: str) -> bool:
        """True once per stop: for the first reconcile after the container's first stop signal."""
        with self._lock:
            if container_id in self._unseen:
                self._unseen.discard(container_id)
                return True
            return False

    def usual_stop(self, container_id: str, now: float) -> bool:
        """For a container not inspected yet: its stop began with SIGTERM or SIGKILL, the signals
        `docker stop` and ECS send unless the image says otherwise, less than `timeout` ago."""
        with self._lock:
            kill = self._kills.get(container_id)
            return kill is not None and kill.signal in (SIGTERM, SIGKILL) and now - kill.at < self._timeout

    def look_failed(self, container_id: str) -> None:
        """A look at a stopping container failed: the next one is a first look again (no inspect)."""
        with self._lock:
            if container_id in self._kills:
                self._unseen.add(container_id)

    def pending(self, container_id: str) -> bool:
        """A stop signal was seen and the container has not been seen stopped yet."""
        with self._lock:
            return container_id in self._kills

    def draining(self, container_id: str, known: Running | None, now: float) -> bool:
        """A running container that was sent its stop signal (or SIGKILL) since its last start.

        A kill that turns out not to be a stop (another signal, from before the last start, or
        `timeout` seconds old with the container still running) is dropped: the container is
        registered again and a later stop is a new one.
        """
        if known is None:
            self.observe(None, container_id)
            return False
        with self._lock:
            kill = self._kills.get(container_id)
            if kill is None:
                return False
            if kill.signal in (known.stop_signal, SIGKILL) and kill.at >= known.started_at and now - kill.at < self._timeout:
                return True
            self._end(container_id)
            return False

    def drain_ends_in(self, container_id: str, now: float) -> float | None:
        """Seconds until a drain in progress times out (when to look at the container again)."""
        with self._lock:
            kill = self._kills.get(container_id)
        return None if kill is None else max(0.0, kill.at + self._timeout - now)

    def mark(self) -> int:
        """Taken before listing the running containers, for `forget_except`."""
        with self._lock:
            return self._observations

    def forget_except(self, running: set[str], mark: int) -> None:
        """After a resync: containers not in its listing need no memory, unless they were observed
        after the listing was taken (started meanwhile)."""
        with self._lock:
            for container_id in set(self._running) - running:
                if self._running[container_id].seen <= mark:
                    del self._running[container_id]

    def remembered(self) -> dict[str, set[str]]:
        """The containers each table holds (the simulation bounds them by the live containers)."""
        with self._lock:
            return {"kills": set(self._kills), "unseen": set(self._unseen), "running": set(self._running)}

    def _end(self, container_id: str) -> None:
        self._kills.pop(container_id, None)
        self._unseen.discard(container_id)
