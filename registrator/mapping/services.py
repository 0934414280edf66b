"""The pure heart of the agent: a container snapshot + settings → the services it should have.

No I/O here. The same input always gives the same services (ports and networks are sorted, nothing
depends on dict order), so a reconcile that finds nothing changed writes nothing. Problems with a
container's metadata come back as warnings, never as exceptions: one bad key never stops the rest
of the container, or any other container, from being registered.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from registrator.mapping.addressing import Target, port_targets
from registrator.mapping.checks import CheckKeys, check_keys, mirror_status, service_checks
from registrator.mapping.metadata import PortMetadata, container_metadata, truthy
from registrator.mapping.settings import DeregisterPolicy, DrainPolicy, EcsName, MappingSettings, PortSuffix
from registrator.mapping.template import TemplateError
from registrator.model import (
    META_AGENT,
    META_CONTAINER,
    META_HASH,
    META_HOST,
    CheckKind,
    CheckSpec,
    ContainerPort,
    ContainerSnapshot,
    ServiceSpec,
    plain,
)

UNHASHED_META = (META_HASH, META_AGENT)
RESERVED_META_PREFIXES = ("registrator-", "consul-")
MAX_META_PAIRS = 64
MAX_META_KEY = 128
MAX_META_VALUE = 512
# Consul sets no limit, but an ID is a path segment of every agent call about the service and a
# key in the catalog; 256 is far beyond `host:container:port:protocol` and any ID a person picks.
MAX_SERVICE_ID = 256
_META_KEY = re.compile(r"[A-Za-z0-9_-]+")  # fullmatch: Python's `$` would let a final newline through
_DNS_NAME = re.compile(r"^[A-Za-z0-9-]{1,63}$")
_INVISIBLE = {"Cf", "Zl", "Zp", "Cs"}  # format characters (U+202E turns text around), line and paragraph separators

# Keys that configure the registration itself and never become Meta (nor do `check_*` keys).
SERVICE_KEYS = {"name", "id", "tags", "ignore", "ip", "network", "ip_family"}
ECS_LABELS = {
    "ecs_cluster": "com.amazonaws.ecs.cluster",
    "ecs_task_arn": "com.amazonaws.ecs.task-arn",
    "ecs_task_family": "com.amazonaws.ecs.task-definition-family",
    "ecs_task_revision": "com.amazonaws.ecs.task-definition-version",
    "ecs_container": "com.amazonaws.ecs.container-name",
}


@dataclass(frozen=True, slots=True)
class Desired:
    """What a container should have registered.

    `retain` means: keep whatever is registered now and write nothing (a stopped container whose
    services the deregister policy keeps). `check_status` is, by service ID, the (status, output)
    its Docker-health mirror check should show (a service has one at most). `warnings` name the
    offending key; the caller logs them.
    """

    services: Mapping[str, ServiceSpec] = field(default_factory=lambda: MappingProxyType({}))
    retain: bool = False
    check_status: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # why ports were not registered, for debug logs
    maintenance: bool = False  # the services stay registered, in Consul maintenance mode (being stopped)
    # per service: (field, why)
    reasons: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=lambda: MappingProxyType({}))


def desired_services(snapshot: ContainerSnapshot | None, settings: MappingSettings, draining: bool = False) -> Desired:
    """`draining`: the container was sent its stop signal and is shutting down (see reconcile/kills.py).

    A draining container leaves DNS: deregistered, or in maintenance mode with `--on-kill
    maintenance` and always when the deregister policy may keep its services after it exits.
    """
    if snapshot is None or snapshot.paused or (draining and _deregisters_on_kill(settings)):
        return Desired()
    if not snapshot.running:
        return Desired(retain=_retains_after_exit(snapshot, settings.deregister))
    metadata = container_metadata(snapshot)
    warnings: list[str] = list(metadata.warnings)
    notes: list[str] = []
    warnings += [
        f"SERVICE_{port}_*: the container has no port {port}; ignored"
        for port in sorted(metadata.scoped_ports() - {p.port for p in snapshot.ports})
    ]
    ports = []
    for port in snapshot.ports:
        port_meta = metadata.for_port(port)
        targets = port_targets(snapshot, port, port_meta, settings, warnings, notes)
        if targets:
            ports.append((port, port_meta, targets))
    template_tags = _template_tags(snapshot, settings, warnings)
    ecs_meta = _ecs_meta(snapshot, settings)
    services: dict[str, ServiceSpec] = {}
    reasons: dict[str, tuple[tuple[str, str], ...]] = {}
    for port, port_meta, targets in ports:
        if truthy(port_meta.get("ignore")):
            notes.append(f"port {port.port}/{port.protocol}: ignored by {port_meta.entries['ignore'].source}")
            continue
        for spec, why in _services_for_port(snapshot, port, targets, port_meta, len(ports) > 1, template_tags, ecs_meta, settings,
                                            warnings):
            if spec.id in services:
                warnings.append(f"service ID {spec.id!r} is produced twice; the second is skipped")
            else:
                services[spec.id] = spec
                reasons[spec.id] = why
    status = mirror_status(snapshot, settings.checks)
    check_status = {sid: status for sid, spec in services.items() if any(c.kind is CheckKind.DOCKER_HEALTH for c in spec.checks)}
    return Desired(services=MappingProxyType(services), check_status=MappingProxyType(check_status),
                   warnings=tuple(dict.fromkeys(warnings)), notes=tuple(notes), maintenance=draining,
                   reasons=MappingProxyType(reasons))


def drained(current: Mapping[str, ServiceSpec], settings: MappingSettings) -> Desired:
    """A draining container's services from what it has registered, when no fresh inspect is at
    hand: none, or the same ones in maintenance mode (the rule `desired_services` applies)."""
    if _deregisters_on_kill(settings):
        return Desired()
    return Desired(services=MappingProxyType(dict(current)), maintenance=True)


def _deregisters_on_kill(settings: MappingSettings) -> bool:
    return settings.drain == DrainPolicy.DEREGISTER and settings.deregister is DeregisterPolicy.ALWAYS


def image_basename(image: str) -> str:
    """`registry:5000/team/app:1.2` → `app`; a digest reference `app@sha256:…` → `app`."""
    base = image.rsplit("/", 1)[-1]
    return base.split("@", 1)[0].split(":", 1)[0]


def parse_tags(text: str) -> list[str]:
    """Comma-separated tags in their order; `\\,` is a literal comma; blanks dropped."""
    tags = [part.replace("\\,", ",").strip() for part in re.split(r"(?<!\\),", text)]
    return [tag for tag in tags if tag]


def _printable_tags(tags: list[str], source: str, warnings: list[str]) -> list[str]:
    """Tags without control or invisible characters: Consul would store them, but DNS cannot carry them."""
    kept = []
    for tag in tags:
        if what := unprintable(tag):
            warnings.append(f"{source}: tag {tag!r} contains {what}; left out")
        else:
            kept.append(tag)
    return kept


def spec_hash(spec: ServiceSpec) -> str:
    """A digest of everything a registration carries, kept in Meta to detect drift cheaply.

    Consul's service listing does not return checks, so this is how a changed check is noticed.
    """
    meta = {k: v for k, v in spec.meta.items() if k not in UNHASHED_META}
    checks = [_canonical(c) for c in spec.checks]
    body = [spec.id, spec.name, spec.address, spec.port, list(spec.tags), sorted(meta.items()), checks,
            list(spec.tagged_addresses)]
    return hashlib.sha256(json.dumps(body, separators=(",", ":"), sort_keys=True).encode()).hexdigest()[:16]


def _canonical(check: CheckSpec) -> dict[str, object]:
    """A check as JSON: its fields that differ from their defaults, so two checks hash alike only when equal.

    Consul's JSON is a function of the check, so whatever is sent changes, this changes with it; a
    field added later with a default changes no hash.
    """
    body = {f.name: plain(getattr(check, f.name)) for f in fields(check) if getattr(check, f.name) != f.default}
    return {**body, "kind": check.kind.value}


def _retains_after_exit(snapshot: ContainerSnapshot, policy: DeregisterPolicy) -> bool:
    if policy is DeregisterPolicy.NEVER:
        return True
    if policy is DeregisterPolicy.ON_SUCCESS:
        return snapshot.exit_code != 0 and not snapshot.exit_code & 128
    return False


def _template_tags(snapshot: ContainerSnapshot, settings: MappingSettings, warnings: list[str]) -> list[str]:
    if settings.tags is None:
        return []
    try:
        tags = parse_tags(settings.tags.render(snapshot.attrs))
    except TemplateError as exc:
        warnings.append(f"-tags template {settings.tags.source!r}: {exc}; its tags are left out")
        return []
    return _printable_tags(tags, f"-tags template {settings.tags.source!r}", warnings)


def _services_for_port(
    snapshot: ContainerSnapshot,
    port: ContainerPort,
    targets: list[Target],
    port_meta: PortMetadata,
    multi_port: bool,
    template_tags: list[str],
    ecs_meta: dict[str, str],
    settings: MappingSettings,
    warnings: list[str],
) -> list[tuple[ServiceSpec, tuple[tuple[str, str], ...]]]:
    name = port_meta.get("name").strip()
    if not name and settings.explicit:
        return []
    if not name and not _default_name(snapshot, settings):
        warnings.append(f"port {port.port}: no SERVICE_NAME and no image name to default to; not registered")
        return []
    base_name = name or _default_name(snapshot, settings)
    if what := unprintable(base_name):
        source = port_meta.entries["name"].source if name else "image name"
        warnings.append(f"{source}: service name {base_name!r} contains {what}; not registered")
        return []
    name_reason = port_meta.entries["name"].source if name else _default_name_reason(snapshot, settings)
    full_name = _service_name(base_name, port, port_meta, multi_port, settings, warnings)
    if full_name != base_name:
        name_reason += f", with the -{port.port} suffix (--port-suffix {settings.port_suffix.value})"
    base_id = _service_id(snapshot, port, port_meta, multi_port, settings)
    problem = service_id_problem(base_id)
    if problem:
        source = port_meta.entries["id"].source if port_meta.get("id").strip() else f"port {port.port}/{port.protocol}"
        warnings.append(f"{source}: service ID {base_id!r} {problem}; not registered")
        return []
    own_tags = parse_tags(port_meta.get("tags"))
    if own_tags:
        own_tags = _printable_tags(own_tags, port_meta.entries["tags"].source, warnings)
    protocol_tag = [port.protocol] if port.protocol != "tcp" else []
    tags = list(dict.fromkeys(own_tags + template_tags + protocol_tag))
    tag_reasons = [port_meta.entries["tags"].source] if own_tags else []
    tag_reasons += ["-tags"] if template_tags else []
    tag_reasons += [f"{port.protocol} port"] if protocol_tag else []
    port_checks = check_keys(port_meta)
    warnings += port_checks.warnings
    meta = _meta(port_meta, {**settings.meta, **ecs_meta}, port_checks, warnings)
    meta_reasons = sorted(e.source for k, e in port_meta.entries.items() if k in meta) + (["--meta"] if settings.meta else [])
    meta_reasons += ["ECS labels"] if ecs_meta else []
    result: list[tuple[ServiceSpec, tuple[tuple[str, str], ...]]] = []
    for index, target in enumerate(targets):
        service_id = base_id if index == 0 else f"{base_id}:{target.port}"
        checks = service_checks(port_checks.groups, service_id, target.address, target.port, snapshot, settings.checks,
                                settings.host.runs_scripts, warnings, port.protocol)
        tagged = (("lan_ipv4", target.ipv4, target.port), ("lan_ipv6", target.ipv6, target.ipv6_port or target.port)) \
            if target.ipv4 and target.ipv6 else ()
        spec = ServiceSpec(service_id, full_name, target.address, target.port, tuple(tags), checks=checks,
                           tagged_addresses=tagged)
        why = (
            ("name", name_reason),
            ("id", port_meta.entries["id"].source if "id" in port_meta.entries else "host:container:port[:protocol]"),
            ("address", target.rule),
            ("tags", ", ".join(tag_reasons) or "none"),
            ("meta", ", ".join(meta_reasons) or "ownership only"),
            ("checks", ", ".join(c.check_id for c in checks) or "none"),
        )
        result.append((_with_ownership(spec, snapshot, meta, settings), why))
    return result


def _default_name_reason(snapshot: ContainerSnapshot, settings: MappingSettings) -> str:
    if _is_ecs(snapshot, settings) and _default_name(snapshot, settings) != image_basename(snapshot.image):
        return f"ECS {settings.ecs_name} label (--ecs-name {settings.ecs_name})"
    return f"image basename of {snapshot.image}"


def _default_name(snapshot: ContainerSnapshot, settings: MappingSettings) -> str:
    """The image basename, or under ECS the container name or task family (`--ecs-name`)."""
    if _is_ecs(snapshot, settings) and settings.ecs_name != EcsName.IMAGE:
        label = ECS_LABELS["ecs_container" if settings.ecs_name == EcsName.CONTAINER else "ecs_task_family"]
        if snapshot.labels.get(label):
            return snapshot.labels[label]
    return image_basename(snapshot.image)


def _is_ecs(snapshot: ContainerSnapshot, settings: MappingSettings) -> bool:
    return settings.ecs and ECS_LABELS["ecs_task_arn"] in snapshot.labels


def _ecs_meta(snapshot: ContainerSnapshot, settings: MappingSettings) -> dict[str, str]:
    """ecs_cluster, ecs_task_arn, ecs_task_family, ecs_task_revision, ecs_container from ECS labels."""
    if not _is_ecs(snapshot, settings):
        return {}
    return {key: snapshot.labels[label][:MAX_META_VALUE] for key, label in ECS_LABELS.items() if snapshot.labels.get(label)}


def _service_name(
    name: str, port: ContainerPort, port_meta: PortMetadata, multi_port: bool, settings: MappingSettings, warnings: list[str]
) -> str:
    suffixed = {
        PortSuffix.AUTO: multi_port and "name" not in port_meta.port_scoped,
        PortSuffix.ALWAYS: "name" not in port_meta.port_scoped,
        PortSuffix.NEVER: False,
    }[settings.port_suffix]
    if suffixed:
        name = f"{name}-{port.port}"
    if not _DNS_NAME.match(name):
        source = port_meta.entries["name"].source if "name" in port_meta.entries else "image name"
        warnings.append(f"{source}: service name {name!r} is not a valid DNS label; it is registered but not discoverable via "
                        "DNS")
    return name


def _service_id(
    snapshot: ContainerSnapshot, port: ContainerPort, port_meta: PortMetadata, multi_port: bool, settings: MappingSettings
) -> str:
    """registrator's `host:container:port[:udp]`, or SERVICE_ID.

    Every protocol but TCP adds `:<protocol>`; registrator did so for UDP only, and an SCTP port took
    the ID of the TCP port beside it. Unlike registrator, a custom ID keeps that distinction
    (registrator#599) unless it was set for that protocol, and a container-wide SERVICE_ID on several
    ports gets `:<port>` so the services do not overwrite each other.
    """
    suffix = "" if port.protocol == "tcp" else f":{port.protocol}"
    custom = port_meta.get("id").strip()
    if not custom:
        name = _fitting_name(snapshot.name, len(settings.hostname) + len(f"::{port.port}{suffix}"))
        return f"{settings.hostname}:{name}:{port.port}{suffix}"
    if "id" not in port_meta.port_scoped and multi_port:
        custom = f"{custom}:{port.port}"
    return custom if "id" in port_meta.protocol_scoped else f"{custom}{suffix}"


def _fitting_name(name: str, taken: int) -> str:
    """A container name as long as a service ID leaves room for (Docker's names have no bound): cut, with a
    digest of the whole name, so two long names that share a beginning stay two IDs."""
    room = MAX_SERVICE_ID - taken
    if len(name) <= room or room < 17:
        return name
    return f"{name[:room - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def service_id_problem(service_id: str) -> str:
    """Why a service ID cannot be one segment of the agent's URL paths; empty when it is fine.

    The HTTP client collapses dot segments: deregistering `x/../victim` removed the service `victim`.
    """
    for char in "/\\?#":
        if char in service_id:
            return f"contains {char!r}"
    if what := unprintable(service_id):
        return f"contains {what}"
    if service_id in (".", ".."):
        return "is a dot segment"
    if len(service_id) > MAX_SERVICE_ID:
        return f"is longer than {MAX_SERVICE_ID} characters"
    return ""


def _meta(port_meta: PortMetadata, defaults: Mapping[str, str], port_checks: CheckKeys, warnings: list[str]) -> dict[str, str]:
    meta = dict(defaults)
    for key, entry in sorted(port_meta.entries.items()):
        if key in SERVICE_KEYS or key in port_checks.keys:
            continue
        too_long = len(entry.value) > MAX_META_VALUE and f"value longer than {MAX_META_VALUE} characters"
        problem = meta_key_problem(key) or too_long \
            or ((what := unprintable(entry.value)) and f"its value contains {what}")
        if problem:
            warnings.append(f"{entry.source}: Meta key {key!r} dropped: {problem}")
        else:
            meta[key] = entry.value
    room = MAX_META_PAIRS - 4  # the ownership keys: host, container, agent and hash
    if len(meta) > room:
        dropped = sorted(meta)[room:]
        warnings.append(f"more than {room} Meta pairs; dropped {', '.join(dropped)}")
        meta = {k: meta[k] for k in sorted(meta)[:room]}
    return meta


def unprintable(text: str) -> str:
    """The kind of the first character Consul or a reader cannot take in a name, ID, tag or Meta value; empty if none.

    Control characters forge log lines and break DNS; format characters (U+202E) Consul stores but
    then answers 400 to every URL that holds them, and they show text other than what it is.
    """
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            return "a control character"
        if category in _INVISIBLE:
            return f"an invisible character (U+{ord(char):04X})"
    return ""


def meta_key_problem(key: str) -> str:
    """Why Consul (or our ownership keys) would reject a Meta key; empty when it is fine."""
    if not _META_KEY.fullmatch(key):
        return "only letters, digits, '-' and '_' are allowed"
    if len(key) > MAX_META_KEY:
        return f"longer than {MAX_META_KEY} characters"
    if key.startswith(RESERVED_META_PREFIXES):
        return "the 'consul-' and 'registrator-' prefixes are reserved"
    return ""


def _with_ownership(spec: ServiceSpec, snapshot: ContainerSnapshot, meta: dict[str, str],
                    settings: MappingSettings) -> ServiceSpec:
    full = {**meta, META_HOST: settings.hostname, META_CONTAINER: snapshot.id}
    if settings.host.agent:
        full[META_AGENT] = settings.host.agent
    unhashed = replace(spec, meta=MappingProxyType(full))
    return replace(spec, meta=MappingProxyType({**full, META_HASH: spec_hash(unhashed)}))
