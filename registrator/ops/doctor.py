"""`registrator doctor`: whether this host has what the agent needs, checked in the order it needs it.

Each check returns a `Result`; one whose prerequisite failed is skipped with the reason, and any
failure, foreseen or not, is a line rather than a traceback. Nothing is written to Docker or Consul:
the token's rights are asked of Consul (`ConsulReader.authorize`), never tried. Every call is bounded
by a timeout of a few seconds and tried once, where startup waits for its dependencies forever.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from registrator.config import Options
from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulError, ConsulReader
from registrator.docker.ecs import EcsAgent, EcsError
from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import DockerSource
from registrator.mapping.services import ECS_LABELS, desired_services
from registrator.mapping.settings import MappingSettings
from registrator.model import ContainerSnapshot, host_port
from registrator.startup import StartupError, resolve

DOCKER, HOST, CONSUL, SERVICE_WRITE, AGENT_READ, SCRIPT_CHECKS, DNS, ECS = (
    "docker", "host", "consul", "service:write", "agent:read", "script-checks", "dns", "ecs")
DOCKER_TIMEOUT = 5.0
DNS_TIMEOUT = 2.0
DNS_PORT = 8600
# Checked for service:write when no running container would register a service: some name has to be.
PROBE_NAME = "registrator-doctor"
AUTHORIZE_BATCH = 64  # Consul refuses more authorizations in one call
SHOWN_NAMES = 5
TOKEN_SOURCES = "CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN or --consul-token"
WRITE_RULE = 'service_prefix "" { policy = "write" }'


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    ok: bool | None  # None: skipped, because a check it needs failed or it does not apply here
    required: bool  # only required checks decide the exit status: without them the agent cannot work
    detail: str
    fix: str = ""


@dataclass
class Findings:
    """What earlier steps learnt that later checks need."""

    mapping: MappingSettings | None = None  # the settings `run` would settle, once the host check passed
    containers: list[ContainerSnapshot] = field(default_factory=list)
    unread: str = ""  # why the running containers are not all known; "" when they are


def diagnose(options: Options, docker: DockerSource, consul: ConsulReader, *, ecs_url: str | None, dns: str) -> list[Result]:
    """Every check, in the order the agent needs them. `ecs_url` is None with `--no-ecs`."""
    found = Findings()
    results = [_guarded(DOCKER, True, lambda: check_docker(docker, docker_address(os.environ)))]
    docker_up = bool(results[-1].ok)
    if docker_up:
        results.append(_guarded(HOST, True, lambda: check_host(options, docker, found)))
        found.containers, found.unread = running_containers(docker)
    else:
        results.append(skipped(HOST, True, "needs Docker: the identity is the Docker daemon's name unless --hostname"))
        found.unread = "Docker is not reachable"
    results.append(_guarded(CONSUL, True, lambda: check_consul(consul)))
    if results[-1].ok:
        names = service_names(found.containers, found.mapping) if found.mapping else []
        unknown = found.unread if found.mapping else "the host check failed"
        results += [
            _guarded(SERVICE_WRITE, True, lambda: check_service_write(consul, names, unknown)),
            _guarded(AGENT_READ, False, lambda: check_agent_read(consul)),
            _guarded(SCRIPT_CHECKS, False, lambda: check_script_checks(consul, options.mapping.checks.allow_scripts)),
        ]
    else:
        results += [skipped(check, required, "needs Consul (above)")
                    for check, required in ((SERVICE_WRITE, True), (AGENT_READ, False), (SCRIPT_CHECKS, False))]
    results.append(_guarded(DNS, False, lambda: check_dns(dns)))
    if docker_up:
        results.append(_guarded(ECS, True, lambda: check_ecs(ecs_url, found.containers, found.unread)))
    else:
        results.append(skipped(ECS, False, "needs Docker, to find ECS containers"))
    return results


def _guarded(check: str, required: bool, run: Callable[[], Result]) -> Result:
    """A failure nobody foresaw is one more line, and the other checks still run."""
    try:
        return run()
    except Exception as exc:
        return Result(check, False, required, _unexpected(exc), fix="report this line as a bug of registrator")


def _unexpected(exc: Exception) -> str:
    return f"unexpected error: {type(exc).__name__}: {str(exc)[:300]}"


def skipped(check: str, required: bool, why: str) -> Result:
    return Result(check, None, required, f"skipped: {why}")


def docker_address(env: Mapping[str, str]) -> str:
    """Where docker-py looks for the engine, for the report."""
    return env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def check_docker(docker: DockerSource, where: str) -> Result:
    try:
        version = docker.api_version()  # connecting negotiates it with the engine
        docker.ping()
    except DockerUnavailable as exc:
        return Result(DOCKER, False, True, f"{where}: {exc}",
                      fix="start dockerd or point DOCKER_HOST at it; the agent's user needs the socket "
                          "(in a container: -v /var/run/docker.sock:/var/run/docker.sock:ro)")
    return Result(DOCKER, True, True, f"{where} answers, API {version}")


def check_host(options: Options, docker: DockerSource, found: Findings) -> Result:
    """The identity and host IP `run` would settle, by its own rules (`startup.resolve`), tried once."""
    try:
        settings = resolve(replace(options, retry_attempts=0), docker, None, threading.Event())
    except StartupError as exc:
        message = str(exc)
        fix = ("pass -ip ADDR, or another --ip-from: route, interface:NAME, ec2, docker" if message.startswith("host IP")
               else "pass --hostname NAME" if message.startswith("host identity") else "see the docker line")
        return Result(HOST, False, True, message, fix=fix)
    found.mapping = settings.mapping
    host = settings.mapping.host
    source = "--hostname" if options.hostname else "the Docker daemon's name"
    return Result(HOST, True, True, f"identity {host.name} ({source}); published ports registered at {host.ip} "
                                    f"({host.ip_source})")


def running_containers(docker: DockerSource) -> tuple[list[ContainerSnapshot], str]:
    """The running containers as the agent reads them, and why not all could be read ("" when all were).

    The first failure ends the reading, so a Docker that stopped answering costs one timeout. Read
    without the ECS agent, so that an unreachable one costs its timeout once (in the ECS check), not
    once per awsvpc task; such tasks have no address without it, so their names are missing.
    """
    containers: list[ContainerSnapshot] = []
    try:
        for container_id in sorted(docker.running()):
            snapshot = docker.inspect(container_id)
            if snapshot is not None:
                containers.append(snapshot)
    except DockerUnavailable as exc:
        return containers, str(exc)
    except Exception as exc:  # as in _guarded: a line of the report, never a traceback
        return containers, _unexpected(exc)
    return containers, ""


def service_names(containers: Iterable[ContainerSnapshot], mapping: MappingSettings) -> list[str]:
    """The service names these containers would be registered under."""
    return sorted({spec.name for snapshot in containers for spec in desired_services(snapshot, mapping).services.values()})


def check_consul(consul: ConsulReader) -> Result:
    url = consul.endpoint.url
    try:
        leader = consul.leader()
    except ConsulError as exc:
        return Result(CONSUL, False, True, str(exc),
                      fix="start the Consul agent, or pass where it listens: consul://HOST:PORT, consul-tls://HOST:PORT, "
                          "consul-unix:///PATH or CONSUL_HTTP_ADDR")
    if not leader:
        return Result(CONSUL, False, True, f"{url} answers, but its cluster has no leader",
                      fix="check the Consul servers: consul members, consul operator raft list-peers")
    try:
        version = f"Consul {consul.version()}"
    except ConsulError as exc:
        version = f"version unknown: {exc}" if exc.transient else "version hidden by the ACL (see agent:read)"
    return Result(CONSUL, True, True, f"{url} answers, leader {leader}; {version}")


def check_service_write(consul: ConsulReader, names: list[str], unknown: str) -> Result:
    """service:write for the names the running containers would get (or a stand-in); asked, not tried."""
    checked = names or [PROBE_NAME]
    denied: list[str] = []
    try:
        for start in range(0, len(checked), AUTHORIZE_BATCH):
            batch = checked[start:start + AUTHORIZE_BATCH]
            allowed = consul.authorize([("service", name, "write") for name in batch])
            if allowed is None:
                return Result(SERVICE_WRITE, True, True, "ACLs are disabled on this Consul agent: every call is allowed")
            denied += [name for name, ok in zip(batch, allowed, strict=True) if not ok]
    except ConsulError as exc:
        return Result(SERVICE_WRITE, False, True, str(exc), fix=_denied_fix(exc, f"a token whose policy has {WRITE_RULE}"))
    return write_result(names, denied, unknown, token=bool(consul.endpoint.token))


def write_result(names: list[str], denied: list[str], unknown: str, token: bool) -> Result:
    """The service:write line from Consul's answer: which names were checked, which were refused."""
    whose = "the token" if token else "the anonymous token (no token given)"
    if not names:
        why = f"the containers' names are unknown: {unknown}" if unknown else "no running container would register a service"
        verdict = "lacks" if denied else "has"
        return Result(SERVICE_WRITE, not denied, True, f"{whose} {verdict} service:write for {PROBE_NAME}, a stand-in: {why}",
                      fix=_write_fix(token) if denied else "")
    named = "the name" if len(names) == 1 else f"the {len(names)} names"
    unread = f" (not every container could be read: {unknown})" if unknown else ""
    if not denied:
        return Result(SERVICE_WRITE, True, True,
                      f"{whose} has service:write for {named} running containers would get: {shown(names)}{unread}")
    some = "" if len(denied) == len(names) else f"{len(denied)} of "
    return Result(SERVICE_WRITE, False, True,
                  f"{whose} lacks service:write for {some}{named} running containers would get: {shown(denied)}{unread}",
                  fix=_write_fix(token))


def _write_fix(token: bool) -> str:
    if token:
        return f'add {WRITE_RULE} to the token\'s policy, or service "NAME" {{ policy = "write" }} for each name'
    return f"give the agent a token whose policy has {WRITE_RULE} ({TOKEN_SOURCES})"


def _denied_fix(exc: ConsulError, otherwise: str) -> str:
    """A token Consul does not know at all is another fix than one that lacks a right."""
    return f"use a token this Consul knows ({TOKEN_SOURCES})" if "ACL not found" in str(exc) else otherwise


def check_agent_read(consul: ConsulReader) -> Result:
    """agent:read is seen, not asked: reading `/v1/agent/self` is the call that needs it, and the
    agent's node name (its segment) is only known from that answer."""
    try:
        consul.version()
    except ConsulError as exc:
        return Result(AGENT_READ, False, False, f"the agent will leave out script and Docker exec checks: {exc}",
                      fix="" if exc.transient else _denied_fix(exc, 'add agent_prefix "" { policy = "read" } to the token\'s '
                                                                    'policy'))
    return Result(AGENT_READ, True, False, "the Consul agent's configuration is readable (/v1/agent/self)")


def check_script_checks(consul: ConsulReader, allowed: bool) -> Result:
    try:
        runs = consul.runs_script_checks()
    except ConsulError as exc:
        return Result(SCRIPT_CHECKS, False, False, str(exc))
    return script_result(runs, allowed)


def script_result(runs: bool | None, allowed: bool) -> Result:
    """Informational, but for a mismatch: `--allow-script-checks` given to an agent that will not run them."""
    if runs is None:
        return skipped(SCRIPT_CHECKS, False, "the token may not read the Consul agent's configuration (agent:read)")
    if runs:
        flag = "" if allowed else "; SERVICE_CHECK_SCRIPT checks also need --allow-script-checks"
        return Result(SCRIPT_CHECKS, True, False, "the Consul agent runs script and Docker exec checks "
                                                  f"(enable_script_checks){flag}")
    if allowed:
        return Result(SCRIPT_CHECKS, False, False,
                      "--allow-script-checks is given, but the Consul agent does not run script checks: they are left out",
                      fix="enable_script_checks = true in the Consul agent's configuration (they run on the Consul host)")
    return Result(SCRIPT_CHECKS, True, False, "the Consul agent does not run script checks (enable_script_checks): "
                                              "SERVICE_CHECK_DOCKER and SERVICE_CHECK_SCRIPT checks are left out")


def default_dns(endpoint: ConsulEndpoint) -> str:
    """Consul's DNS port on the Consul agent's host."""
    return host_port("127.0.0.1" if endpoint.socket else endpoint.host, DNS_PORT)


def check_dns(server: str) -> Result:
    """`consul.service.consul` through Consul DNS, as a consumer would ask it."""
    from registrator.ops.resolve import ResolveError, resolve_service  # dnspython: 20 ms, only for this check

    fix = "pass --dns HOST:PORT where the Consul agent serves DNS (its ports.dns, 8600 by default)"
    try:
        endpoints = resolve_service("consul", "", server, timeout=DNS_TIMEOUT)
    except ResolveError as exc:
        return Result(DNS, False, False, str(exc), fix=fix)
    return dns_result(server, endpoints)


def dns_result(server: str, endpoints: list[tuple[str, int]]) -> Result:
    if endpoints:
        return Result(DNS, True, False, f"{server} answers consul.service.consul: {shown([host_port(*e) for e in endpoints])}")
    return Result(DNS, False, False, f"{server} answers, but not with consul.service.consul's servers",
                  fix="with default-deny ACLs, DNS uses the Consul agent's default token (else anonymous): give it "
                      'service_prefix "" { policy = "read" } and node_prefix "" { policy = "read" }')


def check_ecs(url: str | None, containers: list[ContainerSnapshot], unread: str) -> Result:
    """The ECS agent, which only awsvpc tasks' addresses come from; needed only with ECS tasks running."""
    if url is None:
        return skipped(ECS, False, "ECS awareness is off (--no-ecs)")
    tasks = sorted((c for c in containers if ECS_LABELS["ecs_task_arn"] in c.labels), key=lambda c: c.name)
    if not tasks:
        why = f"not every container could be read: {unread}" if unread else "no running container has ECS labels"
        return skipped(ECS, False, why)
    # As `run` (DockerSource.inspect): only a task sharing another container's network namespace with
    # no address Docker knows (awsvpc) needs the agent; any container may carry the labels.
    awsvpc = [c for c in tasks if c.network_mode.startswith("container:") and not (c.ip or c.networks_with_address)]
    asked = (awsvpc or tasks)[0]
    try:
        address = EcsAgent(url).task_ip(asked.id)
    except EcsError as exc:
        needed = f"awsvpc tasks need it for their address: {shown([task.name for task in awsvpc])}" if awsvpc else \
            f"ECS-labelled containers running, none of them awsvpc: {shown([task.name for task in tasks])}"
        return Result(ECS, False, bool(awsvpc), f"{exc}; {needed}",
                      fix="pass --ecs-agent-url where the ECS agent's introspection API listens, or --no-ecs")
    task = f"task address {address}" if address else "no awsvpc task address"
    return Result(ECS, True, bool(awsvpc), f"the ECS agent at {url} answers for container {shown([asked.name])} ({task})")


def shown(names: list[str]) -> str:
    """Names for a line of the report: container-supplied, so control characters escaped, each and
    the list cut short."""
    parts = [name if name.isprintable() and len(name) <= 64 else repr(name[:64]) for name in names[:SHOWN_NAMES]]
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return ", ".join(parts) + more


def healthy(results: list[Result]) -> bool:
    """The exit status: every required check passed (a skipped one did not)."""
    return all(result.ok for result in results if result.required)


def as_json(results: list[Result]) -> list[dict[str, Any]]:
    return [asdict(result) for result in results]


def render(results: list[Result]) -> str:
    """One ✓/✗ line per check (- when skipped), a fix under each failure, and the verdict."""
    lines = []
    for result in results:
        mark = "-" if result.ok is None else "✓" if result.ok else "✗"
        lines.append(f"{mark} {result.check}{'' if result.required else ' (optional)'}: {result.detail}")
        if result.ok is False and result.fix:
            lines.append(f"    fix: {result.fix}")
    failed = [result.check for result in results if result.required and result.ok is False]
    unchecked = [result.check for result in results if result.required and result.ok is None]
    if failed or unchecked:
        lines.append("; ".join(f"{what}: {', '.join(checks)}" for what, checks in
                               (("required checks failed", failed), ("required checks not run", unchecked)) if checks))
    else:
        lines.append("every required check passed")
    return "\n".join(lines)
