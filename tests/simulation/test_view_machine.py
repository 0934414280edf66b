"""The local view's refreshes, explored by Hypothesis: this host's writes land in Consul and then in
the view, while refreshes begin, read Consul's answer and finish (or fail) in any order, any number
at once. Whenever no refresh is under way, the view holds exactly this host's services in Consul.
Two refreshes never overlap in the agent today (one background worker runs them); the view must not
depend on that."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from registrator.model import ServiceSpec
from registrator.reconcile.view import LocalView

IDS = st.sampled_from(["a", "b", "c"])


def spec(service_id: str, port: int) -> ServiceSpec:
    return ServiceSpec(service_id, "web", "10.0.0.5", port,
                       meta=MappingProxyType({"registrator-host": "h", "registrator-container": "c1"}))


class RefreshesBesideWrites(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.consul: dict[str, ServiceSpec] = {}
        self.view = LocalView("h", lambda _: None)
        self.asking: list[int] = []  # refreshes whose request is on its way
        self.answered: list[tuple[int, list[ServiceSpec]]] = []  # and those whose answer is on its way back

    @rule(service_id=IDS, port=st.integers(1, 3))
    def register(self, service_id: str, port: int) -> None:
        self.consul[service_id] = spec(service_id, port)
        self.view.registered(self.consul[service_id], self.view.ticket())

    @rule(service_id=IDS)
    def deregister(self, service_id: str) -> None:
        self.consul.pop(service_id, None)
        self.view.deregistered(service_id)

    @rule()
    def begin(self) -> None:
        self.asking.append(self.view.begin_refresh())

    @rule(data=st.data())
    def consul_answers(self, data: st.DataObject) -> None:
        if self.asking:
            refresh = self.asking.pop(data.draw(st.integers(0, len(self.asking) - 1)))
            self.answered.append((refresh, list(self.consul.values())))

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        if self.answered:
            refresh, services = self.answered.pop(data.draw(st.integers(0, len(self.answered) - 1)))
            self.view.finish_refresh(refresh, services, {})

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        if self.asking:
            self.view.abort_refresh(self.asking.pop(data.draw(st.integers(0, len(self.asking) - 1))))

    @invariant()
    def the_view_holds_what_consul_holds_once_no_refresh_is_under_way(self) -> None:
        if not self.asking and not self.answered:
            assert self.view.owned() == self.consul


TestRefreshesBesideWrites = RefreshesBesideWrites.TestCase
TestRefreshesBesideWrites.settings = settings(max_examples=500, stateful_step_count=30, deadline=None, derandomize=True)
