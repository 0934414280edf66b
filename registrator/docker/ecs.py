"""The ECS edge: the awsvpc task address of a container, from the ECS agent's introspection API.

awsvpc tasks run in a "pause" container's network namespace that CNI set up, so Docker knows no
address for them; the ECS agent does (`GET /v1/tasks?dockerid=…`, `Containers[].Networks[].IPv4Addresses`).
"""

from __future__ import annotations

from typing import Any

import requests

DEFAULT_URL = "http://localhost:51678"


class EcsError(Exception):
    pass


class EcsAgent:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 2.0) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()

    def task_ip(self, container_id: str) -> str:
        """The IPv4 address of the container's awsvpc task, or "" when the agent reports none."""
        try:
            response = self._session.get(f"{self._url}/v1/tasks", params={"dockerid": container_id}, timeout=self._timeout)
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise EcsError(f"ECS agent at {self._url}: {exc}") from exc
        return task_ip_from(body, container_id)


def task_ip_from(body: Any, container_id: str) -> str:
    """Read the address out of a task (or `{"Tasks": [...]}`) document; tolerant of missing fields."""
    tasks = body.get("Tasks") if isinstance(body, dict) and "Tasks" in body else [body]
    for task in tasks or []:
        for container in (task or {}).get("Containers") or []:
            if str(container.get("DockerId") or "") not in (container_id, container_id[:12]):
                continue
            for network in container.get("Networks") or []:
                addresses = network.get("IPv4Addresses") or []
                if addresses:
                    return str(addresses[0])
    return ""
