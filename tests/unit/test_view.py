"""The local view of what this host has in Consul."""

from __future__ import annotations

from types import MappingProxyType

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
