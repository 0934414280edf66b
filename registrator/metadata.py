"""Read a container's `SERVICE_*` environment variables and labels (registrator's metadata rules).

Pure: env first, then labels, so a label overrides an env var with the same key; the part after
`SERVICE_` is lower-cased; a key scoped to an exposed port (`SERVICE_80_NAME`) applies only to that
port and always beats the generic key (`SERVICE_NAME`).
"""

from __future__ import annotations

from collections.abc import Mapping

from registrator.model import ContainerPort, ContainerSnapshot

PREFIX = "SERVICE_"


def service_metadata(snapshot: ContainerSnapshot, port: ContainerPort) -> tuple[dict[str, str], set[str]]:
    """Metadata for one port, and the keys that came from a port-scoped entry."""
    generic: dict[str, str] = {}
    scoped: dict[str, str] = {}
    for source in (snapshot.env, snapshot.labels):
        _collect(source, port.port, generic, scoped)
    return {**generic, **scoped}, set(scoped)


def _collect(source: Mapping[str, str], port: int, generic: dict[str, str], scoped: dict[str, str]) -> None:
    for raw_key, value in source.items():
        if not raw_key.startswith(PREFIX):
            continue
        key = raw_key[len(PREFIX):].lower()
        head, sep, rest = key.partition("_")
        if head.isdigit() and sep and rest:
            if int(head) == port:
                scoped[rest] = value
        elif key:
            generic[key] = value
