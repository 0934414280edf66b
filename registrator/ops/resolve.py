"""`registrator resolve`: what a consumer sees through Consul DNS (SRV for ports, A/AAAA for addresses)."""

from __future__ import annotations

import ipaddress
import socket

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdatatype


class ResolveError(Exception):
    pass


def resolve_service(name: str, tag: str, server: str, domain: str = "consul", timeout: float = 3.0) -> list[tuple[str, int]]:
    """Healthy instances as (address, port), sorted. Addresses come from the SRV answer's additional
    records, or from resolving each SRV target."""
    host, _, port = server.rpartition(":")
    if not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ResolveError(f"--dns {server!r}: expected HOST:PORT")
    for what, value in (("NAME", name), ("--tag", tag), ("--domain", domain)):
        if value or what != "--tag":
            _check_name(what, value, one_label=what != "--domain")
    host = _address(host.strip("[]"), int(port), server)
    qname = ".".join(p for p in (tag, name, "service", domain) if p) + "."
    srv = _query(qname, dns.rdatatype.SRV, host, int(port), timeout)
    addresses: dict[str, list[str]] = {}
    for rrset in srv.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            addresses.setdefault(rrset.name.to_text(), []).extend(r.to_text() for r in rrset)
    endpoints = set()
    for rrset in srv.answer:
        for record in rrset:
            target = record.target.to_text()
            found = addresses.get(target) or _addresses(target, host, int(port), timeout)
            endpoints |= {(address, int(record.port)) for address in found}
    return sorted(endpoints)


def _check_name(what: str, value: str, one_label: bool) -> None:
    """A part of the question must be a DNS name (a service name or tag: one label); else one line saying why."""
    try:
        labels = dns.name.from_text(value, origin=None).labels if value else ()
    except dns.exception.DNSException as exc:
        raise ResolveError(f"{what} {value!r}: not a DNS name: {exc}") from None
    if not labels or (one_label and len(labels) > 1):
        raise ResolveError(f"{what} {value!r}: not a DNS {'label' if one_label else 'name'}")


def _address(host: str, port: int, server: str) -> str:
    """dnspython asks an IP address; a name (localhost, consul.internal) is looked up, IPv4 first:
    Consul listens on 127.0.0.1 by default, and "localhost" often gives ::1 first."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ResolveError(f"--dns {server!r}: cannot look up {host}: {exc}") from None
    return str(min(found, key=lambda entry: entry[0] != socket.AF_INET)[4][0])


def _addresses(target: str, host: str, port: int, timeout: float) -> list[str]:
    found = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        for rrset in _query(target, rdtype, host, port, timeout).answer:
            found += [r.to_text() for r in rrset if r.rdtype == rdtype]
    return found


def _query(qname: str, rdtype: dns.rdatatype.RdataType, host: str, port: int, timeout: float) -> dns.message.Message:
    try:
        return dns.query.udp(dns.message.make_query(qname, rdtype, use_edns=0, payload=4096), host, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        raise ResolveError(f"DNS query {qname} to {host}:{port}: {exc or type(exc).__name__}") from None
