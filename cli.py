"""The `registrator` command: thin click commands over the registrator package."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys

import click

from registrator import __version__
from registrator.config import ConfigError, Settings, consul_endpoint
from registrator.consul_sink import ConsulError, ConsulSink
from registrator.controller import Controller
from registrator.docker_source import DockerSource
from registrator.hostip import HostIPError, detect_host_ip
from registrator.mapping import META_CONTAINER, MappingSettings
from registrator.model import ServiceSpec

URI = click.argument("uri", required=False, metavar="[consul://HOST:PORT]")
HOSTNAME = click.option(
    "--hostname",
    envvar="REGISTRATOR_HOSTNAME",
    default=socket.gethostname,
    show_default="this host's name",
    help="Identity of this host: prefix of service IDs and owner recorded in service Meta.",
)
CONSUL_TIMEOUT = click.option(
    "--consul-timeout", envvar="REGISTRATOR_CONSUL_TIMEOUT", type=click.FloatRange(min=0.1), default=5.0,
    show_default=True, help="Seconds before a Consul call is abandoned.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="registrator")
def main() -> None:
    """Register running Docker containers as Consul services.

    \b
    Examples:
      registrator run --ip 10.0.0.5 consul://127.0.0.1:8500
      registrator list --json
    """


@main.command()
@URI
@HOSTNAME
@click.option("--ip", envvar="REGISTRATOR_IP", help="Address to register for published ports [default: the IPv4 of the default-route interface].")
@click.option("--resync", envvar="REGISTRATOR_RESYNC", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds between full comparisons of Docker and Consul (0: only at start and reconnect).")
@CONSUL_TIMEOUT
@click.option("--log-level", envvar="REGISTRATOR_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def run(uri: str | None, hostname: str, ip: str | None, resync: float, consul_timeout: float, log_level: str) -> None:
    """Follow Docker events and keep the local Consul agent's services equal to running containers.

    \b
    Docker is found through DOCKER_HOST or the local socket; Consul through the registry URI,
    CONSUL_HTTP_ADDR, or 127.0.0.1:8500. CONSUL_HTTP_TOKEN is the ACL token.
    """
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        address = ip or detect_host_ip()
        settings = Settings(
            consul=consul_endpoint(uri, timeout=consul_timeout),
            mapping=MappingSettings(hostname=hostname, ip=address),
            resync_seconds=resync,
        )
    except (ConfigError, HostIPError) as exc:
        raise click.UsageError(f"{exc} (pass --ip to set the address)" if isinstance(exc, HostIPError) else str(exc))
    logging.getLogger(__name__).info(
        "registrator %s: host %s, address %s, Consul %s", __version__, hostname, address, settings.consul.url
    )
    controller = Controller(settings, DockerSource(timeout=settings.docker_timeout), ConsulSink(settings.consul))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: controller.stop.set())
    controller.run()


@main.command(name="list")
@URI
@HOSTNAME
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
@CONSUL_TIMEOUT
def list_services(uri: str | None, hostname: str, as_json: bool, consul_timeout: float) -> None:
    """List the services this host registered in the local Consul agent."""
    try:
        services = ConsulSink(consul_endpoint(uri, timeout=consul_timeout)).owned_services(hostname)
    except ConfigError as exc:
        raise click.UsageError(str(exc))
    except ConsulError as exc:
        raise click.ClickException(str(exc))
    specs = sorted(services.values(), key=lambda s: (s.name, s.id))
    if as_json:
        click.echo(json.dumps([_as_json(spec) for spec in specs], indent=2))
    else:
        click.echo(_table(specs))


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
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


if __name__ == "__main__":
    main()
