"""The kill log: which containers are being stopped, by Docker's kill events."""

from __future__ import annotations

import signal

from registrator.reconcile.kills import KillLog, Running
from tests.fakes import web

STARTED = 1000.0


def log_with_running(stop_signal: int = signal.SIGTERM) -> KillLog:
    kills = KillLog(timeout=30)
    kills.observe(web("c", stop_signal=stop_signal, started_at=STARTED), "c")
    return kills


def test_the_first_stop_signal_is_urgent_and_the_sigkill_after_it_is_not():
    kills = log_with_running()
    assert kills.record("c", signal.SIGTERM, 2000.0)
    assert not kills.record("c", signal.SIGKILL, 2010.0)
    assert kills.first_look("c") and not kills.first_look("c")


def test_a_signal_that_is_not_the_stop_signal_is_not_recorded():
    kills = log_with_running(stop_signal=signal.SIGQUIT)
    assert not kills.record("c", signal.SIGTERM, 2000.0)
    assert not kills.pending("c")


def test_draining_until_the_timeout_then_not_stopping_after_all():
    kills = log_with_running()
    kills.record("c", signal.SIGTERM, 2000.0)
    known = kills.running("c")
    assert kills.draining("c", known, 2029.9)
    assert kills.drain_ends_in("c", 2020.0) == 10.0
    assert not kills.draining("c", known, 2030.0)
    assert not kills.pending("c")


def test_a_kill_from_before_the_last_start_does_not_drain():
    kills = log_with_running()
    kills.record("c", signal.SIGTERM, STARTED - 1)
    assert not kills.draining("c", Running("c", STARTED, signal.SIGTERM), STARTED + 1)
    assert not kills.pending("c")


def test_a_stopped_container_ends_its_stop():
    kills = log_with_running()
    kills.record("c", signal.SIGTERM, 2000.0)
    kills.observe(None, "c")
    assert not kills.pending("c") and kills.running("c") is None and not kills.first_look("c")


def test_a_drain_past_its_timeout_is_looked_at_again_at_once():
    kills = log_with_running()
    kills.record("c", signal.SIGTERM, 2000.0)
    assert [kills.drain_ends_in("c", now) for now in (2029.5, 2030.0, 2031.0)] == [0.5, 0.0, 0.0]


def test_a_usual_stop_lasts_less_than_the_timeout():
    kills = KillLog(timeout=30)
    kills.record("new", signal.SIGTERM, 2000.0)
    assert [kills.usual_stop("new", now) for now in (2029.9, 2030.0)] == [True, False]


def test_a_kill_at_the_instant_the_container_started_is_a_stop_of_that_run():
    kills = log_with_running()
    kills.record("c", signal.SIGTERM, STARTED)
    assert kills.draining("c", kills.running("c"), STARTED + 1)


def test_a_container_no_longer_running_ends_its_stop():
    kills = log_with_running()
    kills.record("c", signal.SIGTERM, 2000.0)
    assert not kills.draining("c", None, 2001.0)
    assert (kills.pending("c"), kills.remembered()) == (False, {"kills": set(), "unseen": set(), "running": set()})


def test_a_resync_forgets_what_was_observed_before_its_listing_and_keeps_what_came_after():
    kills = log_with_running()
    mark = kills.mark()
    kills.observe(web("d", started_at=STARTED), "d")  # started while the listing was on its way
    kills.forget_except(set(), mark)
    assert kills.remembered()["running"] == {"d"}
