"""The core's fixes end to end, against real Docker and Consul."""

from __future__ import annotations

import json
import uuid

from tests.integration.rig import eventually


def test_a_container_recreated_under_the_same_name_is_registered_again_without_a_resync(agent, workload, consul, docker_client):
    """compose and ECS recreate with `docker rm -f web && docker run --name web`: the new container
    asks for the service ID while the old one is still being torn down."""
    agent.start("-resync", "0")
    name = f"web-{uuid.uuid4().hex[:6]}"
    service_id = f"{agent.hostname}:{name}:80"
    old = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None}, name=name)
    old_id = old.get_wrapped_container().id
    eventually(lambda: consul.services().get(service_id, {}).get("Meta", {}).get("registrator-container") == old_id,
               what="the old container registered")

    old.get_wrapped_container().remove(force=True)
    new = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None}, name=name)
    new_id = new.get_wrapped_container().id

    eventually(lambda: consul.services().get(service_id, {}).get("Meta", {}).get("registrator-container") == new_id,
               timeout=10, what="the new container registered under the same ID")


def test_a_service_id_with_dot_segments_cannot_make_the_agent_touch_another_service(agent, workload, consul):
    """`SERVICE_ID=x/../victim` once made the agent deregister `victim`, a service it does not own:
    the HTTP client collapsed the dot segments (and Consul redirects such a path to the cleaned one)."""
    consul.put("/v1/agent/service/register", json.dumps({"ID": "victim", "Name": "victim", "Port": 1}).encode())
    agent.start()
    hostile = workload("http", env={"SERVICE_ID": "x/../victim", "SERVICE_NAME": "hostile"}, ports={80: None})
    eventually(lambda: "SERVICE_ID" in agent.log() and "x/../victim" in agent.log(), what="a warning naming the key")

    hostile.get_wrapped_container().stop(timeout=1)
    bystander = workload("http", env={"SERVICE_NAME": "bystander"}, ports={80: None})
    eventually(lambda: f"{agent.hostname}:{bystander.get_wrapped_container().name}:80" in consul.services(),
               what="later containers handled")
    assert "victim" in consul.services()
    assert "x/../victim" not in consul.services()
