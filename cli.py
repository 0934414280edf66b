"""The `registrator` command: thin click commands over the registrator package.

A gliderlabs/registrator command line works unchanged: `registrator -ip 10.0.0.5 -internal
consul://127.0.0.1:8500` runs the agent (options before the URI, single-dash long flags, Go's
`-flag=false` for booleans), exactly like `registrator run ...`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import re
import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from registrator import __version__
from registrator.config import Options, parse_meta_options
from registrator.consul.endpoint import ConsulEndpoint, consul_endpoint
from registrator.consul.sink import ConsulError, ConsulReader, ConsulSink
from registrator.docker.ecs import DEFAULT_URL as DEFAULT_ECS_URL
from registrator.docker.ecs import EcsAgent
from registrator.docker.engine import DockerUnavailable
from registrator.docker.source import DockerSource
from registrator.errors import ConfigError
from registrator.hostip import HostIPError, check_address, check_method
from registrator.mapping.checks import CheckSettings
from registrator.mapping.services import desired_services
from registrator.mapping.settings import DeregisterPolicy, DrainPolicy, EcsName, IpFamily, MappingPolicy, PortSuffix
from registrator.mapping.template import TemplateError, parse
from registrator.metrics import Metrics
from registrator.model import Deregister, Op, Register, host_port
from registrator.ops import doctor as checks
from registrator.ops.logs import configure_logging
from registrator.ops.status_server import StatusServer, parse_listen
from registrator.ops.views import explain_json, explain_text, service_rows, table
from registrator.reconcile.controller import Controller
from registrator.reconcile.kills import KillLog
from registrator.reconcile.sync import sync_once
from registrator.startup import StartupError, Stopped
from registrator.startup import resolve as resolve_settings

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


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def default(cls: type, name: str) -> Any:
    """A flag's default is the dataclass field's: written once, where the setting is defined (an
    Enum's value, as the flag takes it)."""
    value = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    return value.value if isinstance(value, enum.Enum) else value


def option(*decls: str, env: str, **kwargs: Any) -> Decorator:
    """Every flag also reads REGISTRATOR_<FLAG> from the environment."""
    return click.option(*decls, envvar=f"REGISTRATOR_{env}", show_envvar=True, **kwargs)


def options(*decorators: Decorator) -> Decorator:
    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


URI = click.argument("uri", required=False, envvar="REGISTRATOR_URI", metavar="[consul://HOST:PORT]")
HOSTNAME = option("-hostname", "--hostname", env="HOSTNAME",
                  help="Identity of this host: prefix of service IDs and owner recorded in service Meta.  [default: the Docker "
                       "daemon's name]")
CONSUL_OPTIONS = options(
    option("--consul-timeout", env="CONSUL_TIMEOUT", type=click.FloatRange(min=0.1),
           default=default(ConsulEndpoint, "timeout"), show_default=True,
           help="Seconds before a Consul call is abandoned."),
    option("--consul-token", env="CONSUL_TOKEN", default=None,
           help="ACL token (prefer CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE: flags show in ps)."),
)
# Everything that decides what a container registers: shared by run, explain and sync.
MAPPING_OPTIONS = options(
    option("-ip", "--ip", env="IP", help="Address registered for published ports.  [default: detected, see --ip-from]"),
    option("--ip-from", env="IP_FROM", default=default(Options, "ip_from"), show_default=True,
           help="How to detect the host IP without -ip: route (default-route interface), interface:NAME, ec2 (instance metadata,"
                " IMDSv2), docker (swarm advertise address)."),
    option("--ec2-metadata-url", env="EC2_METADATA_URL",
           default=default(Options, "ec2_metadata_url"), show_default=True, hidden=True),
    option("--ip6", env="IP6", default="",
           help="The host's IPv6 address: published ports also get it as TaggedAddresses lan_ipv6."),
    option("--network", env="NETWORK", default="",
           help="Register containers on this Docker network with their address there and the exposed port."),
    option("--ip-family", env="IP_FAMILY", type=click.Choice([f.value for f in IpFamily]),
           default=default(MappingPolicy, "ip_family"), show_default=True,
           help="Which container address is the service Address when it has both; the other is a TaggedAddress."),
    option("-internal/--no-internal", "--internal", env="INTERNAL", default=default(MappingPolicy, "internal"),
           help="Register the container IP and exposed port instead of the host IP and published port."),
    option("-explicit/--no-explicit", "--explicit", env="EXPLICIT", default=default(MappingPolicy, "explicit"),
           help="Only register ports that have a SERVICE_[<port>_]NAME."),
    option("-useIpFromLabel", "--use-ip-from-label", "use_ip_from_label", env="USE_IP_FROM_LABEL", default="", metavar="LABEL",
           help="Register the IP in this container label (a /cidr suffix is dropped)."),
    option("-tags", "--tags", env="TAGS", default="",
           help="Tags added to every service; may use registrator's template functions, e.g. "
                '\'prod,{{mIndex "com.amazonaws.ecs.task-arn" .Config.Labels}}\'.'),
    option("--meta", env="META", multiple=True, metavar="KEY=VALUE",
           help="Meta added to every service; containers' SERVICE_* keys win. Repeatable."),
    option("--port-suffix", env="PORT_SUFFIX", type=click.Choice([s.value for s in PortSuffix]),
           default=default(MappingPolicy, "port_suffix"), show_default=True,
           help="When names get the -<port> suffix: auto (registrator: generic name and several ports), always, never."),
    option("-deregister", "--deregister", env="DEREGISTER", type=click.Choice([p.value for p in DeregisterPolicy]),
           default=default(MappingPolicy, "deregister"),
           show_default=True, help="When a stopped container's services are removed."),
    option("--allow-script-checks/--no-allow-script-checks", env="ALLOW_SCRIPT_CHECKS",
           default=default(CheckSettings, "allow_scripts"),
           help="Register SERVICE_CHECK_SCRIPT checks. They run on the Consul host, as its user: only for trusted containers."),
    option("--initial-status", env="INITIAL_STATUS", type=click.Choice(["passing", "warning", "critical"]), default=None,
           help="Status of new checks that set none: passing makes a new instance resolvable at once, critical (Consul's "
                "default) only after its first passing check."),
    option("--docker-health/--no-docker-health", env="DOCKER_HEALTH",
           default=default(CheckSettings, "docker_health"), show_default=True,
           help="Mirror each container's Docker HEALTHCHECK into a Consul TTL check."),
    option("--docker-health-ttl", env="DOCKER_HEALTH_TTL", type=click.FloatRange(min=3),
           default=default(CheckSettings, "docker_health_ttl"), show_default=True,
           help="TTL in seconds of those checks; the agent refreshes them every third of it, so they expire only when it is "
                "gone."),
    option("--ecs/--no-ecs", env="ECS", default=default(MappingPolicy, "ecs"), show_default=True,
           help="ECS awareness for containers with ECS labels: names, Meta, awsvpc task addresses."),
    option("--ecs-name", env="ECS_NAME", type=click.Choice([n.value for n in EcsName]),
           default=default(MappingPolicy, "ecs_name"), show_default=True,
           help="Default service name of ECS containers: the ECS container name, the task family, or the image (registrator)."),
    option("--ecs-agent-url", env="ECS_AGENT_URL", default=DEFAULT_ECS_URL, show_default=True,
           help="ECS agent introspection API, for awsvpc task addresses."),
    option("--on-kill", env="ON_KILL", type=click.Choice([d.value for d in DrainPolicy]),
           default=default(MappingPolicy, "drain"), show_default=True,
           help="When a container is sent its stop signal: deregister its services at once, or put them in Consul maintenance "
                "mode."),
    option("--drain-timeout", env="DRAIN_TIMEOUT", type=click.FloatRange(min=1),
           default=default(Options, "drain_timeout"), show_default=True,
           help="Seconds after a stop signal before a container that is still running is registered again."),
    option("-cleanup/--no-cleanup", "--cleanup", env="CLEANUP", default=default(Options, "cleanup"),
           help="Also remove services that gliderlabs/registrator registered for this host's containers that are gone. Stale "
                "services this agent owns are always removed."),
    option("-retry-attempts", "--retry-attempts", env="RETRY_ATTEMPTS", type=click.IntRange(min=-1),
           default=default(Options, "retry_attempts"), show_default=True,
           help="Retries after the first attempt to reach Docker and Consul at startup (N retries: N+1 attempts); -1: keep "
                "trying."),
    option("-retry-interval", "--retry-interval", env="RETRY_INTERVAL", type=click.IntRange(min=1),
           default=default(Options, "retry_interval_ms"), show_default=True,
           help="Milliseconds between those attempts."),
    HOSTNAME,
    CONSUL_OPTIONS,
)
LOG_OPTIONS = options(
    option("--log-level", env="LOG_LEVEL",
           default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)),
    option("--log-format", env="LOG_FORMAT", default="text", show_default=True, type=click.Choice(["text", "json"]),
           help="json: one object per line, for log shipping."),
)


@click.group(cls=RegistratorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="registrator")
def main() -> None:
    """Register running Docker containers as Consul services.

    \b
    Examples:
      registrator -ip 10.0.0.5 -internal consul://127.0.0.1:8500   (a registrator command line)
      registrator run --ip 10.0.0.5 --meta team=web --listen :9666 consul://127.0.0.1:8500
      registrator list --json
      registrator explain web-1
      registrator sync --once --dry-run
      registrator resolve nsqlookupd --tag tcp
      registrator doctor consul://127.0.0.1:8500
    """


@main.command(cls=RunCommand)
@URI
@MAPPING_OPTIONS
@option("-resync", "--resync", env="RESYNC", type=click.FloatRange(min=0),
        default=default(Options, "resync_seconds"), show_default=True,
        help="Seconds between full comparisons of Docker and Consul; 0: only at start and reconnect.")
@option("--deregister-on-exit/--no-deregister-on-exit", env="DEREGISTER_ON_EXIT",
        default=default(Options, "deregister_on_exit"), show_default=True,
        help="On SIGTERM/SIGINT remove this host's services first (default: leave them, so a restarting agent does not flap "
             "DNS).")
@option("--consul-probe", env="CONSUL_PROBE", type=click.FloatRange(min=0.1),
        default=default(Options, "consul_probe_seconds"), show_default=True,
        help="Seconds between checks that the Consul agent still holds this host's services (it lost them if it restarted "
             "without its data) "
             "and, after Consul failed a call, that it answers with a cluster leader again "
             "(then every waiting container is retried).")
@option("--workers", env="WORKERS", type=click.IntRange(min=1, max=8), default=default(Options, "workers"), show_default=True,
        help="Containers reconciled at once (their Docker and Consul calls overlap); one container is never handled twice at "
             "once.")
@option("--listen", env="LISTEN",
        default="", metavar="HOST:PORT", help="Serve /healthz and /metrics (Prometheus) here, e.g. 127.0.0.1:9666.")
@option("-ttl", "--ttl", env="TTL", type=int, default=0, hidden=True)
@option("-ttl-refresh", "--ttl-refresh", env="TTL_REFRESH", type=int, default=0, hidden=True)
@LOG_OPTIONS
def run(uri: str | None, listen: str, ttl: int, ttl_refresh: int, log_level: str, log_format: str, **flags: Any) -> None:
    """Follow Docker events and keep the local Consul agent's services equal to running containers.

    \b
    Docker is found through DOCKER_HOST or the local socket; Consul through the registry URI,
    CONSUL_HTTP_ADDR, or 127.0.0.1:8500 (CONSUL_HTTP_TOKEN[_FILE], CONSUL_HTTP_SSL, CONSUL_CACERT,
    CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY and CONSUL_TLS_SERVER_NAME apply). SIGTERM or SIGINT
    stops it; SIGHUP compares every container with Consul at once (a full resync).

    \b
    Examples:
      registrator run consul://127.0.0.1:8500
      registrator run --ip-from ec2 --listen :9666 --on-kill maintenance
    """
    configure_logging(log_level, log_format)
    options = _options(uri, flags)
    if listen:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if ttl or ttl_refresh:
        log.info("-ttl and -ttl-refresh have no effect with Consul (as in registrator)")
    log.info("registrator %s: Consul %s", __version__, options.consul.url)
    metrics = Metrics()
    stop = threading.Event()
    started: list[Controller] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: started[0].resync_now() if started else None)
    try:
        server = StatusServer(listen, metrics, lambda: _health(started)) if listen else None
    except OSError as exc:
        raise click.ClickException(f"--listen {listen!r}: {exc.strerror or exc}") from None
    docker_source, sink = _edges(options, flags, metrics)
    if server is not None:
        server.start()
        log.info("serving /healthz and /metrics on %s", server.address)
    try:
        settings = resolve_settings(options, docker_source, sink, stop)
        started.append(Controller(settings, docker_source, sink, metrics, stop=stop))
        started[0].run()
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
    except Stopped:
        log.info("stopped before startup finished")
    finally:
        if server is not None:
            server.stop()


@main.command(cls=RunCommand)
@click.argument("container")
@URI
@MAPPING_OPTIONS
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def explain(container: str, uri: str | None, as_json: bool, **flags: Any) -> None:
    """Show what would be registered for CONTAINER (name or ID), and which key or rule decided it.

    Writes nothing. Takes the same flags as `run` and settles them the same way (asking Consul, when
    it answers, whether it runs script checks), so pass the agent's flags and URI to see exactly what
    it would register.

    \b
    Examples:
      registrator explain web-1
      registrator explain --internal --json 3f2a9c
    """
    configure_logging("error", "text")
    options = _options(uri, {**flags, "retry_attempts": 0})
    docker_source, sink = _edges(options, flags, Metrics())
    consul: ConsulSink | None = sink
    try:
        sink.leader()
    except ConsulError as exc:
        consul, unreachable = None, exc
    try:
        settings = resolve_settings(options, docker_source, consul, threading.Event())
        snapshot = docker_source.inspect(container)
    except (StartupError, DockerUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    if snapshot is None:
        raise click.ClickException(f"no container {container!r}")
    if consul is None:
        click.echo(f"note: {unreachable}; script and Docker exec checks are shown as a Consul agent that runs them "
                   "would get them", err=True)
    desired = desired_services(snapshot, settings.mapping)
    click.echo(json.dumps(explain_json(snapshot, desired), indent=2) if as_json else explain_text(snapshot, desired))


@main.command(cls=RunCommand)
@URI
@MAPPING_OPTIONS
@click.option("--once", is_flag=True, required=True, help="One pass over every container (the only mode; `run` follows events).")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
def sync(uri: str | None, once: bool, dry_run: bool, **flags: Any) -> None:
    """Compare every container with Consul once, and write (or with --dry-run print) the difference.

    \b
    Examples:
      registrator sync --once --dry-run consul://127.0.0.1:8500
      registrator sync --once -internal
    """
    configure_logging("warning", "text")
    options = _options(uri, {**flags, "retry_attempts": 0})
    docker_source, sink = _edges(options, flags, Metrics())
    try:
        settings = resolve_settings(options, docker_source, sink, threading.Event())
        changes = sync_once(docker_source, sink, settings.mapping, KillLog(options.drain_timeout), dry_run=dry_run, show=_show_op)
    except (StartupError, ConsulError, DockerUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would change" if dry_run else "changed"
    click.echo(f"{changes} services {verb}" if changes else "in sync: nothing to change")


@main.command(cls=RunCommand)
@URI
@MAPPING_OPTIONS
@click.option("--dns", default="", metavar="HOST:PORT", help="Consul's DNS interface.  [default: the Consul host, port 8600]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def doctor(uri: str | None, dns: str, as_json: bool, **flags: Any) -> None:
    """Check what the agent needs, in the order it needs it: Docker, the host identity and IP, Consul
    and its leader, the ACL token's rights, script checks, Consul DNS and the ECS agent.

    One ✓/✗ line each with the reason, and the fix under each failure. Writes nothing, and tries each
    call once with a timeout of a few seconds. Takes the same flags as `run`: pass the agent's flags
    and URI. Exits 0 only when every required check passes (those not marked optional).

    \b
    Examples:
      registrator doctor consul://127.0.0.1:8500
      registrator doctor --ip-from ec2 --dns 10.0.0.5:8600 --json
    """
    configure_logging("error", "text")
    options = _options(uri, flags)
    results = checks.diagnose(options, DockerSource(timeout=checks.DOCKER_TIMEOUT), ConsulReader(options.consul),
                              ecs_url=flags["ecs_agent_url"] if flags["ecs"] else None,
                              dns=dns or checks.default_dns(options.consul))
    click.echo(json.dumps(checks.as_json(results), indent=2) if as_json else checks.render(results))
    if not checks.healthy(results):
        click.get_current_context().exit(1)


@main.command(name="list")
@URI
@HOSTNAME
@click.option("--all", "everything", is_flag=True, help="Every service in the Consul catalog, not only this host's.")
@click.option("--service", default="", help="Only services with this name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
@CONSUL_OPTIONS
def list_services(uri: str | None, hostname: str | None, everything: bool, service: str, as_json: bool,
                  consul_timeout: float, consul_token: str | None) -> None:
    """List the services this host registered (with --all: the whole catalog) and their check status.

    \b
    Examples:
      registrator list
      registrator list --all --service nsqlookupd --json
    """
    sink = ConsulReader(_endpoint(uri, consul_timeout, consul_token))
    try:
        host = "" if everything else (hostname or DockerSource(timeout=10).daemon_name())
        rows = service_rows(sink, host, service)
    except DockerUnavailable as exc:
        raise click.ClickException(f"{exc}; pass --hostname to list without Docker") from None
    except ConsulError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(rows, indent=2) if as_json else table(rows, everything))


@main.command()
@click.argument("name")
@click.option("--tag", default="", help="Only instances with this tag.")
@click.option("--dns", default="127.0.0.1:8600", show_default=True, metavar="HOST:PORT", help="Consul's DNS interface.")
@click.option("--domain", default="consul", show_default=True, help="Consul's DNS domain.")
def resolve(name: str, tag: str, dns: str, domain: str) -> None:
    """Ask Consul DNS for NAME (SRV, then A/AAAA) and print host:port lines, as a consumer sees them.

    \b
    Examples:
      registrator resolve web
      registrator resolve nsqlookupd --tag tcp --dns 10.0.0.5:8600
    """
    from registrator.ops.resolve import ResolveError, resolve_service  # dnspython: 20 ms of every start, for this command only

    try:
        endpoints = resolve_service(name, tag, dns, domain)
    except ResolveError as exc:
        raise click.ClickException(str(exc)) from None
    if not endpoints:
        raise click.ClickException(f"{name}: no healthy instances")
    for host, port in endpoints:
        click.echo(host_port(host, port))


def _health(started: list[Controller]) -> tuple[bool, dict[str, Any]]:
    """/healthz: the controller's view once it exists, not ready before."""
    return started[0].health() if started else (False, {"ready": False})


def _show_op(label: str, op: Op) -> None:
    match op:
        case Register(spec):
            click.echo(f"register    {spec.id} ({spec.name} at {spec.address}:{spec.port}) for {label}")
        case Deregister(service_id):
            click.echo(f"deregister  {service_id} of {label}")


def _options(uri: str | None, flags: dict[str, Any]) -> Options:
    """The operator's choices from the flags shared by run, explain and sync; a bad value is a one-line usage error."""
    try:
        return Options(
            consul=consul_endpoint(uri, timeout=flags["consul_timeout"], token=flags["consul_token"]),
            mapping=MappingPolicy(
                host_ipv6=check_address("--ip6", flags["ip6"], version=6),
                network=flags["network"],
                ip_family=IpFamily(flags["ip_family"]),
                internal=flags["internal"],
                explicit=flags["explicit"],
                use_ip_from_label=flags["use_ip_from_label"],
                tags=parse(flags["tags"]) if flags["tags"] else None,
                meta=parse_meta_options(flags["meta"]),
                port_suffix=PortSuffix(flags["port_suffix"]),
                deregister=DeregisterPolicy(flags["deregister"]),
                checks=CheckSettings(allow_scripts=flags["allow_script_checks"], initial_status=flags["initial_status"],
                                     docker_health=flags["docker_health"], docker_health_ttl=flags["docker_health_ttl"]),
                ecs=flags["ecs"],
                ecs_name=EcsName(flags["ecs_name"]),
                drain=DrainPolicy(flags["on_kill"]),
            ),
            hostname=flags["hostname"] or "",
            ip=check_address("-ip", flags["ip"] or ""),
            ip_from=check_method(flags["ip_from"]),
            ec2_metadata_url=flags["ec2_metadata_url"],
            retry_attempts=flags["retry_attempts"],
            retry_interval_ms=flags["retry_interval"],
            cleanup=flags["cleanup"],
            drain_timeout=flags["drain_timeout"],
            **{name: flags[flag] for name, flag in _RUN_ONLY.items() if flag in flags},
        )
    except (ConfigError, TemplateError, HostIPError) as exc:
        raise click.UsageError(str(exc)) from None


# Options that only `run` has flags for: the rest use the Options defaults.
_RUN_ONLY = {"resync_seconds": "resync", "consul_probe_seconds": "consul_probe", "deregister_on_exit": "deregister_on_exit",
             "workers": "workers"}


def _edges(options: Options, flags: dict[str, Any], metrics: Metrics) -> tuple[DockerSource, ConsulSink]:
    """The Docker and Consul clients; neither connects before its first call."""
    docker_source = DockerSource(timeout=options.docker_timeout, ecs=EcsAgent(flags["ecs_agent_url"]) if flags["ecs"] else None,
                                 metrics=metrics)
    return docker_source, ConsulSink(options.consul, metrics)


def _endpoint(uri: str | None, timeout: float, token: str | None) -> ConsulEndpoint:
    try:
        return consul_endpoint(uri, timeout=timeout, token=token)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


if __name__ == "__main__":
    main()
