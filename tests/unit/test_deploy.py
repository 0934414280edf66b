"""The deployment files say what the docs say they do."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import pytest

from tests.settings import cli_options

ROOT = Path(__file__).resolve().parents[2]


def test_ecs_task_definition_matches_its_guide():
    task = json.loads((ROOT / "deploy" / "ecs" / "task-definition.json").read_text())
    guide = (ROOT / "deploy" / "ecs" / "README.md").read_text()
    [container] = task["containerDefinitions"]

    assert task["networkMode"] == "host" and "`networkMode` | `host`" in guide
    assert container["mountPoints"] == [{"sourceVolume": "docker-socket", "containerPath": "/var/run/docker.sock",
                                         "readOnly": True}]
    assert {v["name"]: v["host"]["sourcePath"] for v in task["volumes"]} == {"docker-socket": "/var/run/docker.sock"}
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CONSUL_HTTP_ADDR"] == "127.0.0.1:8500" and "`CONSUL_HTTP_ADDR` | `127.0.0.1:8500`" in guide
    assert env["REGISTRATOR_ECS_AGENT_URL"] == "http://127.0.0.1:51678"
    assert [s["name"] for s in container["secrets"]] == ["CONSUL_HTTP_TOKEN"]
    assert "DAEMON" in guide


def test_ecs_task_command_is_accepted_by_the_cli():
    task = json.loads((ROOT / "deploy" / "ecs" / "task-definition.json").read_text())
    options = cli_options(task["containerDefinitions"][0]["command"])
    assert (options.ip_from, options.mapping.drain) == ("ec2", "deregister")


def test_systemd_unit_command_is_accepted_by_the_cli():
    unit = (ROOT / "deploy" / "systemd" / "registrator.service").read_text()
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    options = cli_options(shlex.split(exec_start)[1:])
    assert options.ip_from == "route"


def test_a_bad_value_in_a_deployed_command_would_be_caught():
    with pytest.raises(click.UsageError, match="--ip-from 'ec3'"):
        cli_options(["run", "--ip-from", "ec3"])
