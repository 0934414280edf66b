"""What the mapping reads besides the container: the operator's policy and the host's facts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from types import MappingProxyType

from registrator.mapping.checks import CheckSettings
from registrator.mapping.template import Template


class PortSuffix(Enum):
    """When a service name gets the `-<port>` suffix (registrator#311)."""

    AUTO = "auto"  # registrator master: generic name and more than one registrable port
    ALWAYS = "always"
    NEVER = "never"


class DeregisterPolicy(Enum):
    """What happens to the services of a container that stopped (registrator's `-deregister`)."""

    ALWAYS = "always"
    ON_SUCCESS = "on-success"  # keep after a non-zero exit that was not a signal
    NEVER = "never"  # keep until the container is removed


class DrainPolicy(StrEnum):
    """What a container being stopped gets (`--on-kill`)."""

    DEREGISTER = "deregister"
    MAINTENANCE = "maintenance"  # stays registered, in Consul maintenance mode, until it exits


class EcsName(StrEnum):
    """The default service name of an ECS task's container (`--ecs-name`)."""

    CONTAINER = "container"  # the ECS container name
    FAMILY = "family"  # the task definition's family
    IMAGE = "image"  # registrator's image basename


class IpFamily(StrEnum):
    """Which of a container's addresses becomes the service Address (`--ip-family`, `SERVICE_IP_FAMILY`)."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"


IP_FLAG = "-ip"


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What startup settled about this host (`startup.resolve`); never anything a container says."""

    name: str  # the host identity: prefix of default service IDs, owner recorded in Meta
    ip: str  # the address for published ports
    ip_source: str = IP_FLAG  # "-ip", or the `--ip-from` method that detected it
    runs_scripts: bool = False  # the Consul agent runs script and Docker exec checks (enable_script_checks)
    agent: str = ""  # this agent process, recorded in Meta (empty: not recorded)

    @property
    def forced(self) -> bool:
        """`-ip` beats even a specific address a port is bound to; a detected address does not."""
        return self.ip_source == IP_FLAG


@dataclass(frozen=True, slots=True)
class MappingPolicy:
    """What the operator chose that decides what a container registers."""

    internal: bool = False
    explicit: bool = False
    use_ip_from_label: str = ""
    tags: Template | None = None
    meta: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    port_suffix: PortSuffix = PortSuffix.AUTO
    deregister: DeregisterPolicy = DeregisterPolicy.ALWAYS
    checks: CheckSettings = CheckSettings()
    network: str = ""  # --network: preferred Docker network for container addresses
    ip_family: IpFamily = IpFamily.IPV4  # --ip-family: which container address becomes the service Address
    host_ipv6: str = ""  # --ip6: the host's IPv6, tagged on published ports
    ecs: bool = True  # ECS awareness when the container has ECS labels
    ecs_name: EcsName = EcsName.CONTAINER  # default name under ECS
    drain: DrainPolicy = DrainPolicy.DEREGISTER  # --on-kill: what a container being stopped gets


@dataclass(frozen=True, slots=True, kw_only=True)
class MappingSettings(MappingPolicy):
    """The operator's policy with the host's facts: everything the mapping reads."""

    host: HostFacts

    @property
    def hostname(self) -> str:
        return self.host.name

    @classmethod
    def of(cls, policy: MappingPolicy, host: HostFacts) -> MappingSettings:
        return cls(**{f.name: getattr(policy, f.name) for f in fields(MappingPolicy)}, host=host)
