from __future__ import annotations

import threading

from tenacity import wait_exponential, wait_fixed

from registrator.reconcile.queue import WorkQueue
from tests.fakes import Clock, joined, manual


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
    worker = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    worker.start()
    queue.shutdown()
    joined(worker)
    assert got == [None]
    queue.add("late")
    assert len(queue) == 0


def test_urgent_keys_go_first_and_a_waiting_key_made_urgent_moves_up():
    queue = WorkQueue()
    for key in ("a", "b", "c"):
        queue.add(key)
    queue.add("d", urgent=True)
    queue.add("c", urgent=True)
    assert [queue.get() for _ in range(4)] == ["d", "c", "a", "b"]


def test_an_urgent_only_worker_waits_for_urgent_keys_and_leaves_the_rest():
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(urgent_only=True)), daemon=True)
    worker.start()
    queue.add("plain")
    worker.join(timeout=0.1)  # a worker that took it would have, by now
    assert worker.is_alive() and got == []
    queue.add("stopping", urgent=True)
    joined(worker)
    assert got == ["stopping"]
    assert queue.get() == "plain"


def test_a_key_made_urgent_while_processing_comes_back_urgent():
    queue = WorkQueue()
    queue.add("a")
    queue.add("b")
    assert queue.get() == "a"
    queue.add("a", urgent=True)
    queue.done("a")
    assert queue.get(urgent_only=True) == "a"


def test_a_failed_key_comes_back_after_its_backoff_which_grows_until_forgotten():
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_exponential(multiplier=1, max=60), runtime=manual(clock))
    assert [queue.retry("a"), queue.retry("a"), queue.retry("a")] == [1, 2, 4]
    assert len(queue) == 0
    clock.now = 1
    assert queue.get() == "a"
    queue.forget("a")
    assert queue.retry("a") == 1


def test_an_add_does_not_wait_for_a_pending_retry():
    queue = WorkQueue(backoff=wait_exponential(multiplier=1), runtime=manual(Clock(0.0)))
    queue.retry("a")
    queue.add("a")
    assert queue.get() == "a"


def test_a_delayed_key_comes_back_as_a_plain_key_behind_urgent_ones():
    clock = Clock(0.0)
    queue = WorkQueue(runtime=manual(clock))
    queue.add_after("a", 5)
    queue.add("urgent", urgent=True)
    clock.now = 10
    assert queue.get(urgent_only=True) == "urgent"
    assert queue.get() == "a"


def test_shutdown_drops_delayed_keys():
    clock = Clock(0.0)
    queue = WorkQueue(runtime=manual(clock))
    queue.add_after("a", 1)
    queue.shutdown()
    clock.now = 5
    assert len(queue) == 0 and queue.get() is None


def test_retries_brought_forward_are_due_at_once_but_timers_are_not():
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_exponential(multiplier=1, max=60), runtime=manual(clock))
    queue.retry("a")
    queue.retry("b")
    queue.add_after("drain", 100)  # a drain's own timer is not a retry
    assert queue.retry_all_now() == 2
    assert sorted([queue.get() or "", queue.get() or ""]) == ["a", "b"]
    assert len(queue) == 0
    clock.now = 100
    assert queue.get() == "drain"


def test_a_retry_brought_forward_keeps_its_backoff_until_the_key_succeeds():
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_exponential(multiplier=1, max=60), runtime=manual(clock))
    assert [queue.retry("a"), queue.retry("a")] == [1, 2]
    queue.retry_all_now()
    queue.done(queue.get() or "")
    assert queue.retry("a") == 4  # it failed again: it waits longer
    queue.forget("a")
    assert queue.retry("a") == 1


def test_a_key_added_while_it_waits_for_its_retry_has_one_entry_in_the_queue():
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_exponential(multiplier=1, max=60), runtime=manual(clock))
    queue.retry("a")
    queue.add("a")  # an event: looked at now, its retry is moot
    assert queue.waiting() == ["a"]
    queue.done(queue.get() or "")
    queue.retry("a")  # it failed again
    assert queue.waiting() == ["a"]


def test_a_key_that_keeps_failing_is_retried_once_per_backoff_however_often_events_came_while_it_waited():
    """During an outage, every event for a waiting key used to start one more chain of retries."""
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_fixed(60), runtime=manual(clock))

    def fail_what_is_due() -> int:
        handed = 0
        while len(queue):
            key = queue.get() or ""
            queue.retry(key)
            queue.done(key)
            handed += 1
        return handed

    queue.add("a")
    fail_what_is_due()
    for _ in range(5):  # events (health_status, resyncs, ...) while it waits
        clock.now += 1
        queue.add("a")
        fail_what_is_due()
    handed = 0
    for _ in range(600):  # the next ten minutes, second by second
        clock.now += 1
        handed += fail_what_is_due()
    assert handed == 10


def test_a_timer_brought_forward_many_times_gives_its_key_once_when_the_last_is_due():
    clock = Clock(0.0)
    queue = WorkQueue(runtime=manual(clock))
    for key in ("a", "b"):
        for delay in range(100, 60, -1):  # each timer replaces the one before it: their heap entries are stale
            queue.add_after(key, delay)
    clock.advance(60)
    assert len(queue) == 0
    clock.advance(1)
    assert len(queue) == 2 and [queue.get(), queue.get()] == ["a", "b"]
    clock.advance(100)
    assert len(queue) == 0 and queue.remembered()["timers"] == set()


def test_a_worker_blocked_on_an_empty_queue_takes_a_delayed_key_when_it_is_due():
    queue = WorkQueue()
    got: list[str | None] = []
    queue.add_after("later", 0.05)
    worker = threading.Thread(target=lambda: got.append(queue.get()), daemon=True)
    worker.start()
    joined(worker)
    assert got == ["later"]


def test_keys_due_or_brought_forward_are_plain_and_an_urgent_key_handed_out_is_no_longer_urgent():
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_fixed(5), runtime=manual(clock))
    queue.add_after("due", 1)
    queue.retry("failed")
    queue.add("urgent", urgent=True)
    clock.advance(1)
    queue.retry_all_now()
    assert len(queue) == 3 and queue.remembered()["urgent"] == {"urgent"}
    assert queue.get() == "urgent" and queue.remembered()["urgent"] == set()


def test_a_key_waiting_now_gets_no_timer_and_a_shut_down_queue_none():
    queue = WorkQueue()
    queue.add("now")
    queue.add_after("now", 5)
    assert queue.waiting() == ["now"]
    queue.shutdown()
    queue.add_after("later", 5)
    assert queue.remembered()["timers"] == set()


def test_a_retry_due_with_a_drains_timer_keeps_the_drains_which_a_catch_up_does_not_bring_forward():
    clock = Clock(0.0)
    queue = WorkQueue(backoff=wait_fixed(5), runtime=manual(clock))
    queue.add_after("draining", 5)
    queue.retry("draining")  # due at the same instant
    assert queue.retry_all_now() == 0


def test_only_keys_waiting_after_a_failure_count_as_retrying():
    clock = Clock()
    queue = WorkQueue(backoff=wait_fixed(10), runtime=manual(clock))
    queue.add_after("draining", 5)  # a drain's own timer: no failure
    queue.retry("failed")
    assert queue.retrying() == 1
    clock.advance(10)
    assert queue.get() == "draining" and queue.get() == "failed"
    assert queue.retrying() == 0
