"""Time and concurrency as the core sees them: the system's in production, a simulation's in tests.

The controller, the reconciler and the work queue ask this object for the time, for the events and
conditions they wait on and for their threads. A deterministic simulation supplies its own: it then
decides when time passes and which waiting thread proceeds next, and replays a schedule exactly,
while the core runs the same code as in production.
"""

from __future__ import annotations

import threading
import time as system_time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol


class Event(Protocol):
    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Condition(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None, /) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool: ...
    def notify_all(self) -> None: ...


class Thread(Protocol):
    name: str

    def start(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


@dataclass(frozen=True)
class Runtime:
    """`time` is the wall clock (Docker's event times are on it); `monotonic` measures delays."""

    time: Callable[[], float] = system_time.time
    monotonic: Callable[[], float] = system_time.monotonic

    def event(self) -> Event:
        return threading.Event()

    def condition(self) -> Condition:
        return threading.Condition()

    def thread(self, target: Callable[..., object], name: str, args: tuple[Any, ...] = ()) -> Thread:
        """A daemon thread, not started: the agent never waits for one longer than its stop allows."""
        return threading.Thread(target=target, name=name, args=args, daemon=True)


SYSTEM = Runtime()
