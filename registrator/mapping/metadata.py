"""Read a container's `SERVICE_*` environment variables and labels (registrator's metadata rules).

Pure. Environment first, then labels, so a label overrides an env var with the same key. The part
after `SERVICE_` is lower-cased. Scopes, most specific first:

* `SERVICE_<port>_<tcp|udp|sctp>_<KEY>`: one port and protocol (registrator#244),
* `SERVICE_<port>_<KEY>`: both protocols of one exposed port,
* `SERVICE_<KEY>`: every port.

A more specific scope always beats a less specific one, whichever source it came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from registrator.model import ContainerPort, ContainerSnapshot

PREFIX = "SERVICE_"
PROTOCOLS = ("tcp", "udp", "sctp")
TRUE_VALUES = {"1", "true", "yes", "on", "y", "t"}


def truthy(value: str) -> bool:
    """Only these values switch a setting on (registrator took any non-empty value)."""
    return value.strip().lower() in TRUE_VALUES


@dataclass(frozen=True, slots=True)
class Entry:
    """One metadata value and the variable or label it came from, for messages."""

    value: str
    source: str


@dataclass(frozen=True, slots=True)
class PortMetadata:
    """The merged metadata that applies to one port, and the scope each key came from."""

    entries: Mapping[str, Entry]
    port_scoped: frozenset[str] = frozenset()
    protocol_scoped: frozenset[str] = frozenset()

    def get(self, key: str, default: str = "") -> str:
        entry = self.entries.get(key)
        return entry.value if entry else default


@dataclass(slots=True)
class ContainerMetadata:
    generic: dict[str, Entry] = field(default_factory=dict)
    by_port: dict[int, dict[str, Entry]] = field(default_factory=dict)
    by_protocol: dict[tuple[int, str], dict[str, Entry]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def for_port(self, port: ContainerPort) -> PortMetadata:
        port_keys = self.by_port.get(port.port, {})
        protocol_keys = self.by_protocol.get((port.port, port.protocol), {})
        return PortMetadata(
            entries={**self.generic, **port_keys, **protocol_keys},
            port_scoped=frozenset(port_keys) | frozenset(protocol_keys),
            protocol_scoped=frozenset(protocol_keys),
        )

    def scoped_ports(self) -> set[int]:
        return set(self.by_port) | {port for port, _ in self.by_protocol}


def container_metadata(snapshot: ContainerSnapshot) -> ContainerMetadata:
    metadata = ContainerMetadata()
    for kind, source in (("env", snapshot.env), ("label", snapshot.labels)):
        for raw_key, value in source.items():
            if raw_key.startswith(PREFIX):
                _add(metadata, raw_key, Entry(value, f"{kind} {raw_key}"))
    return metadata


def _add(metadata: ContainerMetadata, raw_key: str, entry: Entry) -> None:
    key = raw_key[len(PREFIX):].lower()
    head, _, rest = key.partition("_")
    if not key:
        metadata.warnings.append(f"{entry.source}: empty key after SERVICE_; ignored")
    elif not "0" <= head[:1] <= "9" or not rest:
        metadata.generic[key] = entry
    elif not re.fullmatch("[0-9]{1,5}", head) or not 0 < int(head) < 65536:
        metadata.warnings.append(f"{entry.source}: {head!r} is not a port number; ignored")
    else:
        protocol, _, protocol_rest = rest.partition("_")
        if protocol in PROTOCOLS and protocol_rest:
            metadata.by_protocol.setdefault((int(head), protocol), {})[protocol_rest] = entry
        else:
            metadata.by_port.setdefault(int(head), {})[rest] = entry
