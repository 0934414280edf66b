"""A keyed work queue: each key waits at most once, and is never handed to two workers at once.

Events and resyncs only add container IDs; a burst for one container collapses into one reconcile,
and a key added while it is being processed is handed out again once `done` is called.

Urgent keys (a container being stopped) go before the rest, and `get(urgent_only=True)` serves
only them: a worker kept for urgent keys is never stuck behind inspects of containers that Docker
is tearing down (the engine answers those only once it is done, sometimes seconds later).
"""

from __future__ import annotations

import threading
from collections import deque


class WorkQueue:
    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._urgent: deque[str] = deque()
        self._urgent_keys: set[str] = set()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._shutdown = False
        self._cond = threading.Condition()

    def add(self, key: str, urgent: bool = False) -> None:
        with self._cond:
            if self._shutdown:
                return
            if urgent and key not in self._urgent_keys:
                self._urgent_keys.add(key)
                if key in self._order:  # already waiting: move it to the front lane
                    self._order.remove(key)
                    self._urgent.append(key)
                    self._cond.notify_all()
            if key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._enqueue(key)

    def get(self, urgent_only: bool = False) -> str | None:
        """Block for the next key, urgent ones first; None once the queue is shut down."""
        with self._cond:
            while not self._shutdown and not self._urgent and (urgent_only or not self._order):
                self._cond.wait()
            if self._shutdown:
                return None
            key = self._urgent.popleft() if self._urgent else self._order.popleft()
            self._dirty.discard(key)
            self._urgent_keys.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._shutdown:
                self._enqueue(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._order) + len(self._urgent)

    def _enqueue(self, key: str) -> None:
        (self._urgent if key in self._urgent_keys else self._order).append(key)
        self._cond.notify_all()  # an urgent-only worker must not swallow the wake-up for a plain key
