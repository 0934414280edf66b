from __future__ import annotations

import threading

from registrator.workqueue import WorkQueue


def test_a_key_added_many_times_waits_once():
    queue = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    assert [queue.get(), queue.get()] == ["a", "b"]


def test_a_key_added_while_processing_is_handed_out_again_only_after_done():
    queue = WorkQueue()
    queue.add("a")
    assert queue.get() == "a"
    queue.add("a")
    assert len(queue) == 0  # never handed to a second worker at the same time
    queue.done("a")
    assert queue.get() == "a"


def test_done_without_a_new_add_does_not_requeue():
    queue = WorkQueue()
    queue.add("a")
    queue.done(queue.get() or "")
    assert len(queue) == 0


def test_shutdown_wakes_a_blocked_worker():
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(timeout=5)
    assert got == [None]
    queue.add("late")
    assert len(queue) == 0
