"""The local view of what this host has in Consul."""

from __future__ import annotations

from types import MappingProxyType

from registrator.model import ServiceSpec
from registrator.reconcile.view import LocalView


def spec(service_id: str, container: str, host: str = "h") -> ServiceSpec:
    return ServiceSpec(service_id, "web", "10.0.0.5", 80,
                       meta=MappingProxyType({"registrator-host": host, "registrator-container": container}))


def test_a_refresh_keeps_this_hosts_services_their_health_and_maintenance():
    view = LocalView("h")
    view.begin_refresh()
    view.finish_refresh([spec("a", "c1"), spec("b", "c2", host="other"), spec("c", "c1")],
                        {"service:a#docker-health": ("passing", "ok"), "_service_maintenance:c": ("critical", "stopping"),
                         "service:b#docker-health": ("passing", "ok")})
    assert set(view.owned()) == {"a", "c"}
    assert view.containers() == {"c1"}
    assert view.services_of("c1") == {"a": spec("a", "c1"), "c": spec("c", "c1")}
    assert (view.mirror("a").status, view.mirror("a").output) == ("passing", "ok")  # type: ignore[union-attr]
    assert view.in_maintenance("c") and not view.in_maintenance("a")
    assert view.sentinel() == "a"


def test_reads_are_copies():
    view = LocalView("h")
    view.registered(spec("a", "c1"))
    view.services_of("c1").clear()
    view.owned().clear()
    assert view.owns("a") and view.services_of("c1")


def test_writes_that_finish_during_a_refresh_survive_it():
    view = LocalView("h")
    view.registered(spec("gone", "c0"))
    view.begin_refresh()  # Consul's answer (with "gone", without "new") is on its way
    view.registered(spec("new", "c1"))
    view.deregistered("gone")
    view.finish_refresh([spec("gone", "c0")], {})
    assert set(view.owned()) == {"new"}


def test_a_claim_refuses_ids_another_container_holds_and_the_release_wakes_it():
    view = LocalView("h")
    view.registered(spec("shared", "first"))
    assert view.claim("second", ["shared", "own"]) == {"shared": "first"}
    assert view.claim("first", ["shared"]) == {}
    assert view.deregistered("shared") == {"second"}
    assert view.deregistered("shared") == set()  # woken once


def test_a_container_that_no_longer_asks_for_an_id_is_not_woken_for_it():
    view = LocalView("h")
    view.registered(spec("shared", "first"))
    view.claim("second", ["shared"])
    view.claim("second", ["other"])
    assert view.deregistered("shared") == set()


def test_a_refresh_that_finds_a_refused_id_free_wakes_the_container():
    view = LocalView("h")
    view.registered(spec("shared", "first"))
    view.claim("second", ["shared"])
    view.begin_refresh()
    assert view.finish_refresh([], {}) == {"second"}


def test_a_health_status_recorded_before_sending_has_a_newer_version():
    view = LocalView("h")
    view.registered(spec("a", "c1"))
    first = view.mirror_intended("a", "passing", "ok")
    second = view.mirror_intended("a", "critical", "down")
    assert second.version > first.version
    assert view.mirror("a") == second
    view.mirror_unknown("a")
    assert view.mirror("a") is None


def test_a_deregistered_service_takes_its_health_and_maintenance_along():
    view = LocalView("h")
    view.registered(spec("a", "c1"))
    view.mirror_intended("a", "passing", "ok")
    view.maintenance_set("a", True)
    view.deregistered("a")
    assert (view.mirrors(), view.in_maintenance("a"), view.containers()) == ({}, False, set())
