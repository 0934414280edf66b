"""The local view of what this host has in Consul."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from registrator.model import ServiceSpec
from registrator.reconcile.view import LocalView


def spec(service_id: str, container: str, host: str = "h") -> ServiceSpec:
    return ServiceSpec(service_id, "web", "10.0.0.5", 80,
                       meta=MappingProxyType({"registrator-host": host, "registrator-container": container}))


class Woken(set[str]):
    """The containers a view asked to look at again."""

    def __call__(self, containers: set[str]) -> None:
        self.update(containers)


def view_of(*specs: ServiceSpec) -> tuple[LocalView, Woken]:
    woken = Woken()
    view = LocalView("h", woken)
    for registered in specs:
        view.registered(registered, view.ticket())
    return view, woken


def refresh(view: LocalView, services: list[ServiceSpec], checks: dict[str, tuple[str, str]] | None = None,
            adoptable: tuple[str, ...] = ()) -> None:
    view.finish_refresh(view.begin_refresh(), services, checks or {}, adoptable)


def test_a_refresh_keeps_this_hosts_services_their_health_and_maintenance():
    view, woken = view_of()
    refresh(view, [spec("a", "c1"), spec("b", "c2", host="other"), spec("c", "c1")],
            {"service:a#docker-health": ("passing", "ok"), "_service_maintenance:c": ("critical", "stopping"),
             "service:b#docker-health": ("passing", "ok")})
    assert set(view.owned()) == {"a", "c"}
    assert view.containers() == {"c1"}
    assert view.services_of("c1") == {"a": spec("a", "c1"), "c": spec("c", "c1")}
    assert (view.mirror("a").status, view.mirror("a").output) == ("passing", "ok")  # type: ignore[union-attr]
    assert view.in_maintenance("c") and not view.in_maintenance("a")
    assert view.sentinel() == "a"
    assert woken == set()


def test_reads_are_copies():
    view, _ = view_of(spec("a", "c1"))
    view.services_of("c1").clear()
    view.owned().clear()
    assert view.owns("a") and view.services_of("c1")


def test_writes_that_finish_during_a_refresh_survive_it():
    view, _ = view_of(spec("gone", "c0"))
    refreshing = view.begin_refresh()  # Consul's answer (with "gone", without "new") is on its way
    view.registered(spec("new", "c1"), view.ticket())
    view.deregistered("gone")
    view.finish_refresh(refreshing, [spec("gone", "c0")], {})
    assert set(view.owned()) == {"new"}


def test_a_failed_refresh_stops_journalling():
    view, _ = view_of()
    refreshing = view.begin_refresh()
    view.abort_refresh(refreshing)
    view.registered(spec("a", "c1"), view.ticket())
    assert not view._journal


def test_overlapping_refreshes_each_replay_the_writes_made_while_their_answer_was_on_its_way():
    view, _ = view_of()
    first = view.begin_refresh()
    second = view.begin_refresh()
    view.registered(spec("new", "c1"), view.ticket())
    view.finish_refresh(first, [], {})
    view.finish_refresh(second, [], {})
    assert view.owns("new")
    assert not view._journal


def test_a_claim_refuses_ids_another_container_holds_and_the_release_wakes_it():
    view, woken = view_of(spec("shared", "first"))
    assert view.claim("second", ["shared", "own"]) == {"shared": "first"}
    view.end_claims("second")
    assert view.claim("first", ["shared"]) == {}
    view.end_claims("first")
    view.deregistered("shared")
    assert woken == {"second"}
    woken.clear()
    view.deregistered("shared")
    assert woken == set()  # woken once


def test_an_id_being_registered_is_reserved_until_that_reconcile_ends():
    view, woken = view_of()
    assert view.claim("a", ["shared"]) == {}
    assert view.claim("b", ["shared"]) == {"shared": "a"}
    view.end_claims("a")  # a did not register it after all (Consul refused, or a failed)
    assert woken == {"b"}


def test_a_reservation_that_became_a_registration_keeps_the_others_waiting():
    view, woken = view_of()
    view.claim("a", ["shared"])
    view.claim("b", ["shared"])
    view.registered(spec("shared", "a"), view.ticket())
    view.end_claims("a")
    assert woken == set()
    view.deregistered("shared")
    assert woken == {"b"}


def test_a_container_waiting_for_an_id_another_owner_holds_is_woken_when_a_refresh_finds_it_free():
    """Who holds an ID outside this host is Consul's answer at the write (the view's may be stale):
    the claim leaves it to that, and the answer "another owner" makes the container wait."""
    view, woken = view_of()
    theirs = ServiceSpec("db", "db", "10.0.0.9", 5432)
    refresh(view, [theirs])
    assert view.claim("c", ["db"]) == {}
    view.held_by_another_owner("db", "c")
    view.end_claims("c")
    refresh(view, [theirs])
    assert woken == set()
    refresh(view, [])
    assert woken == {"c"}


def test_a_container_that_no_longer_asks_for_an_id_is_not_woken_for_it():
    view, woken = view_of(spec("shared", "first"))
    view.claim("second", ["shared"])
    view.claim("second", ["other"])
    view.deregistered("shared")
    assert woken == set()


def test_a_refresh_that_finds_a_refused_id_free_wakes_the_container():
    view, woken = view_of(spec("shared", "first"))
    view.claim("second", ["shared"])
    refresh(view, [])
    assert woken == {"second"}


def test_a_health_status_consul_shows_otherwise_than_sent_is_unknown_and_its_container_woken():
    """A TTL ran out while Consul was unreachable: Consul shows critical, Docker still says healthy."""
    view, woken = view_of(spec("a", "c1"))
    view.mirror_intended("a", "passing", "ok")
    refresh(view, [spec("a", "c1")], {"service:a#docker-health": ("critical", "TTL expired")})
    assert view.mirror("a") is None
    assert woken == {"c1"}


def test_a_health_status_consul_shows_as_sent_keeps_its_version():
    view, woken = view_of(spec("a", "c1"))
    sent = view.mirror_intended("a", "passing", "ok")
    refresh(view, [spec("a", "c1")], {"service:a#docker-health": ("passing", "ok, as Consul cut it")})
    assert view.mirror("a") == sent and woken == set()


def test_a_health_status_recorded_before_sending_has_a_newer_version():
    view, _ = view_of(spec("a", "c1"))
    first = view.mirror_intended("a", "passing", "ok")
    second = view.mirror_intended("a", "critical", "down")
    assert second.version > first.version
    assert view.mirror("a") == second
    view.mirror_unknown("a")
    assert view.mirror("a") is None


def test_a_registration_or_deregistration_starts_the_checks_state_over():
    view, _ = view_of(spec("a", "c1"))
    view.mirror_intended("a", "passing", "ok")
    view.maintenance_set("a", True)
    view.registered(spec("a", "c1"), view.ticket())  # Consul replaces the service's checks
    assert (view.mirror("a"), view.in_maintenance("a")) == (None, False)
    view.deregistered("a")
    assert (view.mirrors(), view.containers()) == ({}, set())


def test_a_service_with_this_hosts_meta_but_no_container_is_held_for_no_container_and_wakes_none():
    """Made by hand, or by something that copied this host's Meta: no container to look at for it."""
    orphan = ServiceSpec("x", "web", "10.0.0.5", 80, meta=MappingProxyType({"registrator-host": "h"}))
    view, woken = view_of()
    refresh(view, [orphan])
    assert (view.services_of(""), view.container_of("x"), view.container_of("nope")) == ({"x": orphan}, "", "")
    assert view.remembered()["services"] == {""}
    view.mirror_intended("x", "passing", "ok")
    refresh(view, [orphan], {"service:x#docker-health": ("critical", "TTL expired")})  # Consul shows another status
    assert woken == set()
    view.deregistered("x")
    assert (view.services_of(""), view.remembered()["services"]) == ({}, set())


# ---- another agent with this host's identity ----

def by(agent: str, service_id: str = "a", container: str = "c1", host: str = "h") -> ServiceSpec:
    """A service as the agent instance `agent` wrote it."""
    return ServiceSpec(service_id, "web", "10.0.0.5", 80, meta=MappingProxyType(
        {"registrator-host": host, "registrator-container": container, "registrator-agent": agent}))


def watching(*specs: ServiceSpec) -> LocalView:
    """The view of agent instance "me", after its first look at Consul found `specs`."""
    view = LocalView("h", Woken(), agent="me")
    assert view.finish_refresh(view.begin_refresh(), specs, {}) == {}
    return view


def test_a_predecessors_services_found_at_the_first_look_are_no_other_writer():
    view = LocalView("h", Woken(), agent="me")
    assert view.finish_refresh(view.begin_refresh(), [by("before"), by("", "b")], {}) == {}
    assert view.finish_refresh(view.begin_refresh(), [by("before"), by("", "b")], {}) == {}


def test_a_service_this_agent_wrote_that_another_agent_rewrote_is_reported_with_that_writer():
    view = watching()
    view.registered(by("me"), view.ticket())
    assert view.finish_refresh(view.begin_refresh(), [by("twin")], {}) == {"a": "twin"}


def test_a_predecessors_service_that_changes_writer_is_reported():
    view = watching(by("before"))
    assert view.finish_refresh(view.begin_refresh(), [by("twin")], {}) == {"a": "twin"}


def test_a_service_of_this_host_that_appears_written_by_another_agent_is_reported():
    """Another host runs with this identity: its containers' services appear here."""
    view = watching()
    assert view.finish_refresh(view.begin_refresh(), [by("twin", "b", "c9"), by("", "c", "c8")], {}) == {"b": "twin", "c": ""}


def test_a_service_this_agent_deregistered_that_comes_back_from_another_writer_is_reported():
    view = watching(by("me"))
    view.deregistered("a")
    assert view.finish_refresh(view.begin_refresh(), [by("twin")], {}) == {"a": "twin"}


def test_this_agents_own_writes_and_unchanged_services_are_no_other_writer():
    view = watching(by("before", "old"))
    view.registered(by("me"), view.ticket())
    assert view.finish_refresh(view.begin_refresh(), [by("me"), by("before", "old")], {}) == {}


@pytest.mark.parametrize("answered", ["before the writes", "after them"])
def test_a_write_made_while_the_refresh_was_on_its_way_is_no_other_writer(answered):
    view = watching(by("before"), by("before", "b"))
    refreshing = view.begin_refresh()
    view.registered(by("me"), view.ticket())
    view.registered(by("me", "new"), view.ticket())
    view.deregistered("b")
    consul = [by("before"), by("before", "b")] if answered == "before the writes" else [by("me"), by("me", "new")]
    assert view.finish_refresh(refreshing, consul, {}) == {}


def test_a_write_that_may_not_have_been_applied_is_no_other_writer():
    view = watching(by("before"))
    view.maybe_registered(by("me"), view.ticket())
    view.maybe_registered(by("me", "new"), view.ticket())
    assert view.finish_refresh(view.begin_refresh(), [by("before")], {}) == {}


def test_a_write_that_may_not_have_been_applied_and_is_made_again_during_the_refresh_is_no_other_writer():
    view = watching(by("before"))
    view.maybe_registered(by("me"), view.ticket())
    refreshing = view.begin_refresh()
    view.registered(by("me"), view.ticket())
    assert view.finish_refresh(refreshing, [by("before")], {}) == {}


def test_another_hosts_services_are_no_other_writer_of_this_hosts():
    view = watching()
    assert view.finish_refresh(view.begin_refresh(), [by("theirs", host="h2"), ServiceSpec("x", "x", "10.0.0.9", 1)], {}) == {}


def test_an_aborted_first_look_is_no_look():
    view = LocalView("h", Woken(), agent="me")
    view.abort_refresh(view.begin_refresh())
    assert view.finish_refresh(view.begin_refresh(), [by("before")], {}) == {}
