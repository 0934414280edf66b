"""What the retries of every layer share (all of them go through tenacity)."""

from __future__ import annotations

from collections.abc import Callable

from registrator.runtime import Event


def transient(exc: BaseException) -> bool:
    """Whether trying the same call again later can help: the edges' errors say so themselves
    (`DockerUnavailable` always, `ConsulError` per answer)."""
    return getattr(exc, "transient", False) is True


def sleeper(stop: Event) -> Callable[[float], None]:
    """tenacity's sleep, woken at once by `stop`."""
    return lambda seconds: None if stop.wait(seconds) else None
