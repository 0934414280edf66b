"""`registrator sync --once`: one comparison of every container with Consul, as a core function."""

from __future__ import annotations

from registrator.model import Deregister, Register
from registrator.reconcile.kills import KillLog
from registrator.reconcile.sync import sync_once
from tests.fakes import FakeConsul, FakeDocker, agent_settings, web


class Shown(list[tuple[str, str]]):
    def __call__(self, label: str, op: Register | Deregister) -> None:
        self.append((label, op.spec.id if isinstance(op, Register) else op.service_id))


def world() -> tuple[FakeDocker, FakeConsul]:
    """`web` runs unregistered; Consul holds a service of this host whose container is gone."""
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["gone"] = web("gone", name="gone")
    docker.containers["web"] = web("web", name="web", host_port=8081)
    sync_once(docker, consul, agent_settings().mapping, KillLog(timeout=120), dry_run=False, show=Shown())
    del docker.containers["gone"]
    docker.containers["web"] = web("web", name="web", host_port=8082)
    return docker, consul


def test_a_dry_run_shows_every_change_and_writes_nothing():
    docker, consul = world()
    writes, shown = len(consul.writes), Shown()
    assert sync_once(docker, consul, agent_settings().mapping, KillLog(timeout=120), dry_run=True, show=shown) == 2
    assert sorted(shown) == [("gone", "h:gone:80"), ("web", "h:web:80")]
    assert len(consul.writes) == writes


def test_a_sync_writes_the_changes_it_shows_and_then_has_none():
    docker, consul = world()
    shown = Shown()
    assert sync_once(docker, consul, agent_settings().mapping, KillLog(timeout=120), dry_run=False, show=shown) == 2
    assert sorted(consul.services_) == ["h:web:80"] and consul.services_["h:web:80"].port == 8082
    assert sync_once(docker, consul, agent_settings().mapping, KillLog(timeout=120), dry_run=False, show=Shown()) == 0


def test_a_container_refused_an_id_another_released_in_the_same_pass_gets_it():
    """A container recreated under its name: "new" is looked at first and refused the ID "old" holds;
    "old" is gone, its service goes, and "new" is looked at again."""
    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["old"] = web("old", name="app", env={"SERVICE_ID": "app"})
    sync_once(docker, consul, agent_settings().mapping, KillLog(timeout=120), dry_run=False, show=Shown())
    docker.containers["new"] = web("new", name="app", env={"SERVICE_ID": "app"}, host_port=9000)
    del docker.containers["old"]
    sync_once(docker, consul, agent_settings().mapping, KillLog(timeout=120), dry_run=False, show=Shown())
    assert consul.services_["app"].port == 9000 and consul.services_["app"].meta["registrator-container"] == "new"
