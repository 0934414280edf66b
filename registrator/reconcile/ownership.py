"""Who holds a service ID on the Consul agent, by what Consul answers for it now.

The agent writes a service ID only after reading, in the same pass, who holds it: this host (its
name in the ownership Meta), nobody, gliderlabs/registrator for this host (no Meta, and its
`host:container:port[:udp]` pattern with this host's name: adoptable, and removed by `-cleanup`),
or another owner, whose service it never touches. The local view says who held it at the last
refresh and write; a service another owner registered since, or one Consul lost, shows only in
Consul's answer. Ownership is read from Meta; the ID is read only for registrator's own entries,
which have no Meta.
"""

from __future__ import annotations

import re

from registrator.model import META_HOST, ServiceSpec

OURS = "this host"
FREE = "nobody"
LEGACY = "gliderlabs/registrator for this host"
FOREIGN = "a service this host does not own"


class Ownership:
    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._legacy_id = re.compile(rf"^{re.escape(hostname)}:([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?$")

    def of(self, service_id: str, found: ServiceSpec | None) -> str:
        """OURS, FREE, LEGACY or FOREIGN: who holds `service_id`, given what Consul answered for it."""
        if found is None:
            return FREE
        if found.meta.get(META_HOST) == self._hostname:
            return OURS
        return LEGACY if self.legacy_container(service_id, found) else FOREIGN

    def legacy_container(self, service_id: str, found: ServiceSpec) -> str:
        """The container name of one of gliderlabs/registrator's entries for this host; "" for any other service."""
        if META_HOST in found.meta:
            return ""
        match = self._legacy_id.match(service_id)
        return match.group(1) if match else ""
