"""A keyed work queue: each key waits at most once, and is never handed to two workers at once.

Events and resyncs only add container IDs; a burst for one container collapses into one reconcile,
and a key added while it is being processed is handed out again once `done` is called.
"""

from __future__ import annotations

import threading
from collections import deque


class WorkQueue:
    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._shutdown = False
        self._cond = threading.Condition()

    def add(self, key: str) -> None:
        with self._cond:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._order.append(key)
                self._cond.notify()

    def get(self) -> str | None:
        """Block for the next key; None once the queue is shut down."""
        with self._cond:
            while not self._order and not self._shutdown:
                self._cond.wait()
            if self._shutdown:
                return None
            key = self._order.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._shutdown:
                self._order.append(key)
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._order)
