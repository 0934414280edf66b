from __future__ import annotations

import pytest

from registrator.docker.ecs import task_ip_from

TASK = {"Arn": "arn", "Containers": [
    {"DockerId": "other", "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.0.1"]}]},
    {"DockerId": "abc123abc123ffff", "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.0.9"]}]},
]}


@pytest.mark.parametrize(
    ("body", "container_id", "ip"),
    [(TASK, "abc123abc123ffff", "10.0.0.9"), ({"Tasks": [TASK]}, "abc123abc123ffff", "10.0.0.9"),
     ({"Containers": [{"DockerId": "abc123abc123", "Networks": [{"IPv4Addresses": ["10.0.0.2"]}]}]}, "abc123abc123ffff",
      "10.0.0.2"),
     (TASK, "missing", ""), ({}, "x", ""), ({"Containers": [{"DockerId": "x", "Networks": None}]}, "x", "")],
    ids=["task", "task-list", "short-id", "unknown", "empty", "bridge-task"],
)
def test_task_ip(body, container_id, ip):
    assert task_ip_from(body, container_id) == ip
