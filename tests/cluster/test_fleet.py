"""Behaviour across hosts (issue 15), on the fleet: hosts a, b, c with their own engines, Consul
clients and agents, and three Consul servers with default-deny ACLs."""

from __future__ import annotations

import time
from typing import Any

from docker.models.containers import Container

from tests.cluster.fleet import ConsulError, Fleet, Host
from tests.integration.rig import eventually


def start(fleet: Fleet, host: Host, name: str, service: str) -> Container:
    """The http image on HOST, port 80 published on a port the engine picks."""
    container = host.docker.containers.run(fleet.image_tags["http"], name=name, detach=True,
                                           environment={"SERVICE_NAME": service}, ports={"80/tcp": None})
    container.reload()
    return container


def published(container: Container) -> int:
    return int(container.ports["80/tcp"][0]["HostPort"])


def catalog(fleet: Fleet, via: Host, service: str) -> list[dict[str, Any]]:
    """The catalog's instances of SERVICE as VIA's Consul client answers (a stalled API is "none yet")."""
    try:
        return list(via.consul("GET", f"/v1/catalog/service/{service}", fleet.management_token))
    except (OSError, ConsulError):
        return []


def test_cross_host_discovery(clean: Fleet) -> None:
    """Instances on hosts a and b are found through host c's Consul DNS, each at its own host's address
    and published port, and answer there."""
    a, b, c = clean.hosts.values()
    latency: dict[tuple[str, int], float] = {}
    for host in (a, b):  # one at a time, so each latency is its own
        started = time.monotonic()  # before `docker run`: the latency a deployer sees
        endpoint = (host.ip, published(start(clean, host, "discovery", "discovery")))

        def seen(endpoint: tuple[str, int] = endpoint) -> bool:
            return endpoint in c.endpoints("discovery.service.consul")
        eventually(seen, timeout=30, interval=0.02, what=f"{endpoint} in c's DNS")
        latency[endpoint] = time.monotonic() - started
    assert c.endpoints("discovery.service.consul") == set(latency)
    addresses = [line.split()[4] for line in c.dig("discovery.service.consul", "A")]
    assert sorted(addresses) == sorted([a.ip, b.ip])
    for ip, port in latency:
        assert c.exec("curl", "-sf", "--max-time", "5", f"http://{ip}:{port}/").stdout == "ok\n"
    for (ip, port), seconds in latency.items():
        print(f"started on {ip} -> {ip}:{port} in c's DNS after {seconds:.2f}s")


def test_two_hosts_one_name(clean: Fleet) -> None:
    """Hosts a and b both run a container named web: each keeps its own service, and a's stopping
    leaves b's alone through both agents' resyncs."""
    a, b, c = clean.hosts.values()
    containers = {host.name: start(clean, host, "web", "web") for host in (a, b)}
    instances = eventually(lambda: [e for e in [catalog(clean, c, "web")] if len(e) == 2], timeout=30,
                           what="both web instances in the catalog")[0]
    by_node = {entry["Node"]: entry for entry in instances}
    assert set(by_node) == {"a", "b"}
    assert by_node["a"]["ServiceID"] != by_node["b"]["ServiceID"]
    for host in (a, b):
        entry = by_node[host.name]
        assert entry["ServiceMeta"]["registrator-host"] == f"fleet-{host.name}"
        assert entry["ServiceMeta"]["registrator-container"] == containers[host.name].id
        assert (entry["ServiceAddress"], entry["ServicePort"]) == (host.ip, published(containers[host.name]))
        own = host.consul("GET", "/v1/agent/services", clean.management_token)
        assert [s["ID"] for s in own.values() if s["Service"] == "web"] == [entry["ServiceID"]]

    resyncs = {host.name: host.metric("registrator_resyncs_total") for host in (a, b)}
    containers["a"].remove(force=True)
    eventually(lambda: [e["Node"] for e in catalog(clean, c, "web")] == ["b"], timeout=15, what="only b's web left")
    eventually(lambda: all(host.metric("registrator_resyncs_total") > resyncs[host.name] for host in (a, b)),
               timeout=25, interval=0.5, what="a resync on a and on b")
    [left] = catalog(clean, c, "web")
    assert left["ServiceID"] == by_node["b"]["ServiceID"]
    assert left["ServiceMeta"]["registrator-container"] == containers["b"].id
