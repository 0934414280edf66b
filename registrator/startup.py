"""Startup: wait for Docker and Consul, then settle what they tell, into the final Settings.

The one place where the host identity, the host IP and the Consul agent's abilities are decided.
`run`, `sync` and `explain` all resolve through here, so `explain` shows what `run` would write.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
from typing import Any, Protocol

from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    stop_when_event_set,
    wait_fixed,
)
from tenacity.stop import stop_base

from registrator.config import Options, Settings
from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulError
from registrator.docker.engine import DockerUnavailable
from registrator.hostip import HostIPError, address_problem, detect_host_ip, ec2_local_ipv4, interface_ipv4
from registrator.mapping.services import service_id_problem
from registrator.mapping.settings import HostFacts, MappingSettings
from registrator.retrying import sleeper, transient

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A dependency stayed unreachable for all of `-retry-attempts`."""


class Stopped(Exception):
    """The agent was asked to stop while it waited for a dependency."""


class DockerDaemon(Protocol):
    def daemon_name(self) -> str: ...
    def advertised_address(self) -> str: ...


class ConsulAgentInfo(Protocol):
    @property
    def endpoint(self) -> ConsulEndpoint: ...
    def leader(self) -> str: ...
    def runs_script_checks(self) -> bool | None: ...


def resolve(options: Options, docker: DockerDaemon, consul: ConsulAgentInfo | None, stop: threading.Event) -> Settings:
    """Wait for Docker (and Consul, when given), and settle host identity, host IP and script checks.

    Raises StartupError when `-retry-attempts` ran out, Stopped when `stop` was set meanwhile.
    """
    hostname = _retrying(options, stop, retry_if_exception_type(DockerUnavailable), "Docker")(
        lambda: options.hostname or docker.daemon_name()
    )
    if problem := service_id_problem(f"{hostname}:x:1"):
        source = "--hostname" if options.hostname else "the Docker daemon's name (set --hostname)"
        raise StartupError(f"host identity {hostname!r} from {source} {problem}: it starts every service ID")
    if consul is not None:
        _wait_for_consul(options, consul, stop)
    host_ip, source = (options.ip, "-ip") if options.ip else _detect_host_ip(options, docker, stop)
    if consul is None:
        runs_scripts = True  # without Consul (explain): show the checks the agent would send an agent that runs them
    else:
        runs_scripts = _agent_runs_scripts(options, consul, stop)
    host = HostFacts(name=str(hostname), ip=host_ip, ip_source=source, runs_scripts=runs_scripts, agent=agent_instance())
    settings = Settings(options=options, mapping=MappingSettings.of(options.mapping, host))
    log.info("host identity %s (this agent: %s); published ports registered at %s (%s)", host.name, host.agent, host.ip, source)
    return settings


def agent_instance() -> str:
    """Names this process in the Meta of what it writes, so that a second writer under one host
    identity is noticed and its operator can find it: the machine's name (the container's, when the
    agent runs in one), the process ID, and a random part for two processes that got one PID."""
    machine = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "unnamed"
    return f"{machine}:{os.getpid()}:{secrets.token_hex(4)}"


def _retrying(options: Options, stop: threading.Event, retry: Any, what: str) -> Retrying:
    """registrator's `-retry-attempts` (-1: forever) and `-retry-interval` for reaching a dependency."""
    stop_when: stop_base = stop_when_event_set(stop)
    if options.retry_attempts >= 0:
        stop_when = stop_any(stop_when, stop_after_attempt(options.retry_attempts + 1))

    def give_up(state: Any) -> None:
        if stop.is_set():
            raise Stopped()
        outcome = state.outcome.exception() if state.outcome and state.outcome.failed else "no leader"
        tries = f"{state.attempt_number} attempt" + ("s" if state.attempt_number != 1 else "")
        raise StartupError(f"{what} not reachable after {tries}: {outcome}")

    def report(state: Any) -> None:
        failure = state.outcome.exception() if state.outcome and state.outcome.failed else "no leader yet"
        log.warning("%s: %s; retrying in %.1fs", what, failure, state.upcoming_sleep)

    return Retrying(retry=retry, wait=wait_fixed(options.retry_interval_ms / 1000), stop=stop_when,
                    sleep=sleeper(stop), before_sleep=report, retry_error_callback=give_up)


def _detect_host_ip(options: Options, docker: DockerDaemon, stop: threading.Event) -> tuple[str, str]:
    """The address for published ports by `--ip-from`; retried like startup."""
    method = options.ip_from

    def found() -> str:
        if method == "route":
            return detect_host_ip()
        if method.startswith("interface:"):
            return interface_ipv4(method.partition(":")[2])
        if method == "ec2":
            return ec2_local_ipv4(options.ec2_metadata_url)
        address = docker.advertised_address()
        if not address:
            raise HostIPError("the Docker daemon advertises no address (not in swarm mode)")
        return address

    def detect() -> str:
        """What the source answered, if it is one host's IP address (a proxy's HTML page is not)."""
        address = found()
        if problem := address_problem(address, version=4 if method == "ec2" else 0):
            raise HostIPError(f"found {address[:80]!r}, which {problem}")
        return address

    address = _retrying(options, stop, retry_if_exception_type((HostIPError, DockerUnavailable)), "host IP (--ip-from "
                                                                                                  f"{method})")(detect)
    return str(address), f"--ip-from {method}"


def _wait_for_consul(options: Options, consul: ConsulAgentInfo, stop: threading.Event) -> None:
    """Block until the Consul agent answers and its cluster has a leader (registrator#593)."""
    retry = retry_if_exception(transient) | retry_if_result(lambda leader: not leader)
    leader = _retrying(options, stop, retry, f"Consul at {consul.endpoint.url}")(consul.leader)
    log.info("Consul at %s has leader %s", consul.endpoint.url, leader)


def _agent_runs_scripts(options: Options, consul: ConsulAgentInfo, stop: threading.Event) -> bool:
    """Script and Docker exec checks need the Consul agent's enable_script_checks; ask it once, as a
    dependency is waited for (a token Consul does not know yet is a failure that passes)."""
    allowed = options.mapping.checks.allow_scripts
    try:
        runs = _retrying(options, stop, retry_if_exception(transient),
                         f"Consul at {consul.endpoint.url}")(consul.runs_script_checks)
    except ConsulError as exc:
        runs = None
        log.warning("%s", exc)
    if runs is None:
        log.warning("cannot read the Consul agent's configuration (ACL agent:read); script and Docker exec checks are left out")
    elif not runs:
        log.info("the Consul agent has enable_script_checks off; script and Docker exec checks are left out")
    if allowed:
        log.warning("--allow-script-checks: SERVICE_CHECK_SCRIPT commands from containers run on the Consul host")
    return bool(runs)
