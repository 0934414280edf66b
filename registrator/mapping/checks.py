"""Pure: a service's Consul health checks from `SERVICE_[<port>_]CHECK_*` metadata and Docker health.

One check per group of keys. The unnumbered keys (`SERVICE_CHECK_HTTP`, `SERVICE_CHECK_INTERVAL`,
…) form registrator's single check; numbered keys (`SERVICE_CHECK_1_HTTP`,
`SERVICE_CHECK_1_INTERVAL`, `SERVICE_CHECK_2_TCP`, …) form one more check per number, each with
its own settings. A group with several types uses the first in registrator's precedence and warns.

A container with a Docker HEALTHCHECK also gets a TTL check that mirrors Docker's verdict; the
reconciler pushes the status (`mirror_status`), so status changes never re-register the service.

The checks are typed values (`CheckSpec`); the Consul sink alone turns them into Consul's JSON.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from registrator.mapping.metadata import Entry, PortMetadata, truthy
from registrator.model import CheckKind, CheckSpec, ContainerSnapshot, host_port

TYPES = ("http", "https", "script", "ttl", "tcp", "udp", "grpc", "docker")  # registrator's precedence, extended
_OVER_TCP = {CheckKind.HTTP, CheckKind.HTTPS, CheckKind.TCP, CheckKind.GRPC}  # checks that connect over TCP
SETTINGS = {
    "interval", "timeout", "method", "http_method", "https_method", "tls_skip_verify", "tls_server_name",
    "grpc_use_tls", "initial_status", "deregister_after", "success_before_passing", "failures_before_critical",
    "notes",
}
STATUSES = ("passing", "warning", "critical")
DEFAULT_INTERVAL = "10s"
MIRROR_SUFFIX = "docker-health"
# Check IDs share one namespace on the Consul agent. `service:<service ID>` is the single check
# (registrator's), and further checks append `#<number>` or `#docker-health`: '#' is refused in
# service IDs, so no two services can have a check ID in common and no container can take over
# another service's check by choosing its SERVICE_ID.
CHECK_SEPARATOR = "#"
DOCKER_TO_CONSUL = {"healthy": "passing", "unhealthy": "critical"}
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = r"([0-9]+)(?:\.([0-9]+))?(ns|us|µs|μs|ms|s|m|h)"
_DURATION = re.compile(f"(?:{_DURATION_PART})+")
MAX_NANOSECONDS = 2**63 - 1  # Go's time.Duration, which Consul parses every duration into
MAX_COUNT = 2**31 - 1  # Consul's check counts are Go ints, 32 bits wide on 32-bit builds
_NUMBERED = re.compile(r"^([0-9]{1,9})_(.+)$")  # SERVICE_CHECK_<n>_…; ASCII digits, few enough to sort as an int


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """The agent-wide part of check policy."""

    allow_scripts: bool = False  # --allow-script-checks: script checks run on the Consul host
    initial_status: str | None = None  # --initial-status for every check without its own
    docker_health: bool = True  # mirror Docker HEALTHCHECK into a TTL check
    docker_health_ttl: float = 90.0  # seconds; the agent re-sends the status every third of it


@dataclass(frozen=True, slots=True)
class CheckGroup:
    """The settings of one check: the unnumbered keys (`number` "") or those of `SERVICE_CHECK_<number>_*`."""

    number: str
    settings: Mapping[str, Entry]  # setting (`http`, `interval`, `header_2`, …) → its value and source
    rank: Mapping[str, int]  # setting → 0 protocol-scoped, 1 port-scoped, 2 generic: the most specific type wins


@dataclass(frozen=True, slots=True)
class CheckKeys:
    """A port's `check_*` keys, classified once for both the checks and the Meta (which takes none of them)."""

    groups: tuple[CheckGroup, ...] = ()  # the unnumbered check first, then by number
    keys: frozenset[str] = frozenset()  # every `check_*` key, known or not
    warnings: tuple[str, ...] = ()  # the keys that name no check setting


def check_keys(port_meta: PortMetadata) -> CheckKeys:
    """The checks a port's `check_*` keys form, and warnings for those that name no setting."""
    groups: dict[str, dict[str, Entry]] = {}
    unknown: dict[str, Entry] = {}
    keys = [key for key in port_meta.entries if key.startswith("check_")]
    for key in keys:
        rest = key[len("check_"):]
        numbered = _NUMBERED.match(rest)
        number, setting = (numbered.group(1), numbered.group(2)) if numbered else ("", rest)
        if _is_setting(setting):
            groups.setdefault(number, {})[setting] = port_meta.entries[key]
        else:
            unknown[key] = port_meta.entries[key]
    ordered = sorted(groups, key=lambda n: (n != "", int(n or 0)))
    return CheckKeys(
        groups=tuple(CheckGroup(n, MappingProxyType(groups[n]), MappingProxyType(_ranks(port_meta, n, groups[n])))
                     for n in ordered),
        keys=frozenset(keys),
        warnings=tuple(f"{entry.source}: unknown check setting {key!r}; ignored" for key, entry in sorted(unknown.items())),
    )


def _is_setting(setting: str) -> bool:
    return setting in TYPES or setting in SETTINGS or setting in ("header", "cmd") or setting.startswith("header_")


def _ranks(port_meta: PortMetadata, number: str, settings: Mapping[str, Entry]) -> dict[str, int]:
    prefix = f"check_{number}_" if number else "check_"
    return {s: 0 if prefix + s in port_meta.protocol_scoped else 1 if prefix + s in port_meta.port_scoped else 2
            for s in settings}


def service_checks(
    groups: tuple[CheckGroup, ...],
    service_id: str,
    address: str,
    port: int,
    snapshot: ContainerSnapshot,
    policy: CheckSettings,
    runs_scripts: bool,
    warnings: list[str],
    protocol: str,
) -> tuple[CheckSpec, ...]:
    """`groups` from `check_keys`; `runs_scripts`: the Consul agent runs script and Docker exec checks (asked at startup);
    `protocol`: the container port's."""
    checks = []
    for group in groups:
        check_id = f"service:{service_id}{CHECK_SEPARATOR}{group.number}" if group.number else f"service:{service_id}"
        check = _check(group, check_id, address, port, snapshot, policy, runs_scripts, warnings, protocol)
        if check is not None:
            checks.append(check)
    mirror = docker_health_check(service_id, snapshot, policy)
    if mirror is not None:
        checks.append(mirror)
    return tuple(checks)


def docker_health_check(service_id: str, snapshot: ContainerSnapshot, policy: CheckSettings) -> CheckSpec | None:
    if not policy.docker_health or not snapshot.has_healthcheck:
        return None
    return CheckSpec(mirror_check_id(service_id), CheckKind.DOCKER_HEALTH, "Docker HEALTHCHECK",
                     ttl=f"{policy.docker_health_ttl:g}s",
                     initial_status=policy.initial_status or "critical", notes="mirrors the container's Docker health status")


def mirror_check_id(service_id: str) -> str:
    """The ID of a service's Docker-health check: always built from the service ID, never parsed back."""
    return f"service:{service_id}{CHECK_SEPARATOR}{MIRROR_SUFFIX}"


def mirror_status(snapshot: ContainerSnapshot, policy: CheckSettings) -> tuple[str, str]:
    """Consul status and output for Docker's current verdict; `starting` is the initial status."""
    status = DOCKER_TO_CONSUL.get(snapshot.health, policy.initial_status or "critical")
    return status, snapshot.health_output or f"Docker health: {snapshot.health or 'unknown'}"


def _check(
    group: CheckGroup, check_id: str, address: str, port: int,
    snapshot: ContainerSnapshot, policy: CheckSettings, runs_scripts: bool, warnings: list[str], protocol: str,
) -> CheckSpec | None:
    """The check of one group: its kind's builder, then what every kind shares."""
    kind = _kind(group, warnings)
    if kind is None:
        return None
    settings = group.settings
    value = settings[kind.value].value.strip()
    if kind in (CheckKind.TCP, CheckKind.UDP) and value.lower() in ("false", "0", "no", "off"):
        return None
    needs = "udp" if kind is CheckKind.UDP else "tcp" if kind in _OVER_TCP else protocol
    if needs != protocol:
        warnings.append(f"{settings[kind.value].source}: a {kind.value.upper()} check cannot reach a {protocol.upper()} port; "
                        "check left out")
        return None
    site = _Site(CheckSpec(check_id, kind, f"{kind.value.upper()} check"), value, settings, address, port, snapshot, policy,
                 runs_scripts, warnings)
    check = _BUILDERS[kind](site)
    return None if check is None else _shared(check, settings, policy, warnings)


def _kind(group: CheckGroup, warnings: list[str]) -> CheckKind | None:
    """The most specific scope's type, then registrator's precedence; the others are warned about."""
    settings = group.settings
    present = sorted((t for t in TYPES if t in settings), key=lambda t: (group.rank[t], TYPES.index(t)))
    if "cmd" in settings:
        warnings.append(f"{settings['cmd'].source}: check_cmd needs registrator's progrium/consul helper and is not supported; "
                        "use CHECK_DOCKER")
    if not present:
        if settings.keys() - {"cmd"}:
            warnings.append(f"{next(iter(settings.values())).source}: check settings without a check type (HTTP, HTTPS, TCP, "
                            "UDP, GRPC, TTL, SCRIPT, DOCKER); ignored")
        return None
    for other in present[1:]:
        warnings.append(f"{settings[other].source}: only one check type per check ({present[0]} is used); number them for "
                        f"several, e.g. SERVICE_CHECK_1_{other.upper()}")
    return CheckKind(present[0])


@dataclass(frozen=True, slots=True)
class _Site:
    """What a kind's builder reads: the check so far (ID, kind, name), its type key's value, the
    group's settings, and where and on what the check runs."""

    check: CheckSpec
    value: str
    settings: Mapping[str, Entry]
    address: str
    port: int
    snapshot: ContainerSnapshot
    policy: CheckSettings
    runs_scripts: bool
    warnings: list[str]

    @property
    def source(self) -> str:
        return self.settings[self.check.kind.value].source


def _http(site: _Site) -> CheckSpec | None:
    kind, settings = site.check.kind.value, site.settings
    path = site.value if site.value.startswith("/") else f"/{site.value}"
    if why := ("a control character" if re.search(r"[\x00-\x1f\x7f]", path) else
               "an invalid %-escape" if re.search(r"%(?![0-9A-Fa-f]{2})", path) else ""):
        site.warnings.append(f"{site.source}: {site.value!r} is no URL path Consul takes ({why}); check left out")
        return None
    method = _value(settings, "method") or _value(settings, f"{kind}_method") or _value(settings, "http_method")
    return replace(site.check, target=f"{kind}://{host_port(site.address, site.port)}{path}", method=method.upper(),
                   headers=_headers(settings, site.warnings))


def _socket(site: _Site) -> CheckSpec | None:
    return replace(site.check, target=host_port(site.address, site.port))


def _grpc(site: _Site) -> CheckSpec | None:
    target = host_port(site.address, site.port)
    service = "" if truthy(site.value) else site.value
    return replace(site.check, target=f"{target}/{service}" if service else target,
                   grpc_use_tls=_flag(site.settings, "grpc_use_tls"))


def _ttl(site: _Site) -> CheckSpec | None:
    if problem := duration_problem(site.value):
        site.warnings.append(f"{site.source}: {site.value!r} {problem}; TTL check left out")
        return None
    return replace(site.check, ttl=site.value)


def _script(site: _Site) -> CheckSpec | None:
    if not site.policy.allow_scripts:
        site.warnings.append(f"{site.source}: script checks run on the Consul host and are refused unless the agent runs with "
                             "--allow-script-checks")
        return None
    if not site.runs_scripts:
        site.warnings.append(f"{site.source}: the Consul agent does not run script checks (enable_script_checks); check left out")
        return None
    args = _args(site.settings["script"], site.address, site.port, site.warnings)
    return replace(site.check, args=args) if args else None


def _docker(site: _Site) -> CheckSpec | None:
    if not site.runs_scripts:
        site.warnings.append(f"{site.source}: the Consul agent does not run Docker exec checks (enable_script_checks); check "
                             "left out")
        return None
    args = _args(site.settings["docker"], site.address, site.port, site.warnings)
    return replace(site.check, docker_container_id=site.snapshot.id, args=args) if args else None


_BUILDERS = {CheckKind.HTTP: _http, CheckKind.HTTPS: _http, CheckKind.TCP: _socket, CheckKind.UDP: _socket, CheckKind.GRPC: _grpc,
             CheckKind.TTL: _ttl, CheckKind.SCRIPT: _script, CheckKind.DOCKER: _docker}


def _shared(check: CheckSpec, settings: Mapping[str, Entry], policy: CheckSettings, warnings: list[str]) -> CheckSpec:
    """The settings every kind takes: TLS, interval and timeout (not for TTL checks), initial status,
    deregistration, thresholds, notes."""
    kind = check.kind
    if kind in (CheckKind.HTTPS, CheckKind.GRPC) or "tls_skip_verify" in settings:
        skip_verify = _flag(settings, "tls_skip_verify") if "tls_skip_verify" in settings else None
        check = replace(check, tls_skip_verify=skip_verify, tls_server_name=_value(settings, "tls_server_name"))
    if kind is not CheckKind.TTL:
        interval = _duration(settings, "interval", f"default {DEFAULT_INTERVAL} used", warnings) or DEFAULT_INTERVAL
        check = replace(check, interval=interval, timeout=_duration(settings, "timeout", "Consul's default used", warnings))
    status = _status(settings, warnings) or policy.initial_status or ""
    deregister_after = _duration(settings, "deregister_after", "not set", warnings)
    success_before_passing = _count(settings, "success_before_passing", warnings)
    failures_before_critical = _count(settings, "failures_before_critical", warnings)
    return replace(check, initial_status=status, deregister_critical_after=deregister_after,
                   success_before_passing=success_before_passing,
                   failures_before_critical=failures_before_critical, notes=_value(settings, "notes"))


def _value(settings: Mapping[str, Entry], key: str) -> str:
    entry = settings.get(key)
    return entry.value.strip() if entry else ""


def _flag(settings: Mapping[str, Entry], key: str) -> bool:
    return truthy(_value(settings, key))


def duration_problem(text: str) -> str:
    """Why Consul would refuse a duration, or take it as none; empty when it is fine.

    Go's time.ParseDuration syntax, in ASCII digits (`10s`, `1m30s`, `1.5h`, `250ms`), and a length
    that is more than 0 and fits Go's int64 nanoseconds (about 2562047h). Each part is truncated to
    whole nanoseconds, as Go does.
    """
    if not _DURATION.fullmatch(text):
        return "is not a duration (like 10s, 1m30s)"
    total = 0
    for whole, fraction, unit in re.findall(_DURATION_PART, text):
        whole = whole.lstrip("0")
        if len(whole) > len(str(MAX_NANOSECONDS)):
            total = MAX_NANOSECONDS + 1
            break
        fraction = fraction[:20]  # finer than a nanosecond of the longest unit
        total += int(whole or 0) * _UNIT_NS[unit] + int(fraction or 0) * _UNIT_NS[unit] // 10 ** len(fraction)
    if total > MAX_NANOSECONDS:
        return f"is longer than Go's limit of {MAX_NANOSECONDS // _UNIT_NS['h']}h"
    return "" if total > 0 else "is not more than 0"


def _duration(settings: Mapping[str, Entry], key: str, fallback: str, warnings: list[str]) -> str:
    value = _value(settings, key)
    problem = duration_problem(value) if value else ""
    if problem:
        warnings.append(f"{settings[key].source}: {value!r} {problem}; {fallback}")
        return ""
    return value


def _status(settings: Mapping[str, Entry], warnings: list[str]) -> str:
    value = _value(settings, "initial_status").lower()
    if value and value not in STATUSES:
        warnings.append(f"{settings['initial_status'].source}: {value!r} is not one of passing, warning, critical; default used")
        return ""
    return value


def _count(settings: Mapping[str, Entry], key: str, warnings: list[str]) -> int | None:
    value = _value(settings, key)
    if not value:
        return None
    if not re.fullmatch("[0-9]+", value):
        warnings.append(f"{settings[key].source}: {value!r} is not a whole number; ignored")
        return None
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(MAX_COUNT)) or int(digits) > MAX_COUNT:
        warnings.append(f"{settings[key].source}: {value!r} is more than {MAX_COUNT}; ignored")
        return None
    return int(digits)


def _headers(settings: Mapping[str, Entry], warnings: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`CHECK_HEADER` (several lines allowed) and `CHECK_HEADER_<anything>`, each `Name: value`."""
    headers: dict[str, list[str]] = {}
    for key in sorted(k for k in settings if k == "header" or k.startswith("header_")):
        for line in settings[key].value.splitlines():
            name, sep, value = line.partition(":")
            if not line.strip():
                continue
            if not sep or not name.strip():
                warnings.append(f"{settings[key].source}: {line!r} is not 'Name: value'; ignored")
                continue
            headers.setdefault(name.strip(), []).append(value.strip())
    return tuple((name, tuple(values)) for name, values in headers.items())


def _args(entry: Entry, address: str, port: int, warnings: list[str]) -> tuple[str, ...]:
    """Split like a shell would, then put in $SERVICE_IP and $SERVICE_PORT (registrator#687)."""
    try:
        args = shlex.split(entry.value)
    except ValueError as exc:
        warnings.append(f"{entry.source}: cannot split {entry.value!r}: {exc}; check left out")
        return ()
    return tuple(a.replace("$SERVICE_IP", address).replace("$SERVICE_PORT", str(port)) for a in args)
