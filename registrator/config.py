"""Settings of the agent, resolved once at startup from flags and the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from registrator.mapping import MappingSettings

DEFAULT_CONSUL_PORT = 8500


class ConfigError(ValueError):
    """A setting that cannot work; the message names the flag or variable."""


@dataclass(frozen=True, slots=True)
class ConsulEndpoint:
    """Where and how to reach the local Consul agent. The token is kept out of repr and logs."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_CONSUL_PORT
    token: str | None = field(default=None, repr=False)
    timeout: float = 5.0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Settings:
    consul: ConsulEndpoint
    mapping: MappingSettings
    resync_seconds: float = 60.0
    docker_timeout: float = 10.0


def parse_consul_address(text: str, source: str) -> tuple[str, str, int]:
    """`host`, `host:port`, `[v6]:port` or `http(s)://host:port` → (scheme, host, port).

    `source` names the flag or variable the text came from, for the error message.
    """
    raw = text.strip()
    scheme = "http"
    if "://" in raw:
        scheme, _, raw = raw.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"{source}: unsupported scheme {scheme!r} in {text!r} (use http or https)")
    try:
        parts = urlsplit(f"//{raw.rstrip('/')}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"{source}: cannot parse {text!r}: {exc}") from None
    if not host or parts.path:
        raise ConfigError(f"{source}: expected host[:port], got {text!r}")
    return scheme, host, port or DEFAULT_CONSUL_PORT


def consul_endpoint(uri: str | None, env: Mapping[str, str] = os.environ, timeout: float = 5.0) -> ConsulEndpoint:
    """The registry URI (registrator's `consul://host:port`) wins over `CONSUL_HTTP_ADDR`.

    python-consul2 would read the CONSUL_* variables itself and let them override explicit
    arguments; resolving them here keeps one documented precedence.
    """
    if uri:
        scheme, _, rest = uri.partition("://")
        if scheme != "consul":
            raise ConfigError(f"registry URI {uri!r}: backend {scheme!r} is not supported (use consul://host:port)")
        address, source = rest or env.get("CONSUL_HTTP_ADDR", ""), f"registry URI {uri!r}"
    else:
        address, source = env.get("CONSUL_HTTP_ADDR", ""), "CONSUL_HTTP_ADDR"
    scheme, host, port = parse_consul_address(address, source) if address else ("http", "127.0.0.1", DEFAULT_CONSUL_PORT)
    if env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true"):
        scheme = "https"
    return ConsulEndpoint(scheme=scheme, host=host, port=port, token=env.get("CONSUL_HTTP_TOKEN") or None, timeout=timeout)
