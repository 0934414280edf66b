"""Settings of the agent, resolved once at startup from flags and the environment."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registrator.consul.endpoint import ConsulEndpoint
from registrator.errors import ConfigError
from registrator.mapping.services import MAX_META_VALUE, meta_key_problem
from registrator.mapping.settings import MappingPolicy, MappingSettings


@dataclass(frozen=True, slots=True)
class Options:
    """What the operator chose (flags and environment); the defaults here are the documented ones.

    The host's identity and address are settled at startup (`startup.resolve`) into `Settings`.
    """

    consul: ConsulEndpoint
    mapping: MappingPolicy
    hostname: str = ""  # --hostname; empty: the Docker daemon's name
    ip: str = ""  # -ip; empty: detected by `ip_from`
    ip_from: str = "route"
    ec2_metadata_url: str = "http://169.254.169.254"
    resync_seconds: float = 60.0
    docker_timeout: float = 10.0
    retry_attempts: int = -1
    retry_interval_ms: int = 2000
    cleanup: bool = False
    drain_timeout: float = 120.0  # a killed container still running after this is taken as not stopping
    consul_probe_seconds: float = 5.0  # how often to check that the Consul agent still has our services
    deregister_on_exit: bool = False
    workers: int = 4  # containers reconciled at once; their Docker and Consul calls overlap

    @property
    def consul_timeout(self) -> float:
        return self.consul.timeout


@dataclass(frozen=True, slots=True)
class Settings:
    """The agent's final settings: the options, and the mapping settings with the host's facts."""

    options: Options
    mapping: MappingSettings


def parse_meta_options(pairs: Iterable[str]) -> dict[str, str]:
    """`--meta key=value` pairs, checked against Consul's Meta rules at startup."""
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        problem = "expected key=value" if not sep else meta_key_problem(key)
        if problem:
            raise ConfigError(f"--meta {pair!r}: {problem}")
        if len(value) > MAX_META_VALUE:
            raise ConfigError(f"--meta {f'{key}={value[:20]}…'!r}: value longer than {MAX_META_VALUE} characters")
        meta[key] = value
    return meta
