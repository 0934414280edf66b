from __future__ import annotations

import threading
import time

from registrator.gate import Gate


def test_reconciles_hold_the_gate_together():
    gate = Gate()
    with gate.shared(), gate.shared():
        pass  # a second shared holder does not wait for the first


def test_a_resync_waits_for_reconciles_in_flight_and_later_reconciles_wait_for_it():
    gate = Gate()
    order: list[str] = []
    in_flight = threading.Event()
    release = threading.Event()

    def reconcile(name: str, ready: threading.Event | None = None) -> None:
        with gate.shared():
            if ready:
                ready.set()
                release.wait(5)
            order.append(name)

    def resync() -> None:
        with gate.exclusive():
            order.append("resync")

    first = threading.Thread(target=reconcile, args=("first", in_flight))
    first.start()
    in_flight.wait(5)
    waiting = threading.Thread(target=resync)
    waiting.start()
    time.sleep(0.05)
    late = threading.Thread(target=reconcile, args=("late",))
    late.start()
    time.sleep(0.05)
    assert order == []  # the resync waits for `first`; `late` waits behind the resync

    release.set()
    for thread in (first, waiting, late):
        thread.join(5)
    assert order == ["first", "resync", "late"]
