"""Mapping settings for tests: an operator's policy plus the host facts startup would settle."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from registrator.mapping import HostFacts, MappingSettings


def mapping_settings(host: str = "h", host_ip: str = "10.0.0.5", *, runs_scripts: bool = False, **policy: Any) -> MappingSettings:
    """A host whose address was detected (`--ip-from route`), as on a host started without `-ip`."""
    return MappingSettings(host=HostFacts(host, host_ip, "--ip-from route", runs_scripts), **policy)


def with_ip(settings: MappingSettings, ip: str) -> MappingSettings:
    """The same settings on an agent started with `-ip`."""
    return replace(settings, host=replace(settings.host, ip=ip, ip_source="-ip"))


def with_scripts(settings: MappingSettings, runs: bool) -> MappingSettings:
    """The same settings with a Consul agent that does (or does not) run script checks."""
    return replace(settings, host=replace(settings.host, runs_scripts=runs))
