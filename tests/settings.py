"""Mapping settings for tests: an operator's policy plus the host facts startup would settle."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from registrator.config import Options
from registrator.mapping.settings import HostFacts, MappingSettings


def mapping_settings(host: str = "h", host_ip: str = "10.0.0.5", *, runs_scripts: bool = False, agent: str = "",
                     **policy: Any) -> MappingSettings:
    """A host whose address was detected (`--ip-from route`), as on a host started without `-ip`."""
    return MappingSettings(host=HostFacts(host, host_ip, "--ip-from route", runs_scripts, agent), **policy)


def with_ip(settings: MappingSettings, ip: str) -> MappingSettings:
    """The same settings on an agent started with `-ip`."""
    return replace(settings, host=replace(settings.host, ip=ip, ip_source="-ip"))


def with_scripts(settings: MappingSettings, runs: bool) -> MappingSettings:
    """The same settings with a Consul agent that does (or does not) run script checks."""
    return replace(settings, host=replace(settings.host, runs_scripts=runs))


def cli_options(argv: list[str]) -> Options:
    """What `registrator ARGV` would run with: parsed and validated exactly as the command does, up to
    the point where it would connect to Docker."""
    from cli import _options, main

    name, *rest = argv if argv[0] in main.commands else ["run", *argv]
    with main.commands[name].make_context(name, rest) as ctx:
        return _options(ctx.params.get("uri"), ctx.params)
