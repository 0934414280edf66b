"""Where and how to reach the local Consul agent: registrator's registry URI and Consul's own
CONSUL_* variables, resolved with one documented precedence."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from registrator.errors import ConfigError

DEFAULT_CONSUL_PORT = 8500
UNSUPPORTED_BACKENDS = ("consulkv", "consulkv-unix", "etcd", "skydns2", "zookeeper")


@dataclass(frozen=True, slots=True)
class ConsulEndpoint:
    """Where and how to reach the local Consul agent. The token is kept out of repr and logs."""

    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = DEFAULT_CONSUL_PORT
    socket: str = ""
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True
    cert: tuple[str, str] | None = None
    server_name: str = ""  # CONSUL_TLS_SERVER_NAME: the name the server certificate must carry
    timeout: float = 5.0
    token_file: str = ""  # CONSUL_HTTP_TOKEN_FILE when the token came from it: read again when Consul does not know the token

    @property
    def url(self) -> str:
        if self.socket:
            return f"unix://{self.socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


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
    if port == 0:
        raise ConfigError(f"{source}: port 0 in {text!r}; give a port from 1 to 65535, or none for {DEFAULT_CONSUL_PORT}")
    return scheme, host, DEFAULT_CONSUL_PORT if port is None else port


def consul_endpoint(uri: str | None, env: Mapping[str, str] = os.environ, timeout: float = 5.0,
                    token: str | None = None) -> ConsulEndpoint:
    """Resolve registrator's registry URI and Consul's own CONSUL_* variables into one endpoint.

    `consul://host:port` (plain HTTP unless CONSUL_HTTP_SSL), `consul-tls://host:port` (HTTPS with
    CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY) and `consul-unix:///path/consul.sock`. A URI
    without a host falls back to CONSUL_HTTP_ADDR, as registrator did. python-consul2 would read
    some of these variables itself and let them override explicit arguments; resolving them here
    keeps one documented precedence.
    """
    scheme, separator, rest = (uri or "consul://").partition(":")
    rest = rest[2:] if rest.startswith("//") else rest
    if scheme in UNSUPPORTED_BACKENDS:
        raise ConfigError(f"registry URI {uri!r}: the {scheme} backend is not supported; this agent registers with Consul "
                          "(consul://, consul-tls://, consul-unix://)")
    if scheme not in ("consul", "consul-tls", "consul-unix") or not separator:
        raise ConfigError(f"registry URI {uri!r}: expected consul://HOST:PORT, consul-tls://HOST:PORT or consul-unix:///PATH")
    verify, cert = _tls(env)
    from_file = "" if token or env.get("CONSUL_HTTP_TOKEN") else env.get("CONSUL_HTTP_TOKEN_FILE", "")
    common = ConsulEndpoint(token=token or _token(env), timeout=timeout, verify=verify, cert=cert,
                            server_name=env.get("CONSUL_TLS_SERVER_NAME", ""), token_file=from_file)
    if scheme == "consul-unix":
        if not rest.startswith("/"):
            raise ConfigError(f"registry URI {uri!r}: expected consul-unix:///absolute/path/to/consul.sock")
        return replace(common, socket=rest)
    address = rest.strip("/") or env.get("CONSUL_HTTP_ADDR", "").strip()
    if address.startswith("unix://"):
        return replace(common, socket=address[len("unix://"):])
    where = "registry URI" if rest.strip("/") else "CONSUL_HTTP_ADDR"
    if "@" in address.split("://", 1)[-1].split("/", 1)[0]:  # user:password@host
        raise ConfigError(f"{where}: credentials in the Consul address are not supported (they would be dropped, and the "
                          "address is logged); give a token with --consul-token, CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE")
    source = f"registry URI {uri!r}" if rest.strip("/") else "CONSUL_HTTP_ADDR"
    http_scheme, host, port = parse_consul_address(address, source) if address else ("http", "127.0.0.1", DEFAULT_CONSUL_PORT)
    if scheme == "consul-tls" or env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true"):
        http_scheme = "https"
    return replace(common, scheme=http_scheme, host=host, port=port)


def _token(env: Mapping[str, str]) -> str | None:
    """CONSUL_HTTP_TOKEN, else the contents of CONSUL_HTTP_TOKEN_FILE (Consul's own precedence)."""
    if env.get("CONSUL_HTTP_TOKEN"):
        return env["CONSUL_HTTP_TOKEN"]
    path = env.get("CONSUL_HTTP_TOKEN_FILE")
    return read_token_file(path) if path else None


def read_token_file(path: str) -> str | None:
    """The token a file holds (CONSUL_HTTP_TOKEN_FILE), or ConfigError naming the variable and the path."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as exc:
        raise ConfigError(f"CONSUL_HTTP_TOKEN_FILE={path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"CONSUL_HTTP_TOKEN_FILE={path}: not UTF-8 text") from None


def _tls(env: Mapping[str, str]) -> tuple[bool | str, tuple[str, str] | None]:
    verify: bool | str = env.get("CONSUL_CACERT") or env.get("CONSUL_CAPATH") or True
    if env.get("CONSUL_HTTP_SSL_VERIFY", "").lower() in ("0", "false"):
        verify = False
    cert, key = env.get("CONSUL_CLIENT_CERT"), env.get("CONSUL_CLIENT_KEY")
    if bool(cert) != bool(key):
        raise ConfigError("CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together")
    for name in ("CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"):
        if env.get(name) and not os.path.exists(env[name]):
            raise ConfigError(f"{name}={env[name]}: no such file")
    return verify, (cert, key) if cert and key else None
