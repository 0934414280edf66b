"""The `registrator` command: thin click commands over the registrator package.

A gliderlabs/registrator command line works unchanged: `registrator -ip 10.0.0.5 -internal
consul://127.0.0.1:8500` runs the agent (options before the URI, single-dash long flags, Go's
`-flag=false` for booleans), exactly like `registrator run ...`.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from registrator import __version__
from registrator.checks import CheckSettings
from registrator.config import ConfigError, ConsulEndpoint, Settings, consul_endpoint, parse_meta_options
from registrator.consul_sink import ConsulError, ConsulSink
from registrator.controller import Controller, StartupError
from registrator.docker_source import DockerSource, DockerUnavailable
from registrator.ecs_source import DEFAULT_URL as DEFAULT_ECS_URL
from registrator.ecs_source import EcsAgent
from registrator.hostip import HostIPError, check_method
from registrator.mapping import META_CONTAINER, DeregisterPolicy, MappingSettings, PortSuffix
from registrator.model import ServiceSpec
from registrator.template import TemplateError, parse

log = logging.getLogger("registrator")
_GO_BOOL = re.compile(r"^(--?)([A-Za-z][\w-]*)=(1|0|t|f|T|F|true|false|TRUE|FALSE|True|False)$")


class RunCommand(click.Command):
    """Accepts Go's `-flag=true|false` spelling for boolean flags, as registrator users write it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flags = {name for p in self.params if isinstance(p, click.Option) and p.is_flag for name in p.opts}
        rewritten = []
        for arg in args:
            match = _GO_BOOL.match(arg)
            if match and f"{match[1]}{match[2]}" in flags:
                on = match[3].lower() in ("1", "t", "true")
                rewritten.append(f"{match[1]}{match[2]}" if on else f"--no-{match[2]}")
            else:
                rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


class RegistratorGroup(click.Group):
    """Without a subcommand, the arguments are a registrator command line for `run`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args == ["-version"]:
            args = ["--version"]
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Every flag also reads REGISTRATOR_<FLAG> from the environment."""
    return click.option(*decls, envvar=f"REGISTRATOR_{env}", show_envvar=True, **kwargs)


URI = click.argument("uri", required=False, envvar="REGISTRATOR_URI", metavar="[consul://HOST:PORT]")
HOSTNAME = option("--hostname", env="HOSTNAME", help="Identity of this host: prefix of service IDs and owner recorded in service Meta.  [default: the Docker daemon's name]")
CONSUL_TIMEOUT = option("--consul-timeout", env="CONSUL_TIMEOUT", type=click.FloatRange(min=0.1), default=5.0,
                        show_default=True, help="Seconds before a Consul call is abandoned.")


@click.group(cls=RegistratorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="registrator")
def main() -> None:
    """Register running Docker containers as Consul services.

    \b
    Examples:
      registrator -ip 10.0.0.5 -internal consul://127.0.0.1:8500   (a registrator command line)
      registrator run --ip 10.0.0.5 --meta team=web consul://127.0.0.1:8500
      registrator list --json
    """


@main.command(cls=RunCommand)
@URI
@option("-ip", "--ip", env="IP", help="Address registered for published ports.  [default: detected, see --ip-from]")
@option("--ip-from", env="IP_FROM", default="route", show_default=True,
        help="How to detect the host IP without -ip: route (default-route interface), interface:NAME, ec2 (instance metadata, IMDSv2), docker (swarm advertise address).")
@option("--ec2-metadata-url", env="EC2_METADATA_URL", default="http://169.254.169.254", show_default=True, hidden=True)
@option("--ip6", env="IP6", default="", help="The host's IPv6 address: published ports also get it as TaggedAddresses lan_ipv6.")
@option("--network", env="NETWORK", default="", help="Register containers on this Docker network with their address there and the exposed port.")
@option("--ip-family", env="IP_FAMILY", type=click.Choice(["ipv4", "ipv6"]), default="ipv4", show_default=True,
        help="Which container address is the service Address when it has both; the other is a TaggedAddress.")
@option("--ecs/--no-ecs", env="ECS", default=True, show_default=True, help="ECS awareness for containers with ECS labels: names, Meta, awsvpc task addresses.")
@option("--ecs-name", env="ECS_NAME", type=click.Choice(["container", "family", "image"]), default="container", show_default=True,
        help="Default service name of ECS containers: the ECS container name, the task family, or the image (registrator).")
@option("--ecs-agent-url", env="ECS_AGENT_URL", default=DEFAULT_ECS_URL, show_default=True, help="ECS agent introspection API, for awsvpc task addresses.")
@option("-internal/--no-internal", "--internal", env="INTERNAL", default=False, help="Register the container IP and exposed port instead of the host IP and published port.")
@option("-explicit/--no-explicit", "--explicit", env="EXPLICIT", default=False, help="Only register ports that have a SERVICE_[<port>_]NAME.")
@option("-useIpFromLabel", "--use-ip-from-label", "use_ip_from_label", env="USE_IP_FROM_LABEL", default="", metavar="LABEL",
        help="Register the IP in this container label (a /cidr suffix is dropped).")
@option("-tags", "--tags", env="TAGS", default="", help='Tags added to every service; may use registrator\'s template functions, e.g. \'prod,{{mIndex "com.amazonaws.ecs.task-arn" .Config.Labels}}\'.')
@option("--meta", env="META", multiple=True, metavar="KEY=VALUE", help="Meta added to every service; containers' SERVICE_* keys win. Repeatable.")
@option("--port-suffix", env="PORT_SUFFIX", type=click.Choice([s.value for s in PortSuffix]), default="auto", show_default=True,
        help="When names get the -<port> suffix: auto (registrator: generic name and several ports), always, never.")
@option("-resync", "--resync", env="RESYNC", type=click.FloatRange(min=0), default=60.0, show_default=True,
        help="Seconds between full comparisons of Docker and Consul; 0: only at start and reconnect.")
@option("-deregister", "--deregister", env="DEREGISTER", type=click.Choice([p.value for p in DeregisterPolicy]), default="always",
        show_default=True, help="When a stopped container's services are removed.")
@option("-cleanup/--no-cleanup", "--cleanup", env="CLEANUP", default=False,
        help="Also remove services that gliderlabs/registrator registered for this host's containers that are gone. Stale services this agent owns are always removed.")
@option("-retry-attempts", "--retry-attempts", env="RETRY_ATTEMPTS", type=click.IntRange(min=-1), default=-1, show_default=True,
        help="Attempts to reach Docker and Consul at startup; -1: keep trying.")
@option("-retry-interval", "--retry-interval", env="RETRY_INTERVAL", type=click.IntRange(min=1), default=2000, show_default=True,
        help="Milliseconds between those attempts.")
@option("-ttl", "--ttl", env="TTL", type=int, default=0, hidden=True)
@option("-ttl-refresh", "--ttl-refresh", env="TTL_REFRESH", type=int, default=0, hidden=True)
@option("--allow-script-checks/--no-allow-script-checks", env="ALLOW_SCRIPT_CHECKS", default=False,
        help="Register SERVICE_CHECK_SCRIPT checks. They run on the Consul host, as its user: only for trusted containers.")
@option("--initial-status", env="INITIAL_STATUS", type=click.Choice(["passing", "warning", "critical"]), default=None,
        help="Status of new checks that set none: passing makes a new instance resolvable at once, critical (Consul's default) only after its first passing check.")
@option("--docker-health/--no-docker-health", env="DOCKER_HEALTH", default=True, show_default=True,
        help="Mirror each container's Docker HEALTHCHECK into a Consul TTL check.")
@option("--docker-health-ttl", env="DOCKER_HEALTH_TTL", type=click.FloatRange(min=3), default=90.0, show_default=True,
        help="TTL in seconds of those checks; the agent refreshes them every third of it, so they expire only when it is gone.")
@option("--on-kill", env="ON_KILL", type=click.Choice(["deregister", "maintenance"]), default="deregister", show_default=True,
        help="When a container is sent its stop signal: deregister its services at once, or put them in Consul maintenance mode.")
@option("--drain-timeout", env="DRAIN_TIMEOUT", type=click.FloatRange(min=1), default=120.0, show_default=True,
        help="Seconds after a stop signal before a container that is still running is registered again.")
@option("--deregister-on-exit/--no-deregister-on-exit", env="DEREGISTER_ON_EXIT", default=False, show_default=True,
        help="On SIGTERM/SIGINT remove this host's services first (default: leave them, so a restarting agent does not flap DNS).")
@option("--consul-probe", env="CONSUL_PROBE", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
        help="Seconds between checks that the Consul agent still holds this host's services (it lost them if it restarted without its data).")
@option("--consul-token", env="CONSUL_TOKEN", default=None, help="ACL token (prefer CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE: flags show in ps).")
@HOSTNAME
@CONSUL_TIMEOUT
@option("--log-level", env="LOG_LEVEL", default="info", show_default=True,
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def run(uri: str | None, ip: str | None, internal: bool, explicit: bool, use_ip_from_label: str, tags: str, meta: Sequence[str],
        port_suffix: str, resync: float, deregister: str, cleanup: bool, retry_attempts: int, retry_interval: int,
        ttl: int, ttl_refresh: int, allow_script_checks: bool, initial_status: str | None, docker_health: bool,
        docker_health_ttl: float, hostname: str | None, consul_timeout: float, log_level: str, ip_from: str,
        ec2_metadata_url: str, ip6: str, network: str, ip_family: str, ecs: bool, ecs_name: str, ecs_agent_url: str,
        on_kill: str, drain_timeout: float, deregister_on_exit: bool, consul_probe: float, consul_token: str | None) -> None:
    """Follow Docker events and keep the local Consul agent's services equal to running containers.

    \b
    Docker is found through DOCKER_HOST or the local socket; Consul through the registry URI,
    CONSUL_HTTP_ADDR, or 127.0.0.1:8500 (CONSUL_HTTP_TOKEN[_FILE], CONSUL_HTTP_SSL, CONSUL_CACERT,
    CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY apply).
    """
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings(
            consul=consul_endpoint(uri, timeout=consul_timeout, token=consul_token),
            mapping=MappingSettings(
                hostname=hostname or "",
                host_ip="",
                ip=ip or None,
                host_ipv6=ip6,
                network=network,
                ip_family=ip_family,
                ecs=ecs,
                ecs_name=ecs_name,
                drain=on_kill,
                internal=internal,
                explicit=explicit,
                use_ip_from_label=use_ip_from_label,
                tags=parse(tags) if tags else None,
                meta=parse_meta_options(meta),
                port_suffix=PortSuffix(port_suffix),
                deregister=DeregisterPolicy(deregister),
                checks=CheckSettings(allow_scripts=allow_script_checks, initial_status=initial_status,
                                     docker_health=docker_health, docker_health_ttl=docker_health_ttl),
            ),
            resync_seconds=resync,
            retry_attempts=retry_attempts,
            retry_interval_ms=retry_interval,
            cleanup=cleanup,
            ip_from=check_method(ip_from),
            ec2_metadata_url=ec2_metadata_url,
            drain_timeout=drain_timeout,
            consul_probe_seconds=consul_probe,
            deregister_on_exit=deregister_on_exit,
        )
    except (ConfigError, TemplateError) as exc:
        raise click.UsageError(str(exc)) from None
    except HostIPError as exc:
        raise click.UsageError(str(exc)) from None
    if ttl or ttl_refresh:
        log.info("-ttl and -ttl-refresh have no effect with Consul (as in registrator)")
    log.info("registrator %s: Consul %s", __version__, settings.consul.url)
    docker_source = DockerSource(timeout=settings.docker_timeout, ecs=EcsAgent(ecs_agent_url) if ecs else None)
    controller = Controller(settings, docker_source, ConsulSink(settings.consul))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: controller.stop.set())
    try:
        controller.run()
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@main.command(name="list")
@URI
@HOSTNAME
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
@CONSUL_TIMEOUT
def list_services(uri: str | None, hostname: str | None, as_json: bool, consul_timeout: float) -> None:
    """List the services this host registered in the local Consul agent."""
    endpoint = _endpoint(uri, consul_timeout)
    try:
        host = hostname or DockerSource(timeout=10).daemon_name()
        services = ConsulSink(endpoint).owned_services(host)
    except DockerUnavailable as exc:
        raise click.ClickException(f"{exc}; pass --hostname to list without Docker") from None
    except ConsulError as exc:
        raise click.ClickException(str(exc)) from None
    specs = sorted(services.values(), key=lambda s: (s.name, s.id))
    if as_json:
        click.echo(json.dumps([_as_json(spec) for spec in specs], indent=2))
    else:
        click.echo(_table(specs))


def _endpoint(uri: str | None, timeout: float) -> ConsulEndpoint:
    try:
        return consul_endpoint(uri, timeout=timeout)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _as_json(spec: ServiceSpec) -> dict[str, object]:
    return {
        "id": spec.id, "name": spec.name, "address": spec.address, "port": spec.port,
        "tags": list(spec.tags), "meta": dict(spec.meta), "container": spec.meta.get(META_CONTAINER, ""),
    }


def _table(specs: list[ServiceSpec]) -> str:
    header = ("NAME", "ID", "ADDRESS", "TAGS", "CONTAINER")
    rows = [header] + [
        (s.name, s.id, f"{s.address}:{s.port}", ",".join(s.tags) or "-", s.meta.get(META_CONTAINER, "")[:12])
        for s in specs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


if __name__ == "__main__":
    main()
