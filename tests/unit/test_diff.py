from __future__ import annotations

from dataclasses import replace

from registrator.model import Deregister, Register, ServiceSpec
from registrator.reconcile.diff import plan

WEB = ServiceSpec(id="h:web:80", name="web", address="10.0.0.5", port=32768, tags=("a",), meta={"k": "v"})
API = ServiceSpec(id="h:api:90", name="api", address="10.0.0.5", port=32769)


def test_equal_states_need_no_writes():
    assert plan({WEB.id: WEB, API.id: API}, {WEB.id: replace(WEB), API.id: replace(API)}) == []


def test_missing_service_is_registered():
    assert plan({WEB.id: WEB}, {}) == [Register(WEB)]


def test_changed_service_is_registered_again():
    for changed in (replace(WEB, port=1), replace(WEB, address="x"), replace(WEB, tags=()), replace(WEB, meta={"k": "w"}),
                    replace(WEB, name="n")):
        assert plan({WEB.id: WEB}, {WEB.id: changed}) == [Register(WEB)]


def test_service_no_longer_desired_is_deregistered():
    assert plan({}, {WEB.id: WEB, API.id: API}) == [Deregister(API.id), Deregister(WEB.id)]


def test_an_unsure_service_is_registered_again_if_wanted_and_deregistered_if_not():
    """Its last write failed after Consul may have applied it."""
    assert plan({WEB.id: WEB}, {WEB.id: replace(WEB), API.id: API}, unsure={WEB.id, API.id}) == [Register(WEB),
                                                                                                 Deregister(API.id)]


def test_which_agent_instance_wrote_a_service_is_no_difference():
    """A restarted agent finds its predecessor's instance on every service: rewriting them all for
    that would make every restart a burst of writes."""
    ours = replace(WEB, meta={"k": "v", "registrator-agent": "node-1:7:aa"})
    predecessors = replace(WEB, meta={"k": "v", "registrator-agent": "node-1:6:bb"})
    assert plan({WEB.id: ours}, {WEB.id: predecessors}) == []
    assert plan({WEB.id: ours}, {WEB.id: WEB}) == []
