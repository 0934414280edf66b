"""The multi-host fleet (tests/cluster/fleet.py), up once per module and torn down even on failure.

It needs root (namespaces, a bridge, one iptables rule) and the Consul binary; with CI=true a
missing part fails the run, elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.fleet import Fleet
from tests.integration.rig import consul_binary, mark_integration, unavailable


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_integration(Path(__file__).parent, items)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    if os.geteuid() != 0:
        unavailable("the fleet needs root: network namespaces, a bridge and an iptables rule")
    missing = [tool for tool in ("nsenter", "unshare", "ip", "iptables", "dig", "dockerd", "containerd")
               if not shutil.which(tool)]
    if missing:
        unavailable(f"the fleet needs {', '.join(missing)}")
    try:
        consul_binary()
    except RuntimeError as exc:
        unavailable(str(exc))
    rig = Fleet()
    try:
        rig.up()
        print(f"fleet up in {rig.timings['up']:.1f}s")
        yield rig
    finally:
        rig.down()
        print(f"fleet down in {rig.timings.get('down', 0):.1f}s")


@pytest.fixture
def clean(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet, with every host's containers removed after the test."""
    yield fleet
    for host in fleet.hosts.values():
        for container in host.docker.containers.list(all=True):
            container.remove(force=True)
