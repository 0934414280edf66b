"""A deterministic scheduler for the core's threads: one runs at a time, and the driver decides
which waiting thread proceeds next and when simulated time passes.

Every thread the core starts through `SimRuntime.thread` is a *green* thread: a real thread that
runs only while the scheduler hands it the baton, and gives it back at a yield point — waiting on
a condition or an event, joining a thread, or calling the simulated Docker or Consul (a `Call`,
answered when the driver says so). Between yield points the core runs its production code
unchanged. Time is `Scheduler.now` and moves only in `advance`, which wakes waits whose timeout
ran out and fails calls whose transport timeout did. Nothing depends on the real clock or on which
OS thread the kernel runs first, so a seed replays the same schedule exactly.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from registrator.runtime import Runtime

EPOCH = 1_800_000_000.0  # what the wall clock reads at simulated time 0
STUCK_AFTER = 10.0  # real seconds a green thread may run between two yield points


def _baton() -> Any:
    """A lock taken at once: released by one thread to let another, blocked on it, go (a binary
    semaphore; the interpreter's own lock, several times cheaper than threading.Semaphore)."""
    lock = threading.Lock()
    lock.acquire()
    return lock


class Killed(BaseException):
    """Unwinds a green thread at teardown (not an Exception: the core must not catch it)."""


class Stuck(Exception):
    """A green thread did not come back: it blocked outside a yield point (a real lock held across a call?)."""


@dataclass(eq=False)
class Call:
    """A call into the simulated world, answered by the driver.

    `serve` runs in the scheduler's thread when the world handles the request (reads or changes its
    state); what it returns or raises is the answer, which reaches the caller when `deliver`ed. A
    call not answered by `deadline` fails with `timeout()` (its transport's timeout), whether it
    was served (applied, answer lost) or not. `ready` says whether it can be served now (an events
    stream waits for an event).
    """

    side: str
    name: str
    key: str
    serve: Callable[[], Any]
    timeout: Callable[[], Exception]
    deadline: float | None
    write: bool = False
    ready: Callable[[], bool] = lambda: True
    served: bool = False
    lost: bool = False  # served or not, the answer will not come: the caller waits for its deadline
    not_before: float = 0.0  # a slow call: the world handles it no earlier than this
    value: Any = None
    error: BaseException | None = None
    caller: Green | None = None
    seq: int = 0

    def __str__(self) -> str:
        return f"{self.side}.{self.name}({self.key})"


@dataclass(eq=False)
class Green:
    sched: Scheduler
    target: Callable[..., object]
    name: str
    args: tuple[Any, ...] = ()
    state: str = "new"  # new | ready | waiting | calling | done
    waiting_on: SimCondition | None = None
    deadline: float | None = None
    notified: bool = False
    call: Call | None = None
    killed: bool = False
    handling_since: int = 0  # the step at which it took its current key (the simulation's ownership rule)
    looked: dict[str, int] = field(default_factory=dict)  # service ID → the step its last read of it was served
    order: int = 0
    resume: Any = field(default_factory=lambda: _baton())
    done: SimCondition | None = None

    def __post_init__(self) -> None:
        self.done = SimCondition(self.sched)

    # -- the Thread protocol ----------------------------------------------------------------------

    def start(self) -> None:
        self.state = "ready"
        self.sched.started(self)
        threading.Thread(target=self._main, name=f"green-{self.name}", daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        assert self.done is not None
        with self.done:
            self.done.wait_for(lambda: self.state == "done", timeout)

    def is_alive(self) -> bool:
        return self.state not in ("new", "done")

    # -- its own thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        self.resume.acquire()
        try:
            if not self.killed:
                self.target(*self.args)
        except Killed:
            pass
        except BaseException as exc:  # noqa: BLE001 - every escape is a finding
            self.sched.crashed(self, exc)
        finally:
            self.state = "done"
            assert self.done is not None
            with self.done:
                self.done.notify_all()
            self.sched.back.release()


class SimCondition:
    """A condition whose waits are yield points and whose timeouts run on simulated time."""

    def __init__(self, sched: Scheduler) -> None:
        self._sched = sched
        self._lock = threading.Lock()
        self.waiters: list[Green] = []

    def __enter__(self) -> SimCondition:
        self._lock.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None, /) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        green = self._sched.running()
        green.state, green.waiting_on, green.notified = "waiting", self, False
        green.deadline = None if timeout is None else self._sched.now + max(0.0, timeout)
        self.waiters.append(green)
        self._lock.release()
        try:
            self._sched.park(green)
        finally:
            self._lock.acquire()
        return green.notified

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        end = None if timeout is None else self._sched.now + timeout
        result = predicate()
        while not result:
            if end is not None and self._sched.now >= end:
                break
            self.wait(None if end is None else end - self._sched.now)
            result = predicate()
        return result

    def notify_all(self) -> None:
        for green in self.waiters:
            green.state, green.waiting_on, green.deadline, green.notified = "ready", None, None, True
        self.waiters.clear()


class SimEvent:
    def __init__(self, sched: Scheduler) -> None:
        self._cond = SimCondition(sched)
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._flag, timeout)


class Scheduler:
    def __init__(self) -> None:
        self.now = 0.0
        self.greens: list[Green] = []
        self.calls: list[Call] = []  # sent and not answered yet, in the order they were made
        self.back = _baton()
        self.current: Green | None = None
        self.serving: Call | None = None  # the call whose request the world handles now
        self.steps = 0
        self.crashes: list[tuple[str, BaseException]] = []
        self._sequence = itertools.count(1)

    def runtime(self) -> Runtime:
        return SimRuntime(self)

    # -- the green side ---------------------------------------------------------------------------

    def running(self) -> Green:
        if self.current is None:
            raise RuntimeError("a wait outside a green thread")
        return self.current

    def park(self, green: Green) -> None:
        """Give the baton back; returns when the scheduler runs this thread again."""
        self.back.release()
        green.resume.acquire()
        if green.killed:
            raise Killed()

    def call(self, call: Call) -> Any:
        green = self.running()
        call.caller, call.seq = green, next(self._sequence)
        self.calls.append(call)
        green.state, green.call = "calling", call
        self.park(green)
        if call.error is not None:
            raise call.error
        return call.value

    def started(self, green: Green) -> None:
        green.order = next(self._sequence)
        self.greens.append(green)

    def crashed(self, green: Green, exc: BaseException) -> None:
        self.crashes.append((green.name, exc))

    # -- the driver's side ------------------------------------------------------------------------

    def ready(self) -> list[Green]:
        return [g for g in self.greens if g.state == "ready"]

    def run(self, green: Green) -> None:
        """Let a ready green thread run until its next yield point."""
        self.steps += 1
        green.state, self.current = "running", green
        green.resume.release()
        if not self.back.acquire(timeout=STUCK_AFTER):
            raise Stuck(f"{green.name} did not reach a yield point within {STUCK_AFTER}s")
        self.current = None

    def serve(self, call: Call) -> None:
        """The world handles the request now; the answer waits to be delivered."""
        self.steps += 1
        self.serving = call
        try:
            call.value = call.serve()
        except Exception as exc:  # noqa: BLE001 - the world's refusals are answers
            call.error = exc
        finally:
            self.serving = None
        call.served = True

    def answer(self, call: Call, error: BaseException | None = None) -> None:
        """The caller gets its answer (or `error`, for a call that failed before it was served)."""
        self.steps += 1
        if error is not None:
            call.error = error
        self.calls.remove(call)
        assert call.caller is not None
        call.caller.state, call.caller.call = "ready", None

    def next_deadline(self) -> float | None:
        times = [g.deadline for g in self.greens if g.state == "waiting" and g.deadline is not None]
        times += [c.deadline for c in self.calls if c.deadline is not None]
        times += [c.not_before for c in self.calls if not c.served and c.not_before > self.now]
        return min(times, default=None)

    def advance(self, seconds: float) -> None:
        """Time passes: waits whose timeout ran out wake, calls whose deadline passed time out."""
        self.now += seconds
        for green in self.greens:
            if green.state == "waiting" and green.deadline is not None and green.deadline <= self.now:
                assert green.waiting_on is not None
                green.waiting_on.waiters.remove(green)
                green.state, green.waiting_on, green.deadline = "ready", None, None
        for call in [c for c in self.calls if c.deadline is not None and c.deadline <= self.now]:
            self.answer(call, call.timeout())

    def teardown(self) -> None:
        """Unwind every green thread still alive (their OS threads end)."""
        for _ in range(100):
            alive = [g for g in self.greens if g.state not in ("done", "new")]
            if not alive:
                return
            for green in alive:
                green.killed = True
                if green.waiting_on is not None and green in green.waiting_on.waiters:
                    green.waiting_on.waiters.remove(green)
                if green.call is not None and green.call in self.calls:
                    self.calls.remove(green.call)
                self.run(green)
        raise Stuck("green threads kept running after teardown")


class SimRuntime(Runtime):
    def __init__(self, sched: Scheduler) -> None:
        super().__init__(time=lambda: EPOCH + sched.now, monotonic=lambda: sched.now)
        object.__setattr__(self, "_sched", sched)

    def event(self) -> SimEvent:
        return SimEvent(self._sched)

    def condition(self) -> SimCondition:
        return SimCondition(self._sched)

    def thread(self, target: Callable[..., object], name: str, args: tuple[Any, ...] = ()) -> Green:
        return Green(self._sched, target, name, args)
