"""Find the host's routable IPv4 address (`--ip-from`).

* `route` (default): the address of the interface that holds the default route; reading the
  routing table sends no traffic.
* `interface:NAME`: that interface's address.
* `ec2`: the instance's `local-ipv4` from the EC2 instance metadata service, with the IMDSv2
  token flow (PUT a token, then GET with it), which IMDSv1-disabled instances require.
* `docker`: the address the Docker daemon advertises (swarm mode).

Registrator resolved its own hostname instead, which often gives 127.0.1.1 or a container IP.
"""

from __future__ import annotations

import fcntl
import ipaddress
import re
import socket
import struct

import requests

SIOCGIFADDR = 0x8915
EC2_METADATA_URL = "http://169.254.169.254"
METHODS = ("route", "interface:NAME", "ec2", "docker")


class HostIPError(RuntimeError):
    pass


_HOST_NAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def address_problem(text: str, version: int = 0) -> str:
    """Why `text` cannot be the address of this host's published ports; empty when it can.

    An IP address (of `version`, when given) that names one host, or for `version` 0 a DNS host
    name, which Consul's DNS answers with a CNAME (registrator passed `-ip` through as given).
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if version == 0 and _HOST_NAME.fullmatch(text) and not text.replace(".", "").isdigit():
            return ""
        return f"is not an IPv{version} address" if version else "is neither an IP address nor a host name"
    if version and address.version != version:
        return f"is not an IPv{version} address"
    if address.is_unspecified:
        return "is the unspecified address, which names no host"
    if address.is_multicast:
        return "is a multicast address"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    return ""


def check_address(flag: str, text: str, version: int = 0) -> str:
    """Validate an address flag (`-ip`, `--ip6`) at startup; empty means not set."""
    if text and (problem := address_problem(text, version)):
        raise HostIPError(f"{flag} {text!r}: {problem}")
    return text


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


def ec2_local_ipv4(base_url: str = EC2_METADATA_URL, timeout: float = 2.0) -> str:
    """IMDSv2: a session token first, then `local-ipv4` with the token."""
    base = base_url.rstrip("/")
    try:
        token = requests.put(f"{base}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}, timeout=timeout)
        token.raise_for_status()
        answer = requests.get(f"{base}/latest/meta-data/local-ipv4",
                              headers={"X-aws-ec2-metadata-token": token.content.decode("ascii", "replace")},
                              timeout=timeout)
        answer.raise_for_status()
    except requests.RequestException as exc:
        raise HostIPError(f"EC2 instance metadata at {base}: {exc}") from None
    address = answer.content.decode("ascii", "replace").strip()
    if not address:
        raise HostIPError(f"EC2 instance metadata at {base}: empty local-ipv4")
    return address


def check_method(method: str) -> str:
    """Validate an `--ip-from` value at startup."""
    if method in ("route", "ec2", "docker") or (method.startswith("interface:") and method != "interface:"):
        return method
    raise HostIPError(f"--ip-from {method!r}: expected one of {', '.join(METHODS)}")
