"""Which address and port a container is registered with, against real Docker networks, Consul and dig.
Where the issue asks for reachability, an HTTP check through the registered address must pass."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import parse_qs, urlsplit

import docker

from tests.integration.conftest import TEST_LABEL
from tests.integration.rig import eventually, free_port, registrator_command, srv_ports


def registration(consul, name: str) -> dict:
    found = eventually(lambda: [s for s in consul.services().values() if s["Service"] == name], what=f"service {name}")
    assert len(found) == 1, found
    return found[0]


def address_on(docker_client, container, network) -> str:
    attrs = docker_client.api.inspect_container(container.get_wrapped_container().id)
    return attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]


def passing(consul, service_id: str) -> bool:
    checks = json.loads(consul.get("/v1/agent/checks"))
    mine = [c for c in checks.values() if c["ServiceID"] == service_id]
    return bool(mine) and all(c["Status"] == "passing" for c in mine)


HTTP_CHECK = {"SERVICE_CHECK_HTTP": "/", "SERVICE_CHECK_INTERVAL": "1s"}


def test_service_network_picks_the_address_on_that_network_across_restarts(agent, workload, network, consul, docker_client):
    net_a, net_b = network(), network()
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_NETWORK": net_b.name, **HTTP_CHECK}, network=net_a.name)
    net_b.connect(web.get_wrapped_container())

    for _ in range(20):
        expected = address_on(docker_client, web, net_b)
        eventually(lambda e=expected: registration(consul, "web")["Address"] == e, what=f"address {expected} on {net_b.name}")
        assert registration(consul, "web")["Port"] == 80
        web.get_wrapped_container().restart(timeout=0)
    eventually(lambda: passing(consul, registration(consul, "web")["ID"]), timeout=8, what="HTTP check through the address")


def test_without_a_choice_the_first_network_by_name_wins(agent, workload, network, consul, docker_client):
    first, second = sorted([network(), network()], key=lambda n: n.name)
    agent.start("-internal")
    web = workload("http", env={"SERVICE_NAME": "web"}, network=second.name)
    first.connect(web.get_wrapped_container())

    eventually(lambda: registration(consul, "web")["Address"] == address_on(docker_client, web, first), what="first network's "
                                                                                                             "address")


def test_connecting_the_chosen_network_at_runtime_registers_and_disconnecting_removes(agent, workload, network, consul,
                                                                                      docker_client):
    net_a, net_b = network(), network()
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_NETWORK": net_b.name}, network=net_a.name)
    eventually(lambda: f"no address on network {net_b.name!r}" in agent.log(), what="warning about the missing network")
    assert consul.services() == {}

    net_b.connect(web.get_wrapped_container())
    eventually(lambda: registration(consul, "web")["Address"] == address_on(docker_client, web, net_b), what="registered on "
                                                                                                             "connect")
    net_b.disconnect(web.get_wrapped_container())
    eventually(lambda: consul.services() == {}, what="deregistered on disconnect")


def test_global_network_flag(agent, workload, network, consul, docker_client):
    net = network()
    agent.start("--network", net.name)
    on_net = workload("http", env={"SERVICE_NAME": "on-net", **HTTP_CHECK}, network=net.name)
    off_net = workload("http", env={"SERVICE_NAME": "off-net"}, ports={80: None})

    found = registration(consul, "on-net")
    assert (found["Address"], found["Port"]) == (address_on(docker_client, on_net, net), 80)
    assert registration(consul, "off-net")["Port"] == int(off_net.get_exposed_port(80))  # not on it: published rule
    eventually(lambda: passing(consul, found["ID"]), timeout=8, what="HTTP check through the network address")


def test_host_network_container_is_registered_on_the_host_and_reachable(agent, images, consul, docker_client):
    port = free_port()
    agent.start()
    api = docker_client.api
    created = api.create_container(images["http"], command=["httpd", "-f", "-p", str(port), "-h", "/www"], ports=[port],
                                   environment={f"SERVICE_{port}_NAME": "hosted", "SERVICE_80_IGNORE": "true",
                                                **HTTP_CHECK}, labels={"registrator-test": "1"},
                                   host_config=api.create_host_config(network_mode="host"))
    try:
        api.start(created["Id"])
        found = registration(consul, "hosted")
        assert (found["Address"], found["Port"]) == (agent.ip, port)
        eventually(lambda: passing(consul, found["ID"]), timeout=8, what="HTTP check through the host address")
    finally:
        api.remove_container(created["Id"], force=True)


def test_container_network_mode_uses_the_owners_address_and_ports(agent, workload, consul, docker_client):
    agent.start()
    owner = workload("tcp", env={"SERVICE_IGNORE": "true"}, ports={80: None})
    workload("http", env={"SERVICE_NAME": "sidecar", **HTTP_CHECK}, network_mode=f"container:{owner.get_wrapped_container().id}")

    found = registration(consul, "sidecar")
    assert (found["Address"], found["Port"]) == (agent.ip, int(owner.get_exposed_port(80)))
    eventually(lambda: passing(consul, found["ID"]), timeout=8, what="HTTP check through the owner's published port")


def test_container_network_mode_with_internal(agent, workload, consul, docker_client):
    agent.start("-internal")
    owner = workload("tcp", env={"SERVICE_IGNORE": "true"})
    workload("http", env={"SERVICE_NAME": "sidecar", **HTTP_CHECK}, network_mode=f"container:{owner.get_wrapped_container().id}")

    owner_ip = docker_client.api.inspect_container(owner.get_wrapped_container().id)["NetworkSettings"]["IPAddress"]
    found = registration(consul, "sidecar")
    assert (found["Address"], found["Port"]) == (owner_ip, 80)
    eventually(lambda: passing(consul, found["ID"]), timeout=8, what="HTTP check through the owner's address")


def test_internal_on_a_user_network_is_reachable(agent, workload, network, consul, docker_client):
    net = network()
    agent.start("-internal")
    web = workload("http", env={"SERVICE_NAME": "web", **HTTP_CHECK}, network=net.name)

    found = registration(consul, "web")
    assert (found["Address"], found["Port"]) == (address_on(docker_client, web, net), 80)
    eventually(lambda: passing(consul, found["ID"]), timeout=8, what="HTTP check through the container address")


def test_ipv6_network_address_in_dns_and_reachable(agent, workload, network, consul, resolve, docker_client):
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="fd00:5ca1:ab1e::/64")])
    net = network(enable_ipv6=True, ipam=ipam)
    agent.start()
    env = {"SERVICE_NAME": "six", "SERVICE_NETWORK": net.name, "SERVICE_IP_FAMILY": "ipv6", **HTTP_CHECK}
    web = workload("http", env=env, network=net.name)
    attrs = docker_client.api.inspect_container(web.get_wrapped_container().id)["NetworkSettings"]["Networks"][net.name]

    found = registration(consul, "six")
    assert found["Address"] == attrs["GlobalIPv6Address"]
    assert found["TaggedAddresses"]["lan_ipv6"] == {"Address": attrs["GlobalIPv6Address"], "Port": 80}
    assert found["TaggedAddresses"]["lan_ipv4"] == {"Address": attrs["IPAddress"], "Port": 80}
    eventually(lambda: passing(consul, found["ID"]), timeout=8, what="HTTP check against [addr]:80")
    assert resolve("six.service.consul", "AAAA") == [attrs["GlobalIPv6Address"]]
    assert srv_ports(consul.dns_port, "six.service.consul") == {80}


def imds(token: str, address: str):
    """IMDSv2: PUT a token, then GET with it; tokenless GETs are refused as on an IMDSv2-only instance."""
    def handle(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        if method == "PUT" and path == "/latest/api/token" and "x-aws-ec2-metadata-token-ttl-seconds" in headers:
            return 200, token
        if method == "GET" and path == "/latest/meta-data/local-ipv4":
            return (200, address) if headers.get("x-aws-ec2-metadata-token") == token else (401, "")
        return 404, ""
    return handle


def test_ip_from_ec2_uses_the_imdsv2_token_flow(agent, workload, consul, fake_endpoint):
    metadata = fake_endpoint(imds("t0ken", "127.0.0.42"))
    agent.launch(["run", "--hostname", agent.hostname, "--ip-from", "ec2", "--ec2-metadata-url", metadata.url, consul.uri])
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    assert registration(consul, "web")["Address"] == "127.0.0.42"
    assert [(m, p) for m, p, _ in metadata.requests] == [("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/local-ipv4")]


def test_unreachable_metadata_is_a_clear_error_and_the_agent_keeps_trying(agent, consul, fake_endpoint):
    log = agent.log_path
    process = subprocess.Popen([*registrator_command(), "run", "--hostname", "h", "--ip-from", "ec2", "--ec2-metadata-url",
                                "http://127.0.0.1:1", "-retry-interval", "200", consul.uri], stderr=open(log, "wb"))
    try:
        eventually(lambda: log.read_text().count("host IP (--ip-from ec2): EC2 instance metadata at http://127.0.0.1:1") >= 2,
                   timeout=10, what="repeated clear error")
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_metadata_that_answers_no_address_is_a_clear_error_and_the_agent_keeps_trying(agent, consul, fake_endpoint, workload):
    """A proxy's page in place of the instance's address is not registered as the address of every service."""
    metadata = fake_endpoint(imds("t0ken", "<html>captive portal</html>"))
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    log = agent.log_path
    process = subprocess.Popen([*registrator_command(), "run", "--hostname", "h", "--ip-from", "ec2", "--ec2-metadata-url",
                                metadata.url, "-retry-interval", "200", consul.uri], stderr=open(log, "wb"))
    try:
        eventually(lambda: log.read_text().count("host IP (--ip-from ec2): found '<html>captive portal</html>', "
                                                 "which is not an IPv4 address") >= 2, timeout=10, what="repeated clear error")
        assert process.poll() is None and consul.services() == {}
    finally:
        process.kill()
        process.wait()


def test_ip_from_interface(agent, workload, consul):
    agent.launch(["run", "--hostname", agent.hostname, "--ip-from", "interface:lo", consul.uri])
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    assert registration(consul, "web")["Address"] == "127.0.0.1"


ECS_LABELS = {
    "com.amazonaws.ecs.cluster": "prod",
    "com.amazonaws.ecs.task-arn": "arn:aws:ecs:us-east-1:123456789012:task/prod/0f1e2d3c",
    "com.amazonaws.ecs.task-definition-family": "nsq",
    "com.amazonaws.ecs.task-definition-version": "7",
    "com.amazonaws.ecs.container-name": "nsqlookupd",
}


def test_ecs_containers_get_ecs_names_and_meta(agent, workload, consul):
    agent.start()
    workload("tcp", labels=ECS_LABELS, ports={9000: None})

    found = registration(consul, "nsqlookupd")
    assert {k: v for k, v in found["Meta"].items() if k.startswith("ecs_")} == {
        "ecs_cluster": "prod", "ecs_task_arn": ECS_LABELS["com.amazonaws.ecs.task-arn"], "ecs_task_family": "nsq",
        "ecs_task_revision": "7", "ecs_container": "nsqlookupd",
    }


def test_ecs_awsvpc_task_gets_the_task_address_from_the_ecs_agent(agent, workload, consul, fake_endpoint):
    pause = workload("tcp", name=f"ecs-nsq-7-internal-ecs-pause-{free_port()}", network_mode="none",
                     labels={"SERVICE_IGNORE": "1"})

    def introspection(method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        docker_id = parse_qs(urlsplit(path).query).get("dockerid", [""])[0]
        task = {"Arn": ECS_LABELS["com.amazonaws.ecs.task-arn"], "Family": "nsq", "Version": "7", "KnownStatus": "RUNNING",
                "Containers": [{"DockerId": docker_id, "Name": "nsqlookupd",
                                "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["127.0.5.7"]}]}]}
        return 200, json.dumps(task)

    ecs = fake_endpoint(introspection)
    agent.start("--ecs-agent-url", ecs.url)
    app = workload("http", labels=ECS_LABELS, network_mode=f"container:{pause.get_wrapped_container().id}")

    found = registration(consul, "nsqlookupd")
    assert (found["Address"], found["Port"]) == ("127.0.5.7", 80)
    assert any(p == f"/v1/tasks?dockerid={app.get_wrapped_container().id}" for _, p, _ in ecs.requests)


def test_a_given_address_takes_the_host_port_of_its_own_family_when_one_port_is_published_on_two(agent, docker_client, images,
                                                                                                 consul):
    """Docker 20.10 gave one `-p 80` two host ports; with SERVICE_IP=127.0.0.1 the IPv6 one was registered too, and on
    IPv4 it was another container's port, whose check passed: DNS sent clients to the wrong container (issue 21)."""
    v4, v6 = free_port(), free_port()
    agent.start()
    split = docker_client.containers.run(images["http"], detach=True,
                                         environment={"SERVICE_NAME": "split", "SERVICE_IP": "127.0.0.1"},
                                         labels={TEST_LABEL: "1"}, ports={"80/tcp": [("0.0.0.0", v4), ("::", v6)]})
    try:
        registration(consul, "split")
        assert sorted((s["Address"], s["Port"]) for s in consul.services().values()
                      if s["Service"] == "split") == [("127.0.0.1", v4)]
        assert srv_ports(consul.dns_port, "split.service.consul") == {v4}
    finally:
        split.remove(force=True)
