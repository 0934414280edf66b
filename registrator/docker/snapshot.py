"""Turn raw `docker inspect` JSON into a ContainerSnapshot, in one place and without I/O.

Docker's JSON has many optional and nullable fields; every lookup here tolerates them so that
no container can crash the agent with an unusual inspect document.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from registrator.model import ContainerPort, ContainerSnapshot, NetworkAttachment, PortBinding


def snapshot_from_inspect(attrs: Mapping[str, Any]) -> ContainerSnapshot:
    config = _mapping(attrs.get("Config"))
    network = _mapping(attrs.get("NetworkSettings"))
    state = _mapping(attrs.get("State"))
    health = _mapping(state.get("Health"))
    return ContainerSnapshot(
        id=str(attrs.get("Id") or ""),
        name=str(attrs.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or ""),
        running=bool(state.get("Running")) and not bool(state.get("Restarting")),
        paused=bool(state.get("Paused")),
        exit_code=_int(state.get("ExitCode")),
        started_at=_timestamp(state.get("StartedAt")),
        stop_signal=_signal_number(config.get("StopSignal")),
        network_mode=str(_mapping(attrs.get("HostConfig")).get("NetworkMode") or "default"),
        ip=str(network.get("IPAddress") or ""),
        ipv6=str(network.get("GlobalIPv6Address") or ""),
        networks=_parse_networks(_mapping(network.get("Networks"))),
        env=MappingProxyType(_parse_env(config.get("Env"))),
        labels=MappingProxyType({str(k): str(v) for k, v in _mapping(config.get("Labels")).items()}),
        ports=_parse_ports(_mapping(config.get("ExposedPorts")), _mapping(network.get("Ports"))),
        has_healthcheck=_has_healthcheck(config.get("Healthcheck")),
        health=str(health.get("Status") or ""),
        health_output=_last_probe_output(health),
        attrs=MappingProxyType(dict(attrs)),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    """Docker's nullable objects; anything that is not an object reads as empty."""
    return value if isinstance(value, Mapping) else {}


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
    log = health.get("Log")
    last = log[-1] if isinstance(log, list) and log and isinstance(log[-1], Mapping) else {}
    return str(last.get("Output") or "").strip()[:4096]


def _timestamp(value: Any) -> float:
    """Docker's RFC 3339 time with nanoseconds → epoch seconds (0 when absent or unparsable)."""
    text = str(value or "")
    match = re.fullmatch(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})", text)
    if not match:
        return 0.0
    try:
        whole = datetime.fromisoformat(match.group(1) + (match.group(3).replace("Z", "+00:00")))
    except ValueError:
        return 0.0
    return whole.timestamp() + float(match.group(2) or 0)


# Docker's own numbers for the real-time signals (moby/sys/signal), not this host's C library's:
# musl's SIGRTMIN is 35. Docker names RTMIN+1..RTMIN+15 and RTMAX-14..RTMAX-1.
_RTMIN, _RTMAX = 34, 64
_REALTIME = {"RTMIN": _RTMIN, "RTMAX": _RTMAX} | {f"RTMIN+{n}": _RTMIN + n for n in range(1, 16)} \
    | {f"RTMAX-{n}": _RTMAX - n for n in range(1, 15)}


def _signal_number(value: Any) -> int:
    """Docker's STOPSIGNAL forms: `SIGQUIT`, `QUIT` or `3` → 3, `SIGRTMIN+3` → 37; SIGTERM (15)
    when unset or unknown. Only ASCII digits are a number."""
    text = str(value or "").strip().upper()
    name = text.removeprefix("SIG")
    if re.fullmatch("[0-9]{1,2}", text):
        return int(text) if 0 < int(text) <= _RTMAX else int(signal.SIGTERM)
    if name in _REALTIME:
        return _REALTIME[name]
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return int(signal.SIGTERM)


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


def _parse_env(entries: Any) -> dict[str, str]:
    """`KEY=value` strings to a dict; later entries win and entries without `=` are ignored."""
    env: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
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


def _port_number(text: str) -> int | None:
    """1..65535 written in ASCII digits; None for anything else."""
    return int(text) if re.fullmatch("[0-9]{1,5}", text) and 0 < int(text) < 65536 else None


def _parse_port_key(key: str) -> tuple[int, str] | None:
    number, _, proto = str(key).partition("/")
    port = _port_number(number)
    return None if port is None else (port, (proto or "tcp").lower())


def _parse_binding(binding: Any) -> PortBinding | None:
    if not isinstance(binding, Mapping):
        return None
    host_port = _port_number(str(binding.get("HostPort") or ""))
    return None if host_port is None else PortBinding(host_ip=str(binding.get("HostIp") or ""), host_port=host_port)
