"""Container start → Consul service → DNS answer, and back, against real Docker, Consul and dig."""

from __future__ import annotations

import json

from tests.integration.rig import eventually, srv_ports


def published_port(container, port: int = 80) -> int:
    return int(container.get_exposed_port(port))


def test_started_container_becomes_resolvable_and_stopping_it_removes_it(agent, workload, consul, resolve):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    port = published_port(web)

    assert eventually(lambda: srv_ports(consul.dns_port, "web.service.consul"), what="SRV answer") == {port}
    assert resolve("web.service.consul", "A") == [agent.ip]

    web.get_wrapped_container().stop(timeout=1)
    eventually(lambda: not resolve("web.service.consul", "SRV"), what="SRV answer to empty")
    assert consul.services() == {}


def test_container_started_before_the_agent_is_registered_by_the_initial_sync(agent, workload, consul, resolve):
    early = workload("http", env={"SERVICE_NAME": "early"}, ports={80: None})
    agent.start()

    assert eventually(lambda: srv_ports(consul.dns_port, "early.service.consul"), what="SRV answer") == {published_port(early)}
    early.get_wrapped_container().stop(timeout=1)
    eventually(lambda: not resolve("early.service.consul", "SRV"), what="SRV answer to empty")


def test_registration_carries_name_id_address_port_and_ownership(agent, workload, consul):
    agent.start()
    web = workload("http", labels={"SERVICE_NAME": "labelled"}, env={"SERVICE_NAME": "from-env"}, ports={80: None})
    container = web.get_wrapped_container()
    service_id = f"{agent.hostname}:{container.name}:80"

    service = eventually(lambda: consul.services().get(service_id), what=f"service {service_id}")
    assert service["Service"] == "labelled"  # a label beats an env var with the same key
    assert (service["Address"], service["Port"]) == (agent.ip, published_port(web))
    assert service["Meta"]["registrator-host"] == agent.hostname
    assert service["Meta"]["registrator-container"] == container.id


def test_default_name_is_the_image_basename_without_tag(agent, workload, consul, resolve):
    agent.start()
    web = workload("tcp", ports={9000: None})  # image registrator-test/tcp:<key>

    assert eventually(lambda: srv_ports(consul.dns_port, "tcp.service.consul"), what="SRV answer") == {published_port(web, 9000)}


def test_unpublished_ports_are_not_registered(agent, workload, consul):
    agent.start()
    multi = workload("multiport", env={"SERVICE_NAME": "multi"}, ports={80: None, 9000: None})
    name = multi.get_wrapped_container().name

    expected = {f"{agent.hostname}:{name}:80", f"{agent.hostname}:{name}:9000"}
    eventually(lambda: set(consul.services()) == expected, what=f"services {expected}")
    assert {s["Service"] for s in consul.services().values()} == {"multi-80", "multi-9000"}


def test_list_json_shows_exactly_this_hosts_services(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    api = workload("tcp", env={"SERVICE_NAME": "api"}, ports={9000: None})
    consul.put("/v1/agent/service/register", json.dumps({"ID": "other", "Name": "other", "Port": 1}).encode())
    eventually(lambda: len(consul.services()) == 3, what="two services registered")

    result = agent.cli("list", "--json")

    assert result.returncode == 0, result.stderr
    listed = {(s["name"], s["address"], s["port"], s["container"]) for s in json.loads(result.stdout)}
    assert listed == {
        ("web", agent.ip, published_port(web), web.get_wrapped_container().id),
        ("api", agent.ip, published_port(api, 9000), api.get_wrapped_container().id),
    }


def test_list_table_has_a_header_and_a_row_per_service(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: consul.services(), what="service registered")

    lines = agent.cli("list").stdout.splitlines()

    assert lines[0].split() == ["NAME", "ID", "ADDRESS", "TAGS", "CHECKS", "CONTAINER"]
    assert lines[1].split() == [
        "web", f"{agent.hostname}:{web.get_wrapped_container().name}:80",
        f"{agent.ip}:{published_port(web)}", "-", "none", web.get_wrapped_container().id[:12],
    ]
