"""Behaviour across hosts (issue 15), on the fleet: hosts a, b, c with their own engines, Consul
clients and agents, and three Consul servers with default-deny ACLs."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from docker.models.containers import Container

from tests.cluster.fleet import ConsulError, Fleet, Host, Node, parallel
from tests.integration.rig import ROOT, eventually, unavailable


def start(fleet: Fleet, host: Host, name: str, service: str, always: bool = False) -> Container:
    """The http image on HOST, port 80 published on a port the engine picks (ALWAYS: restarted by its
    engine, as a host's services are after a reboot)."""
    policy = {"Name": "always"} if always else None
    container = host.docker.containers.run(fleet.image_tags["http"], name=name, detach=True, restart_policy=policy,
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


def endpoints_of(host: Host, prefix: str) -> set[tuple[str, int]]:
    """Where HOST's engine publishes its running containers named PREFIX… now (a container restarted
    by its engine may get another port)."""
    return {(host.ip, published(c)) for c in host.docker.containers.list(filters={"name": prefix}) if c.ports.get("80/tcp")}


@pytest.mark.parametrize("loss", ["kill", "cut"])
def test_host_loss(clean: Fleet, loss: str) -> None:
    """Host a dies (everything SIGKILLed, or its cable pulled): its instances leave c's DNS within
    Consul's failure detection with no write from any agent (b's and c's agents write nothing, and a's
    catalog entries stay as they were, failing with its node); b's instance is left alone. When a
    returns on its data dirs, its instances come back by themselves, once each."""
    a, b, c = clean.hosts.values()
    for name in ("lost-1", "lost-2"):
        start(clean, a, name, "lost", always=True)
    start(clean, b, "lost-1", "lost", always=True)
    before = endpoints_of(a, "lost") | endpoints_of(b, "lost")
    eventually(lambda: c.endpoints("lost.service.consul") == before, timeout=30, what="all three in c's DNS")
    a_entries = {e["ServiceID"]: e["ModifyIndex"] for e in catalog(clean, c, "lost") if e["Node"] == "a"}
    writes = {h.name: h.writes() for h in (b, c)}
    resyncs = {h.name: h.metric("registrator_resyncs_total") for h in (b, c)}

    lost = time.monotonic()
    if loss == "kill":
        clean.kill(a)
    else:
        clean.cut(a)
    try:
        eventually(lambda: c.endpoints("lost.service.consul") == endpoints_of(b, "lost"), timeout=60, interval=0.1,
                   what="only b's instance in c's DNS")
        gone = time.monotonic() - lost
        print(f"host loss ({loss}) -> a's instances gone from c's DNS after {gone:.2f}s")
        eventually(lambda: all(h.metric("registrator_resyncs_total") > resyncs[h.name] for h in (b, c)),
                   timeout=25, interval=0.5, what="a resync on b and on c while a is away")
        assert {h.name: h.writes() for h in (b, c)} == writes
        assert {e["ServiceID"]: e["ModifyIndex"] for e in catalog(clean, c, "lost") if e["Node"] == "a"} == a_entries
        assert b.endpoints("lost.service.consul") == endpoints_of(b, "lost")
    finally:
        if loss == "kill":
            clean.start(a, "dockerd", "consul", "registrator")
        else:
            clean.restore(a)

    eventually(lambda: len(endpoints_of(a, "lost")) == 2, timeout=30, what="a's containers running again")
    after = endpoints_of(a, "lost")
    eventually(lambda: c.endpoints("lost.service.consul") == after | endpoints_of(b, "lost"), timeout=60,
               interval=0.2, what="a's instances back in c's DNS")
    returned = time.monotonic() - lost
    instances = catalog(clean, c, "lost")
    assert sorted((e["Node"], e["ServiceAddress"], e["ServicePort"]) for e in instances) == \
        sorted([("a", *endpoint) for endpoint in after] + [("b", *endpoint) for endpoint in endpoints_of(b, "lost")])
    print(f"host loss ({loss}) -> a's instances back in c's DNS {returned:.2f}s after the loss")


def checks(fleet: Fleet, via: Host, node: str) -> set[tuple[str, str, str]]:
    """(service ID, check ID, status) of NODE's service checks, as the catalog answers through VIA."""
    try:
        entries = via.consul("GET", f"/v1/health/node/{node}", fleet.management_token)
    except (OSError, ConsulError):
        return set()
    return {(e["ServiceID"], e["CheckID"], e["Status"]) for e in entries if e["ServiceID"]}


def test_client_agent_restart_keeps_its_data(clean: Fleet) -> None:
    """b's Consul client stops (SIGTERM: it leaves the cluster) and starts again on its data dir: its
    services and their checks' states come back as they were, from its own data, with no write from our
    agent over the restart and a resync after it, and no duplicate or stale entry."""
    a, b, c = clean.hosts.values()
    for name, path in (("kept-up", "/health"), ("kept-down", "/missing")):
        b.docker.containers.run(clean.image_tags["http"], name=name, detach=True, ports={"80/tcp": None},
                                environment={"SERVICE_NAME": name, "SERVICE_CHECK_HTTP": path, "SERVICE_CHECK_INTERVAL": "1s"})
    before = eventually(lambda: (now := checks(clean, c, "b")) and sorted(s for _, _, s in now) == ["critical", "passing"]
                        and now,
                        timeout=30, what="b's two services, one check passing and one critical")
    services = b.consul("GET", "/v1/agent/services", clean.management_token)
    writes = b.writes()

    clean.stop(b, "consul")
    clean.start(b, "consul")  # what it serves before our agent writes anything comes from its data dir
    eventually(lambda: checks(clean, c, "b") == before, timeout=30, what="b's services and check states back")
    resyncs = b.metric("registrator_resyncs_total")
    eventually(lambda: b.metric("registrator_resyncs_total") > resyncs, timeout=25, interval=0.5, what="a resync on b after the "
                                                                                                       "restart")
    assert b.writes() == writes
    assert b.consul("GET", "/v1/agent/services", clean.management_token) == services
    for name in ("kept-up", "kept-down"):
        assert [e["Node"] for e in catalog(clean, c, name)] == ["b"]


def registered(fleet: Fleet, host: Host, service: str) -> set[tuple[str, int]] | None:
    """(address, port) of SERVICE's instances HOST's own Consul client holds (None: it does not answer)."""
    try:
        services = host.consul("GET", "/v1/agent/services", fleet.management_token)
    except (OSError, ConsulError):
        return None
    return {(s["Address"], s["Port"]) for s in services.values() if s["Service"] == service}


def test_client_agent_down_while_containers_churn(clean: Fleet) -> None:
    """a's Consul client crashes and stays down for 30 s while containers start and stop on a; once it
    is back (on its data dir, with the services it held before), a's services in its client, in the
    catalog and in c's DNS are exactly what `docker ps` shows on a."""
    a, b, c = clean.hosts.values()
    old = [start(clean, a, f"churn-{i}", "churn") for i in range(3)]
    eventually(lambda: registered(clean, a, "churn") == endpoints_of(a, "churn"), timeout=30, what="a's three churn instances "
                                                                                                   "registered")

    down = time.monotonic()
    clean.stop(a, "consul", signal.SIGKILL)
    old[0].remove(force=True)
    old[1].stop(timeout=1)
    start(clean, a, "churn-3", "churn")
    time.sleep(10)  # the outage is the scenario: the agent's resyncs run (and fail) against the dead client
    start(clean, a, "churn-4", "churn")
    old[2].stop(timeout=1)
    time.sleep(max(30 - (time.monotonic() - down), 0))
    clean.start(a, "consul")

    running = endpoints_of(a, "churn")
    assert len(running) == 2
    eventually(lambda: registered(clean, a, "churn") == running, timeout=30, what="a's client holding exactly what runs on a")
    eventually(lambda: {(e["ServiceAddress"], e["ServicePort"]) for e in catalog(clean, c, "churn")} == running,
               timeout=15, what="the catalog holding exactly what runs on a")
    eventually(lambda: c.endpoints("churn.service.consul") == running, timeout=15, what="c's DNS answering what runs on a")
    print(f"client down 30 s during churn -> a's services equal its docker ps {time.monotonic() - down - 30:.2f}s after it "
          "returned")


@dataclass
class DnsWatch:
    """C's DNS answers for one name, polled from a thread until stopped: every answer that differs from
    the expected set is kept with its time."""

    host: Host
    name: str
    expected: set[tuple[str, int]]
    polls: int = 0
    misses: list[tuple[float, set[tuple[str, int]]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> DnsWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.05):
            answer = self.host.endpoints(self.name)
            self.polls += 1
            if answer != self.expected:
                self.misses.append((time.monotonic() - started, answer))


UPGRADE_FROM = "bab680eebef147c2ab93889d55bb1f5fe83db82c"  # the agent as of its first CHANGELOG (0.1.0, before the
# performance work replaced its Docker and Consul transports and metrics)


@pytest.fixture(scope="module")
def previous_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `registrator` command that runs the agent of UPGRADE_FROM, taken from this checkout's history."""
    tree = tmp_path_factory.mktemp("previous-build")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", UPGRADE_FROM], capture_output=True)
    if archive.returncode != 0:
        unavailable(f"the upgrade test needs commit {UPGRADE_FROM[:12]} of this repository's history (a full clone): "
                    f"{archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    command = tree / "bin" / "registrator"  # named like the installed one: the rig finds its agent by that name
    command.parent.mkdir()
    command.write_text(f"#!{ROOT / '.venv' / 'bin' / 'python'}\n"
                       f"import sys\nsys.path.insert(0, {str(tree)!r})\n"
                       "import registrator\n"
                       f"assert registrator.__file__.startswith({str(tree)!r}), registrator.__file__\n"
                       "from cli import main\nmain()\n")
    command.chmod(0o755)
    return command


def test_rolling_upgrade_of_the_agent(clean: Fleet, previous_build: Path) -> None:
    """Hosts run the previous build of our agent; it is replaced by this one host after host (SIGTERM,
    then the new one started): c's DNS answers every instance throughout, and each new agent finds
    the previous one's registrations in place and writes nothing."""
    hosts = list(clean.hosts.values())
    c = clean.hosts["c"]
    previous: list[Host] = []  # hosts running the previous build: this build again when the test ends
    try:
        for host in hosts:
            clean.stop(host, "registrator")
            previous.append(host)
            clean.start(host, "registrator", agent=previous_build)
            start(clean, host, "steady", "steady")
        expected = {endpoint for host in hosts for endpoint in endpoints_of(host, "steady")}
        eventually(lambda: c.endpoints("steady.service.consul") == expected, timeout=30, what="three instances in c's DNS")
        assert {h.name: h.metric("registrator_registrations_total") for h in hosts} == {h.name: 1.0 for h in hosts}

        with DnsWatch(c, "steady.service.consul", expected) as watch:
            eventually(lambda: watch.polls > 0, timeout=10, what="the DNS watch polling")
            for host in hosts:
                clean.stop(host, "registrator")
                previous.remove(host)
                clean.start(host, "registrator")
            resyncs = {h.name: h.metric("registrator_resyncs_total") for h in hosts}
            eventually(lambda: all(h.metric("registrator_resyncs_total") > resyncs[h.name] for h in hosts),
                       timeout=25, interval=0.5, what="a resync by every new agent")
    finally:
        for host in previous:
            clean.stop(host, "registrator")
            clean.start(host, "registrator")
    assert watch.misses == [], f"{len(watch.misses)} of {watch.polls} answers differed"
    assert {h.name: h.writes() for h in hosts} == {h.name: 0.0 for h in hosts}
    print(f"rolling upgrade from {UPGRADE_FROM[:12]}: {watch.polls} DNS answers from c, none missing an instance")


def turn(fleet: Fleet, host: Host, containers: list[Container], name: str, service: str) -> None:
    """One churn step on HOST: NAME, an instance of SERVICE, starts and the oldest of CONTAINERS is removed."""
    containers.append(start(fleet, host, name, service))
    containers.pop(0).remove(force=True)


def two_per_host(fleet: Fleet, service: str) -> dict[str, list[Container]]:
    """Two instances of SERVICE on every host, registered with every host's client."""
    hosts = list(fleet.hosts.values())
    containers = {h.name: [start(fleet, h, f"{service}-{i}", service) for i in range(2)] for h in hosts}
    eventually(lambda: all(registered(fleet, h, service) == endpoints_of(h, service) for h in hosts), timeout=30,
               what="every host's instances registered")
    return containers


def converged(fleet: Fleet, service: str, client_timeout: float) -> float:
    """Wait until every host's client, the catalog and c's DNS hold exactly SERVICE's two instances
    running on each host; returns how long the clients took."""
    hosts, c = list(fleet.hosts.values()), fleet.hosts["c"]
    started = time.monotonic()
    running = {h.name: endpoints_of(h, service) for h in hosts}
    assert all(len(endpoints) == 2 for endpoints in running.values())
    eventually(lambda: all(registered(fleet, h, service) == running[h.name] for h in hosts), timeout=client_timeout, interval=0.2,
               what="every host's client holding exactly what runs on it")
    clients = time.monotonic() - started
    everywhere = {(h.name, *endpoint) for h in hosts for endpoint in running[h.name]}
    eventually(lambda: {(e["Node"], e["ServiceAddress"], e["ServicePort"]) for e in catalog(fleet, c, service)} == everywhere,
               timeout=60, interval=0.2, what="the catalog holding exactly what runs on every host")
    eventually(lambda: c.endpoints(f"{service}.service.consul") == {endpoint for endpoints in running.values()
                                                                    for endpoint in endpoints},
               timeout=30, interval=0.2, what="c's DNS answering what runs on every host")
    return clients


def test_leader_loss_during_churn(clean: Fleet) -> None:
    """The leading Consul server is SIGKILLed while containers start and stop on every host: once a new
    leader is elected, every host's client, the catalog and c's DNS hold exactly what runs on each host.
    (During the election a client's API stalls: a timeout is "not yet".)"""
    hosts = list(clean.hosts.values())
    containers = two_per_host(clean, "elect")
    leader = eventually(clean.leader, timeout=10, what="a leader")  # a Node: eventually fails on None

    def new_leader() -> Node | None:
        now = clean.leader()
        return None if now == leader else now

    lost = time.monotonic()
    clean.stop(leader, "consul", signal.SIGKILL)
    try:
        for round in range(2, 5):
            parallel([partial(turn, clean, h, containers[h.name], f"elect-{round}", "elect") for h in hosts])
        churned = time.monotonic() - lost
        elected = eventually(new_leader, timeout=60, interval=0.2, what="a new leader")
        election = time.monotonic() - lost
        converged(clean, "elect", client_timeout=60)
        print(f"leader {leader.name} lost during churn (churn done after {churned:.2f}s) -> {elected.name} leads "
              f"after {election:.2f}s, every host converged after {time.monotonic() - lost:.2f}s")
    finally:
        clean.start(leader, "consul")


def test_quorum_lost_for_a_minute_during_churn(clean: Fleet) -> None:
    """Two of the three servers are SIGKILLed for a minute while containers start and stop on every
    host. The clients' APIs stall (each needs the servers to resolve a token again), so the agents'
    calls time out and back off; once a leader is back, every host's client holds exactly its
    `docker ps` within a few seconds: the agents do not sit out backoffs that grew during the outage."""
    hosts = list(clean.hosts.values())
    containers = two_per_host(clean, "quorum")
    survivor = eventually(clean.leader, timeout=10, what="a leader")
    gone = [server for server in clean.server_nodes if server != survivor]
    lost = time.monotonic()
    for server in gone:
        clean.stop(server, "consul", signal.SIGKILL)
    try:
        for round in range(2, 6):
            time.sleep(max(lost + 12 * (round - 2) - time.monotonic(), 0))  # the outage is the scenario
            parallel([partial(turn, clean, h, containers[h.name], f"quorum-{round}", "quorum") for h in hosts])
        time.sleep(max(lost + 60 - time.monotonic(), 0))
    finally:
        for server in gone:
            clean.start(server, "consul")
    eventually(clean.leader, timeout=60, interval=0.2, what="a leader again")
    back = time.monotonic()
    agents = converged(clean, "quorum", client_timeout=15)
    print(f"quorum lost for {back - lost:.1f}s during churn -> every host's client equal to its docker ps {agents:.2f}s after "
          f"a leader was back, c's DNS {time.monotonic() - back:.2f}s after")


def lookups(host: Host, lookupd_http: tuple[str, int], topic: str) -> list[Any]:
    """The producers an nsqlookupd knows for TOPIC, asked from HOST (none while it does not answer)."""
    result = host.exec("curl", "-sf", "--max-time", "2", f"http://{lookupd_http[0]}:{lookupd_http[1]}/lookup?topic={topic}")
    return list(json.loads(result.stdout).get("producers", [])) if result.returncode == 0 else []


def two(host: Host, name: str) -> set[tuple[str, int]]:
    """NAME's endpoints in HOST's DNS once there are two (before: none)."""
    found = host.endpoints(name)
    return found if len(found) == 2 else set()


def test_nsq_across_hosts(clean: Fleet) -> None:
    """The motivating case across hosts: nsqlookupd on a and on b, nsqd on c started with every lookupd
    of c's Consul DNS SRV answer; a message published on c is read on a by a consumer that knows only
    a's Consul DNS, through a lookupd and from it c's nsqd."""
    a, b, c = clean.hosts.values()
    for host in (a, b):
        host.docker.containers.run(clean.image_tags["nsq"], command=["nsqlookupd"], name="nsqlookupd", detach=True,
                                   ports={"4160/tcp": None, "4161/tcp": None},
                                   environment={"SERVICE_4160_NAME": "nsqlookupd-tcp", "SERVICE_4161_NAME": "nsqlookupd-http"})
    lookupd_tcp = eventually(partial(two, c, "nsqlookupd-tcp.service.consul"), timeout=30, what="both nsqlookupd in c's DNS")
    assert {ip for ip, _ in lookupd_tcp} == {a.ip, b.ip}

    # nsqd's entrypoint, played by the test: every lookupd of the SRV answer; its own ports published as
    # they are, so what it tells the lookupds (c's address, 4150) is where consumers reach it
    c.docker.containers.run(clean.image_tags["nsq"], name="nsqd", detach=True,
                            command=["nsqd", f"--broadcast-address={c.ip}",
                                     *[f"--lookupd-tcp-address={ip}:{port}" for ip, port in lookupd_tcp]],
                            ports={"4150/tcp": 4150, "4151/tcp": 4151},
                            environment={"SERVICE_4150_NAME": "nsqd", "SERVICE_4151_NAME": "nsqd-http"})
    [(ip, port)] = eventually(lambda: c.endpoints("nsqd-http.service.consul"), timeout=30, what="nsqd in c's DNS")
    publish = c.exec("curl", "-sf", "--max-time", "5", "-d", "order-42", f"http://{ip}:{port}/pub?topic=orders")
    assert publish.returncode == 0, publish.stderr

    lookupd_http = eventually(partial(two, a, "nsqlookupd-http.service.consul"), timeout=10, what="both nsqlookupd HTTP in a's "
                                                                                                  "DNS")
    for lookupd in lookupd_http:
        producers = eventually(partial(lookups, a, lookupd, "orders"), timeout=20, what=f"nsqd known to {lookupd}")
        assert [(p["broadcast_address"], p["tcp_port"]) for p in producers] == [(c.ip, 4150)]
    nsq_bin = Path(subprocess.run(["bash", str(ROOT / "scripts" / "nsq.sh")], capture_output=True, text=True,
                                  check=True).stdout.strip())
    consumer = a.exec(str(nsq_bin / "nsq_tail"), "--topic=orders", "-n", "1",
                      *[f"--lookupd-http-address={ip}:{port}" for ip, port in lookupd_http], timeout=30)
    assert consumer.stdout.strip() == "order-42", consumer.stderr
