"""A keyed work queue: each key waits at most once, and is never handed to two workers at once.

Events and resyncs only add container IDs; a burst for one container collapses into one reconcile,
and a key added while it is being processed is handed out again once `done` is called.

Urgent keys (a container being stopped) go before the rest, and `get(urgent_only=True)` serves
only them: a worker kept for urgent keys is never stuck behind inspects of containers that Docker
is tearing down (the engine answers those only once it is done, sometimes seconds later).

A key whose handling failed is not retried by the worker: `retry` puts it back after a per-key
backoff (tenacity's wait policy, by how often that key failed in a row) and `forget` resets it on
success, so one container that keeps failing never ties up a worker or delays the others. When
the failures had one cause that is gone (Consul lost quorum, then got it back), `retry_all_now`
hands every waiting retry out at once. It does not reset a key's backoff: a success does
(`forget`), a key that fails again waits longer.

A key waits for one timer at most (a retry, or a drain's own timer: the one due first), and a key
that is added (an event) or about to be handed out again needs none: however many events come
for a key that keeps failing, it is tried once per backoff, not once more per event.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState, wait_random_exponential
from tenacity.wait import wait_base

from registrator.runtime import SYSTEM, Runtime

DEFAULT_BACKOFF = wait_random_exponential(multiplier=0.25, max=60)


@dataclass(frozen=True, slots=True)
class _Timer:
    due: float
    sequence: int  # tie-breaker, and which heap entry is the live one
    retry: bool  # a retry after a failure (brought forward by `retry_*_now`), not a drain's own timer


class WorkQueue:
    def __init__(self, backoff: wait_base = DEFAULT_BACKOFF, runtime: Runtime = SYSTEM) -> None:
        self._backoff = backoff
        self._clock = runtime.monotonic
        self._order: deque[str] = deque()
        self._urgent: deque[str] = deque()
        self._urgent_keys: set[str] = set()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, _Timer] = {}  # a key waits for one timer at most: the one due first
        self._heap: list[tuple[float, int, str]] = []  # (due, sequence, key); entries of replaced timers are skipped
        self._sequence = itertools.count()
        self._shutdown = False
        self._cond = runtime.condition()

    def add(self, key: str, urgent: bool = False) -> None:
        with self._cond:
            self._add(key, urgent)

    def add_after(self, key: str, delay: float) -> None:
        """Add `key` once `delay` seconds have passed (a drain that may time out)."""
        with self._cond:
            self._later_add(key, delay, retry=False)

    def retry(self, key: str) -> float:
        """Put a key back after its backoff, which grows with each failure in a row; returns the delay."""
        with self._cond:
            self._failures[key] = attempt = self._failures.get(key, 0) + 1
            delay = self._backoff(_attempt(attempt))
            self._later_add(key, delay, retry=True)
        return delay

    def retry_all_now(self) -> int:
        """Every waiting retry is due now; returns how many keys that was."""
        with self._cond:
            keys = self._take_retries(lambda key: True)
            for key in keys:
                self._add(key, urgent=False)
            return len(keys)

    def forget(self, key: str) -> None:
        """The key was handled: its next failure starts from the shortest backoff again."""
        with self._cond:
            self._failures.pop(key, None)

    def retrying(self) -> int:
        """Keys waiting for a retry after a failure."""
        with self._cond:
            return sum(1 for timer in self._timers.values() if timer.retry)

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, urgent_only: bool = False) -> str | None:
        """Block for the next key, urgent ones first; None once the queue is shut down."""
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                self._promote_due()
                if self._urgent or (not urgent_only and self._order):
                    break
                self._cond.wait(timeout=self._heap[0][0] - self._clock() if self._heap and not urgent_only else None)
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
            self._timers.clear()
            self._heap.clear()
            self._cond.notify_all()

    def has(self, key: str) -> bool:
        """Whether the key is waiting (now or for a timer) or being processed."""
        with self._cond:
            return key in self._dirty or key in self._processing or key in self._timers

    def processing(self) -> set[str]:
        """The keys a worker has now."""
        with self._cond:
            return set(self._processing)

    def waiting(self) -> list[str]:
        """Every entry a key has in the queue (ready, urgent or timed), for the simulation's "a key
        waits at most once" invariant; a key being processed is not waiting."""
        with self._cond:
            return [*self._order, *self._urgent, *self._timers]

    def remembered(self) -> dict[str, set[str]]:
        """The keys each of the queue's tables holds (the simulation bounds them by the live containers)."""
        with self._cond:
            return {"failures": set(self._failures), "urgent": set(self._urgent_keys), "dirty": set(self._dirty),
                    "processing": set(self._processing), "timers": set(self._timers)}

    def __len__(self) -> int:
        """Keys waiting now, those whose delay ran out included (not those being processed)."""
        with self._cond:
            self._promote_due()
            return len(self._order) + len(self._urgent)

    def _add(self, key: str, urgent: bool) -> None:
        """The key is looked at now (or once its processing ends): a timer it waited for is moot."""
        if self._shutdown:
            return
        self._timers.pop(key, None)
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

    def _later_add(self, key: str, delay: float, retry: bool) -> None:
        """A key about to be looked at needs no timer; one that waits keeps the timer due first."""
        if self._shutdown or key in self._dirty:
            return
        due = self._clock() + delay
        current = self._timers.get(key)
        if current is not None and current.due <= due:
            return
        timer = _Timer(due, next(self._sequence), retry)
        self._timers[key] = timer
        heapq.heappush(self._heap, (due, timer.sequence, key))
        self._cond.notify_all()  # a waiting worker may have to wake earlier now

    def _take_retries(self, which: Callable[[str], bool]) -> list[str]:
        """Remove the waiting retries `which` selects; returns their keys, the one due first first."""
        taken = sorted((timer.due, timer.sequence, key) for key, timer in self._timers.items() if timer.retry and which(key))
        for _, _, key in taken:
            del self._timers[key]
        return [key for _, _, key in taken]

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, sequence, key = heapq.heappop(self._heap)
            timer = self._timers.get(key)
            if timer is not None and timer.sequence == sequence:
                self._add(key, urgent=False)
        if len(self._heap) > 2 * len(self._timers) + 16:  # replaced timers' entries: drop them before they pile up
            self._heap = [entry for entry in self._heap if (t := self._timers.get(entry[2])) is not None
                          and t.sequence == entry[1]]
            heapq.heapify(self._heap)

    def _enqueue(self, key: str) -> None:
        (self._urgent if key in self._urgent_keys else self._order).append(key)
        self._cond.notify_all()  # an urgent-only worker must not swallow the wake-up for a plain key


def _attempt(number: int) -> RetryCallState:
    """tenacity's wait policies read the attempt number from a call state."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = number
    return state
