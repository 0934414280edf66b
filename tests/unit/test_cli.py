"""registrator command lines keep working: single-dash long flags and Go's -flag=false, on every command."""

from __future__ import annotations

import socket

import click
import pytest
from click.testing import CliRunner

from tests.fakes import Check, FakeConsul, FakeDocker, web
from tests.settings import cli_options


@pytest.mark.parametrize("command", [["run"], ["sync", "--once"], ["explain", "web"]])
def test_single_dash_hostname_and_go_booleans_work_for_every_command_that_takes_the_run_flags(command):
    options = cli_options([*command, "-hostname", "node-1", "-internal=true", "-cleanup=false", "-explicit=1"])
    assert (options.hostname, options.mapping.internal, options.cleanup, options.mapping.explicit) == ("node-1", True, False,
                                                                                                       True)


def test_registrator_flags_before_the_uri():
    options = cli_options(["-ip", "10.0.0.5", "-internal=false", "-resync", "5", "consul://127.0.0.1:8501"])
    assert (options.ip, options.mapping.internal, options.resync_seconds, options.consul.port) == ("10.0.0.5", False, 5.0, 8501)


def test_defaults_are_the_documented_ones():
    options = cli_options(["run"])
    assert (options.resync_seconds, options.workers, options.drain_timeout, options.consul.timeout, options.ip_from) == (
        60.0, 4, 120.0, 5.0, "route")


def test_sync_once_takes_a_running_container_out_of_a_leftover_maintenance_mode(monkeypatch):
    """`sync --once` writes only when `plan` shows register/deregister ops, so what the reconcile
    would also fix (a maintenance mode left over from a drain, a stale Docker-health mirror) is
    reported as "in sync" and left: the service stays out of DNS."""

    import cli

    docker, consul = FakeDocker(), FakeConsul()
    docker.containers["web"] = web("web", name="web")
    monkeypatch.setattr(cli, "_edges", lambda options, flags, metrics: (docker, consul))
    args = ["sync", "--once", "--hostname", "h", "--ip", "10.0.0.5", "consul://127.0.0.1:8500"]
    assert CliRunner().invoke(cli.main, args).exit_code == 0
    assert "h:web:80" in consul.services_

    consul.checks["_service_maintenance:h:web:80"] = Check("h:web:80", "critical", "container is stopping (registrator)")
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert "_service_maintenance:h:web:80" not in consul.checks, result.output


@pytest.mark.parametrize(("words", "expected"), [
    ("registrator ru", ["plain,run"]),
    ("registrator run --ip-f", ["plain,--ip-from", "plain,--ip-family"]),
    ("registrator run --ip-family ", ["plain,ipv4", "plain,ipv6"]),
])
def test_shell_completion_is_clicks_own(words, expected):
    import cli

    env = {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1), "_REGISTRATOR_COMPLETE": "bash_complete"}
    result = CliRunner().invoke(cli.main, [], prog_name="registrator", env=env)
    assert result.output.split() == expected


def test_the_completion_script_comes_from_the_command():
    import cli

    result = CliRunner().invoke(cli.main, [], prog_name="registrator", env={"_REGISTRATOR_COMPLETE": "bash_source"})
    assert "complete -o nosort -F _registrator_completion registrator" in result.output


@pytest.mark.parametrize(("argv", "message"), [
    (["-ip", "999.1.1.1"], "-ip '999.1.1.1': is neither an IP address nor a host name"),
    (["-ip", "0.0.0.0"], "-ip '0.0.0.0': is the unspecified address, which names no host"),
    (["-ip", "::"], "-ip '::': is the unspecified address, which names no host"),
    (["-ip", "224.0.0.1"], "-ip '224.0.0.1': is a multicast address"),
    (["-ip", "255.255.255.255"], "-ip '255.255.255.255': is the broadcast address"),
    (["-ip", "127.0.0.1 ; x"], "-ip '127.0.0.1 ; x': is neither an IP address nor a host name"),
    (["-ip", "-bad-.example"], "-ip '-bad-.example': is neither an IP address nor a host name"),
    (["--ip6", "nope"], "--ip6 'nope': is not an IPv6 address"),
    (["--ip6", "10.0.0.5"], "--ip6 '10.0.0.5': is not an IPv6 address"),
    (["--ip6", "ff02::1"], "--ip6 'ff02::1': is a multicast address"),
], ids=["not-an-address", "unspecified", "unspecified-ipv6", "multicast", "broadcast", "shell-text", "bad-host-name",
        "ip6-not-an-address", "ip6-ipv4", "ip6-multicast"])
def test_host_addresses_that_name_no_single_host_are_refused_in_one_line(argv, message):
    with pytest.raises(click.UsageError) as refused:
        cli_options(argv)
    assert refused.value.message == message


@pytest.mark.parametrize(("argv", "ip", "ip6"), [
    (["-ip", "10.0.0.5", "--ip6", "2001:db8::5"], "10.0.0.5", "2001:db8::5"),
    (["-ip", "127.0.0.1"], "127.0.0.1", ""),
    (["-ip", "2001:db8::5"], "2001:db8::5", ""),
    (["-ip", "node-1.example.internal"], "node-1.example.internal", ""),
], ids=["both", "loopback-for-one-host", "ipv6", "host-name-as-registrator-took-it"])
def test_host_addresses_that_name_one_host_are_taken(argv, ip, ip6):
    options = cli_options(argv)
    assert (options.ip, options.mapping.host_ipv6) == (ip, ip6)


def test_a_listen_address_in_use_is_one_line():
    from cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["run", "--listen", f"127.0.0.1:{port}", "-ip", "10.0.0.5", "consul://127.0.0.1:1"])
    assert (result.exit_code, result.output.strip().splitlines()[-1]) == (1, f"Error: --listen '127.0.0.1:{port}': Address "
                                                                             "already in use")
