"""The deployment files say what the docs say they do."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def test_ecs_task_definition_matches_its_guide():
    task = json.loads((ROOT / "deploy" / "ecs" / "task-definition.json").read_text())
    guide = (ROOT / "deploy" / "ecs" / "README.md").read_text()
    [container] = task["containerDefinitions"]

    assert task["networkMode"] == "host" and "`networkMode` | `host`" in guide
    assert container["mountPoints"] == [{"sourceVolume": "docker-socket", "containerPath": "/var/run/docker.sock", "readOnly": True}]
    assert {v["name"]: v["host"]["sourcePath"] for v in task["volumes"]} == {"docker-socket": "/var/run/docker.sock"}
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CONSUL_HTTP_ADDR"] == "127.0.0.1:8500" and "`CONSUL_HTTP_ADDR` | `127.0.0.1:8500`" in guide
    assert env["REGISTRATOR_ECS_AGENT_URL"] == "http://127.0.0.1:51678"
    assert [s["name"] for s in container["secrets"]] == ["CONSUL_HTTP_TOKEN"]
    assert "DAEMON" in guide


def test_ecs_task_command_is_accepted_by_the_cli():
    from cli import main

    task = json.loads((ROOT / "deploy" / "ecs" / "task-definition.json").read_text())
    command = task["containerDefinitions"][0]["command"]
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
