"""Find the host's routable IPv4 address: the address of the interface that holds the default route.

Registrator resolved its own hostname instead, which often gives 127.0.1.1 or a container IP.
Reading the routing table sends no traffic.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFADDR = 0x8915


class HostIPError(RuntimeError):
    pass


def default_route_interface(route_table: str) -> str | None:
    """The interface of the lowest-metric default route in /proc/net/route text."""
    best: tuple[int, str] | None = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 7 and fields[1] == "00000000" and int(fields[3], 16) & 0x1:
            candidate = (int(fields[6]), fields[0])
            best = min(best, candidate) if best else candidate
    return best[1] if best else None


def interface_ipv4(name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError as exc:
            raise HostIPError(f"interface {name} has no IPv4 address: {exc.strerror}") from None
    return socket.inet_ntoa(packed[20:24])


def detect_host_ip(route_file: str = "/proc/net/route") -> str:
    try:
        with open(route_file, encoding="ascii") as handle:
            interface = default_route_interface(handle.read())
    except OSError as exc:
        raise HostIPError(f"cannot read {route_file}: {exc.strerror}") from None
    if interface is None:
        raise HostIPError("no default route to take the host IP from")
    return interface_ipv4(interface)
