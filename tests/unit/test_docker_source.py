from __future__ import annotations

import pytest

from registrator.docker.source import ContainerEvent, container_event


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"Type": "container", "Action": "start", "Actor": {"ID": "c1"}, "timeNano": 5},
         ContainerEvent("c1", "start", 5)),
        ({"Type": "container", "Action": "health_status: healthy", "Actor": {"ID": "c1"}},
         ContainerEvent("c1", "health_status: healthy", 0)),
        ({"Type": "network", "Action": "connect", "Actor": {"ID": "n1", "Attributes": {"container": "c2"}}, "timeNano": 7},
         ContainerEvent("c2", "connect", 7)),
        ({"Type": "container", "Action": "exec_start: wget", "Actor": {"ID": "c1"}}, None),
        ({"Type": "network", "Action": "create", "Actor": {"ID": "n1", "Attributes": {}}}, None),
        ({}, None),
    ],
    ids=["start", "health", "network-connect", "exec-noise", "network-without-container", "empty"],
)
def test_events_point_at_a_container(raw, expected):
    assert container_event(raw) == expected
