"""Turn raw `docker inspect` JSON into a ContainerSnapshot, in one place and without I/O.

Docker's JSON has many optional and nullable fields; every lookup here tolerates them so that
no container can crash the agent with an unusual inspect document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from registrator.model import ContainerPort, ContainerSnapshot, NetworkAttachment, PortBinding


def snapshot_from_inspect(attrs: Mapping[str, Any]) -> ContainerSnapshot:
    config = attrs.get("Config") or {}
    network = attrs.get("NetworkSettings") or {}
    state = attrs.get("State") or {}
    return ContainerSnapshot(
        id=attrs["Id"],
        name=(attrs.get("Name") or "").lstrip("/"),
        image=config.get("Image") or "",
        running=bool(state.get("Running")) and not bool(state.get("Restarting")),
        paused=bool(state.get("Paused")),
        exit_code=_int(state.get("ExitCode")),
        network_mode=str((attrs.get("HostConfig") or {}).get("NetworkMode") or "default"),
        ip=str(network.get("IPAddress") or ""),
        ipv6=str(network.get("GlobalIPv6Address") or ""),
        networks=_parse_networks(network.get("Networks") or {}),
        env=MappingProxyType(_parse_env(config.get("Env") or [])),
        labels=MappingProxyType({str(k): str(v) for k, v in (config.get("Labels") or {}).items()}),
        ports=_parse_ports(config.get("ExposedPorts") or {}, network.get("Ports") or {}),
        has_healthcheck=_has_healthcheck(config.get("Healthcheck")),
        health=str((state.get("Health") or {}).get("Status") or ""),
        health_output=_last_probe_output(state.get("Health") or {}),
        attrs=MappingProxyType(dict(attrs)),
    )


def shared_network(snapshot: ContainerSnapshot, owner: ContainerSnapshot) -> ContainerSnapshot:
    """A `container:<owner>` container seen through its owner's network: the owner's addresses,
    and the owner's host bindings for the ports this container exposes."""
    bindings = {(p.port, p.protocol): p.bindings for p in owner.ports}
    ports = tuple(replace(p, bindings=bindings.get((p.port, p.protocol), p.bindings)) for p in snapshot.ports)
    return replace(snapshot, ip=owner.ip, ipv6=owner.ipv6, networks=owner.networks, ports=ports)


def _has_healthcheck(healthcheck: Any) -> bool:
    """Docker stores `Test: ["NONE"]` for a HEALTHCHECK that was switched off."""
    test = healthcheck.get("Test") if isinstance(healthcheck, Mapping) else None
    return isinstance(test, list) and bool(test) and test[0] != "NONE"


def _last_probe_output(health: Mapping[str, Any]) -> str:
    """The last probe's output, cut to Consul's default check output limit (4 KiB)."""
    log = health.get("Log") or []
    last = log[-1] if log and isinstance(log[-1], Mapping) else {}
    return str(last.get("Output") or "").strip()[:4096]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _parse_networks(networks: Mapping[str, Any]) -> tuple[NetworkAttachment, ...]:
    """Attachments sorted by network name, so that "the first network" is a stable choice."""
    return tuple(
        NetworkAttachment(
            name=str(name), ip=str(net.get("IPAddress") or ""), ipv6=str(net.get("GlobalIPv6Address") or "")
        )
        for name, net in sorted(networks.items())
        if isinstance(net, Mapping)
    )


def _parse_env(entries: list[str]) -> dict[str, str]:
    """`KEY=value` strings to a dict; later entries win and entries without `=` are ignored."""
    env: dict[str, str] = {}
    for entry in entries:
        key, sep, value = str(entry).partition("=")
        if sep:
            env[key] = value
    return env


def _parse_ports(exposed: Mapping[str, Any], published: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    """Every exposed port with all its host bindings, sorted so the result never depends on dict order."""
    ports: dict[tuple[int, str], tuple[PortBinding, ...]] = {}
    for key in list(exposed) + list(published):
        parsed = _parse_port_key(key)
        if parsed is not None:
            ports.setdefault(parsed, ())
    for key, bindings in published.items():
        parsed = _parse_port_key(key)
        if parsed is not None and bindings:
            ports[parsed] = tuple(b for b in map(_parse_binding, bindings) if b is not None)
    return tuple(
        ContainerPort(port=port, protocol=proto, bindings=bindings)
        for (port, proto), bindings in sorted(ports.items())
    )


def _parse_port_key(key: str) -> tuple[int, str] | None:
    number, _, proto = str(key).partition("/")
    if not number.isdigit():
        return None
    return int(number), (proto or "tcp").lower()


def _parse_binding(binding: Any) -> PortBinding | None:
    if not isinstance(binding, Mapping):
        return None
    host_port = str(binding.get("HostPort") or "")
    if not host_port.isdigit():
        return None
    return PortBinding(host_ip=str(binding.get("HostIp") or ""), host_port=int(host_port))
