"""Pure: the address and port each container port is registered with, by one documented precedence.

For every exposed port, the first rule that applies decides (nothing depends on dict order):

1. `SERVICE_[<port>_]IP`: that address; the published host port, else the exposed port.
2. `SERVICE_[<port>_]NETWORK`: the container's address on that Docker network, exposed port.
3. `-useIpFromLabel`: the address in that label; host port when published, exposed port with
   `-internal` (registrator's rule). A label that is not an IP address is warned about and skipped.
4. `--network`: the container's address on that network, exposed port (containers not on it fall
   through).
5. ECS awsvpc task: the task's ENI address (from the ECS agent), exposed port.
6. `-internal`: the container's address, exposed port.
7. Published port: `-ip`, else the address the port is bound to when specific, else the detected
   host IP; the host port. Each distinct host port is one registration.
8. Otherwise the port is not reachable from other hosts and is not registered.

A container address is, per `--ip-family`, the IPv4 or IPv6 address; when both exist the service
also carries Consul `TaggedAddresses` `lan_ipv4` and `lan_ipv6`. Without a chosen network: the
default bridge address, else the first network by name that has one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from registrator.mapping.metadata import PortMetadata
from registrator.mapping.settings import MappingSettings
from registrator.model import ContainerPort, ContainerSnapshot, NetworkAttachment, PortBinding


@dataclass(frozen=True, slots=True)
class Target:
    """Where one registration points; `ipv4`/`ipv6` become TaggedAddresses when both are known."""

    address: str
    port: int
    ipv4: str = ""
    ipv6: str = ""
    ipv6_port: int = 0  # when the IPv6 binding got another host port than the IPv4 one
    rule: str = ""  # which precedence rule decided, for `registrator explain`


def port_targets(
    snapshot: ContainerSnapshot, port: ContainerPort, port_meta: PortMetadata, settings: MappingSettings,
    warnings: list[str], notes: list[str],
) -> list[Target]:
    """The registrations for one port, by the first rule that applies (docs/addresses.md): [] when
    it is not reachable (with a note or warning why)."""
    ask = _Port(snapshot, port, port_meta, settings, warnings, notes, _bindings(snapshot, port),
                _family(port_meta, settings, warnings))
    for rule in _RULES:
        targets = rule(ask)
        if targets is not None:
            return targets
    notes.append(f"port {port.port}/{port.protocol}: no reachable port (not published on the host, no network chosen)")
    return []


@dataclass(frozen=True, slots=True)
class _Port:
    """One port being mapped, and what its rules read."""

    snapshot: ContainerSnapshot
    port: ContainerPort
    meta: PortMetadata
    settings: MappingSettings
    warnings: list[str]
    notes: list[str]
    bindings: tuple[PortBinding, ...]
    family: str


def _service_ip(ask: _Port) -> list[Target] | None:
    """Rule 1: `SERVICE_IP`."""
    explicit_ip = ask.meta.get("ip").strip()
    if not explicit_ip:
        return None
    source = ask.meta.entries["ip"].source
    if not _is_ip(explicit_ip):
        ask.warnings.append(f"{source}: {explicit_ip!r} is not an IP address; ignored")
        return None
    rule = f"rule 1: {source}"
    if ask.bindings:
        return _given_address(explicit_ip, ask.port, ask.bindings, rule, source, ask.warnings)
    return [Target(explicit_ip, ask.port.port, rule=rule)]


def _service_network(ask: _Port) -> list[Target] | None:
    """Rule 2: `SERVICE_NETWORK`."""
    network = ask.meta.get("network").strip()
    if not network:
        return None
    source = ask.meta.entries["network"].source
    attachment = next((n for n in ask.snapshot.networks if n.name == network), None)
    if attachment is None or not (attachment.ip or attachment.ipv6):
        ask.warnings.append(f"{source}: the container has no address on network {network!r}; port {ask.port.port} not registered")
        return []
    rule = f"rule 2: {source}, the address on network {network}"
    return [_container_target(attachment.ip, attachment.ipv6, ask.port.port, ask.family, rule)]


def _label_address(ask: _Port) -> list[Target] | None:
    """Rule 3: `-useIpFromLabel`."""
    label_ip = _label_ip(ask.snapshot, ask.settings, ask.warnings)
    if not label_ip:
        return None
    rule = f"rule 3: -useIpFromLabel {ask.settings.use_ip_from_label}"
    if ask.settings.internal:
        return [Target(label_ip, ask.port.port, rule=rule)]
    if not ask.bindings:
        return []
    return _given_address(label_ip, ask.port, ask.bindings, rule, f"label {ask.settings.use_ip_from_label}", ask.warnings)


def _network_flag(ask: _Port) -> list[Target] | None:
    """Rule 4: `--network`, for containers attached to it."""
    name = ask.settings.network
    attachment = next((n for n in ask.snapshot.networks if name and n.name == name and (n.ip or n.ipv6)), None)
    if attachment is None:
        return None
    return [_container_target(attachment.ip, attachment.ipv6, ask.port.port, ask.family, f"rule 4: --network {name}")]


def _ecs_task(ask: _Port) -> list[Target] | None:
    """Rule 5: an ECS awsvpc task's address."""
    if not ask.snapshot.task_ip:
        return None
    return [Target(ask.snapshot.task_ip, ask.port.port, rule="rule 5: ECS awsvpc task address from the ECS agent")]


def _internal(ask: _Port) -> list[Target] | None:
    """Rule 6: `-internal`, the container's own address."""
    if not ask.settings.internal:
        return None
    ipv4, ipv6 = _container_addresses(ask.snapshot)
    if ipv4 or ipv6:
        return [_container_target(ipv4, ipv6, ask.port.port, ask.family, "rule 6: -internal, the container's address")]
    ask.notes.append(f"port {ask.port.port}/{ask.port.protocol}: no container address for -internal (network mode "
                     f"{ask.snapshot.network_mode})")
    return []


def _published(ask: _Port) -> list[Target] | None:
    """Rule 7: a published port."""
    return _published_targets(ask.bindings, ask.settings) if ask.bindings else None


_RULES: tuple[Callable[[_Port], list[Target] | None], ...] = (
    _service_ip, _service_network, _label_address, _network_flag, _ecs_task, _internal, _published)


def _given_address(address: str, port: ContainerPort, bindings: tuple[PortBinding, ...], rule: str, source: str,
                   warnings: list[str]) -> list[Target]:
    """An address given for a published port goes with the host port published on its family, once: Docker
    may publish one port on two host ports (IPv4 and IPv6), and the other family's may be another
    container's port on this address."""
    family = _version(address)
    same = [b for b in bindings if b.host_ip == "" or _version(b.host_ip) == family]
    if not same:
        warnings.append(f"{source}: {address} is an IPv{family} address, and port {port.port} is published on "
                        f"IPv{6 if family == 4 else 4} only; not registered")
        return []
    return [Target(address, same[0].host_port, rule=rule)]


def _container_addresses(snapshot: ContainerSnapshot) -> tuple[str, str]:
    """(IPv4, IPv6): the default bridge's, else the first network by name that has any."""
    if snapshot.ip or snapshot.ipv6:
        return snapshot.ip, snapshot.ipv6
    first: NetworkAttachment | None = next((n for n in snapshot.networks if n.ip or n.ipv6), None)
    return (first.ip, first.ipv6) if first else ("", "")


def _bindings(snapshot: ContainerSnapshot, port: ContainerPort) -> tuple[PortBinding, ...]:
    """Host bindings reachable from other hosts: host-network ports serve on the host itself;
    bindings to a loopback address only are not reachable."""
    if snapshot.network_mode == "host":
        return (PortBinding("", port.port),)
    return tuple(b for b in port.bindings if not _is_loopback(b.host_ip))


def _published_targets(bindings: tuple[PortBinding, ...], settings: MappingSettings) -> list[Target]:
    """Dual-stack `-p` makes an IPv4 and an IPv6 binding, not always on the same host port: the
    service is registered once, on the IPv4 binding, with the IPv6 one as TaggedAddress lan_ipv6
    when the host's IPv6 is known (`--ip6`). IPv6-only bindings are registered themselves."""
    ipv4 = [b for b in bindings if ":" not in b.host_ip]
    ipv6 = [b for b in bindings if ":" in b.host_ip]
    wildcard6 = next((b for b in ipv6 if b.host_ip == "::"), None)
    targets = [_host_target(b, settings, wildcard6) for b in (ipv4 or ipv6)]
    return _unique(targets)


def _host_target(binding: PortBinding, settings: MappingSettings, wildcard6: PortBinding | None) -> Target:
    specific = "" if binding.host_ip in ("", "0.0.0.0", "::") else binding.host_ip
    host = settings.host
    unbound = settings.host_ipv6 if binding.host_ip == "::" and settings.host_ipv6 else host.ip
    address = (host.ip if host.forced else "") or specific or unbound
    how = "-ip" if host.forced else "the bound address" if specific else f"the host IP ({host.ip_source})"
    rule = f"rule 7: published port, {how}"
    if settings.host_ipv6 and wildcard6 is not None and not specific and _version(address) == 4:
        return Target(address, binding.host_port, ipv4=address, ipv6=settings.host_ipv6, ipv6_port=wildcard6.host_port, rule=rule)
    return Target(address, binding.host_port, rule=rule)


def _container_target(ipv4: str, ipv6: str, port: int, family: str, rule: str) -> Target:
    address = (ipv6 or ipv4) if family == "ipv6" else (ipv4 or ipv6)
    if ipv4 and ipv6:
        return Target(address, port, ipv4=ipv4, ipv6=ipv6, rule=rule)
    return Target(address, port, rule=rule)


def _unique(targets: list[Target]) -> list[Target]:
    """One registration per host port: dual-stack `0.0.0.0` + `::` bindings of one port are one."""
    by_port: dict[int, Target] = {}
    for target in targets:
        by_port.setdefault(target.port, target)
    return list(by_port.values())


def _family(port_meta: PortMetadata, settings: MappingSettings, warnings: list[str]) -> str:
    value = port_meta.get("ip_family").strip().lower()
    if value and value not in ("ipv4", "ipv6"):
        warnings.append(f"{port_meta.entries['ip_family'].source}: {value!r} is not ipv4 or ipv6; {settings.ip_family} used")
        return settings.ip_family
    return value or settings.ip_family


def _label_ip(snapshot: ContainerSnapshot, settings: MappingSettings, warnings: list[str]) -> str:
    """registrator's `-useIpFromLabel`: the label's value without a `/cidr` suffix; empty (the next
    rule decides) when the label is missing or not an IP address."""
    label = settings.use_ip_from_label
    value = snapshot.labels.get(label, "").strip() if label else ""
    ip = value.rsplit("/", 1)[0]
    if ip and not _is_ip(ip):
        warnings.append(f"label {label}: {value!r} is not an IP address; -useIpFromLabel ignored for this container")
        return ""
    return ip


def _is_loopback(ip: str) -> bool:
    return _is_ip(ip) and ipaddress.ip_address(ip).is_loopback


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _version(text: str) -> int:
    return ipaddress.ip_address(text).version if _is_ip(text) else 0
