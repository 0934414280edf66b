"""Figures on the fleet (issue 15): hosts a, b, c with their own engines, Consul clients and agents,
and three Consul servers (tests/cluster/fleet.py); prints a markdown table and writes JSON.

    flock /tmp/registrator-docker-tests.lock .venv/bin/python bench/fleet.py [--quick]

Measured from outside, as bench/run.py does: clocks start at Docker's own event time (a's events
stream) or at the fault injected here; every poll starts before the change. C's Consul DNS listens
only inside c's network namespace, so each poller is a thread moved into that namespace (setns(2)
applies to the calling thread only) asking over TCP with bench/dns.py's client: no `dig` per poll.

1. start on a → resolvable from c's DNS: one container at a time, p50 / p99; beside it, when the
   catalog (read from the leader through c's client) first lists it.
2. host loss: SIGKILL of everything on a (the rig's kill) → a's instances gone from b's and c's DNS;
   a brought back between runs.
3. leader failover: the leading server SIGKILLed while every host churns containers → every host's
   client and its catalog entries equal its `docker ps`; and the new leader's election time.
4. idle: writes over windows of 60 s with nothing changing: our agents' own counters, and what the
   servers' and clients' /v1/agent/metrics count (Consul's own work is shown apart).
5. quorum loss: two of the three servers SIGKILLed for 60 s while every host churns containers →
   every host's client equal to its `docker ps`, and its catalog entries too, counted from the
   moment a leader answers again (the agents' part and Consul's anti-entropy apart).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dns import srv_ports  # noqa: E402
from bench.provenance import commit  # noqa: E402
from tests.cluster.fleet import ConsulError, Fleet, Host, Node, parallel  # noqa: E402
from tests.integration.rig import consul_binary, eventually  # noqa: E402

CLONE_NEWNET = 0x40000000
DNS_PORT = 8600
_libc = ctypes.CDLL(None, use_errno=True)


def enter(netns: Path) -> None:
    """Move the calling thread into NETNS (the rest of the process stays): sockets it opens from then
    on are the host's, so a poll costs one TCP exchange, not a process."""
    fd = os.open(netns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    finally:
        os.close(fd)


class DnsPoll:
    """Polls one name's SRV answer in HOST's DNS from a thread in HOST's namespace, started before the
    change: `seen` is the wall time of the first answer CONDITION accepts, `ports` that answer."""

    def __init__(self, host: Host, name: str, condition: Callable[[list[int]], bool], timeout: float, interval: float) -> None:
        self.seen: float | None = None
        self.ports: list[int] = []
        self.polls = 0
        self.elapsed = 0.0
        self.ready = threading.Event()
        self._args = (host, name, condition, timeout, interval)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        host, name, condition, timeout, interval = self._args
        enter(host.netns)
        self.ready.set()
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                ports = srv_ports(name, DNS_PORT, tcp=True, timeout=0.5)
            except OSError:  # a refused or slow TCP answer: ask again
                ports = None
            self.polls += 1
            if ports is not None and condition(ports):
                self.seen, self.ports = time.time(), ports
                break
            time.sleep(interval)
        self.elapsed = time.monotonic() - started

    def wait(self) -> float:
        self._thread.join()
        if self.seen is None:
            raise TimeoutError(f"{self._args[1]} in {self._args[0].name}'s DNS: the answer did not change")
        return self.seen

    @property
    def interval_ms(self) -> float:
        """The poll interval achieved (a TCP exchange plus the sleep)."""
        return self.elapsed / max(self.polls, 1) * 1000


class CatalogPoll:
    """Polls the catalog for one service through HOST's client (its default consistency: the leader
    answers) from a thread started before the change: `seen` is when it first lists an instance. Beside
    the DNS poll it shows how much of start → DNS is Consul's stale DNS read (a follower answers DNS and
    learns of a commit with the leader's next heartbeat)."""

    def __init__(self, fleet: Fleet, host: Host, service: str, timeout: float) -> None:
        self.seen: float | None = None
        self._args = (fleet, host, service, timeout)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fleet, host, service, timeout = self._args
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if host.consul("GET", f"/v1/catalog/service/{service}", fleet.management_token, timeout=1):
                    self.seen = time.time()
                    return
            except (OSError, ConsulError):
                pass
            time.sleep(0.002)

    def wait(self) -> float | None:
        self._thread.join()
        return self.seen


class StartEvents:
    """Docker's own `start` event times on one engine (its events stream, read in a thread)."""

    def __init__(self, host: Host) -> None:
        self.times: dict[str, float] = {}
        self._client = docker.DockerClient(base_url=host.docker_host, timeout=None)
        self._stream = self._client.events(decode=True, filters={"type": "container", "event": "start"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.times.setdefault(event["Actor"]["ID"], event["timeNano"] / 1e9)
        except Exception:  # the stream closed
            pass

    def wait(self, container_id: str) -> float:
        eventually(lambda: container_id in self.times, timeout=30, interval=0.01, what="the start event")
        return self.times[container_id]

    def close(self) -> None:
        self._stream.close()
        self._client.close()


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"min": round(ordered[0], 1), "median": round(statistics.median(ordered), 1), "p99": round(p99, 1),
            "max": round(ordered[-1], 1), "n": len(ordered)}


def run_http(fleet: Fleet, host: Host, name: str, service: str, always: bool = False) -> Any:
    policy = {"Name": "always"} if always else None
    return host.docker.containers.run(fleet.image_tags["http"], name=name, detach=True, restart_policy=policy,
                                      environment={"SERVICE_NAME": service}, ports={"80/tcp": None})


def published_ports(host: Host, prefix: str) -> set[int]:
    """The published ports of HOST's running containers named PREFIX… (`docker ps`)."""
    return {int(c.ports["80/tcp"][0]["HostPort"]) for c in host.docker.containers.list(filters={"name": prefix})
            if c.ports.get("80/tcp")}


def remove_all(fleet: Fleet, *hosts: Host) -> None:
    for host in hosts or tuple(fleet.hosts.values()):
        parallel([partial(c.remove, force=True) for c in host.docker.containers.list(all=True)])


# --- 1. start on a → c's DNS ----------------------------------------------------------------------

def start_to_dns(fleet: Fleet, count: int) -> dict[str, Any]:
    a, c = fleet.hosts["a"], fleet.hosts["c"]
    events = StartEvents(a)
    samples, catalog, intervals, wrong = [], [], [], 0
    try:
        for i in range(count):
            name = f"seq-{i}"  # one name per container: any answer for it is this container's
            poll = DnsPoll(c, f"{name}.service.consul", bool, timeout=30, interval=0.001)
            listed = CatalogPoll(fleet, c, name, timeout=30)
            container = run_http(fleet, a, name, name)
            container.reload()
            port = int(container.ports["80/tcp"][0]["HostPort"])
            seen = poll.wait()
            wrong += port not in poll.ports
            started = events.wait(container.id)
            samples.append((seen - started) * 1000)
            if (in_catalog := listed.wait()) is not None:
                catalog.append((in_catalog - started) * 1000)
            intervals.append(poll.interval_ms)
    finally:
        events.close()
    return {"start_to_c_dns_ms": summary(samples), "samples_ms": [round(s, 1) for s in samples],
            "start_to_catalog_ms": summary(catalog) if catalog else None, "catalog_samples_ms": [round(s, 1) for s in catalog],
            "answers_without_the_published_port": wrong, "poll_interval_ms_median": round(statistics.median(intervals), 2)}


# --- 2. host loss ---------------------------------------------------------------------------------

def host_loss(fleet: Fleet, runs: int) -> dict[str, Any]:
    a, b, c = fleet.hosts["a"], fleet.hosts["b"], fleet.hosts["c"]
    for i in range(2):
        run_http(fleet, a, f"lost-{i}", "lost", always=True)
    samples: dict[str, list[float]] = {"b": [], "c": []}
    kill_ms, intervals = [], []
    for _ in range(runs):
        ports = eventually(partial(two_ports, a), timeout=60, what="a's two instances running")
        expected = {(a.ip, port) for port in ports}
        for other in (b, c):
            eventually(lambda o=other, e=expected: o.endpoints("lost.service.consul") == e, timeout=90, interval=0.2,
                       what=f"a's instances in {other.name}'s DNS")
        polls = {h.name: DnsPoll(h, "lost.service.consul", lambda p: not p, timeout=120, interval=0.005) for h in (b, c)}
        lost = time.time()  # the fault: the rig's kill scans a's namespace and SIGKILLs all of it
        fleet.kill(a)
        kill_ms.append((time.time() - lost) * 1000)
        try:
            for name, poll in polls.items():
                samples[name].append(round(poll.wait() - lost, 2))
                intervals.append(poll.interval_ms)
        finally:
            fleet.start(a, "dockerd", "consul", "registrator", timeout=120)
    remove_all(fleet, a)
    return {"gone_s": {name: {"median": round(statistics.median(s), 2), "samples": s, "n": len(s)} for name,
                       s in samples.items()},
            "kill_call_ms_median": round(statistics.median(kill_ms), 1),
            "poll_interval_ms_median": round(statistics.median(intervals), 2)}


def two_ports(host: Host) -> set[int] | None:
    ports = published_ports(host, "lost")
    return ports if len(ports) == 2 else None


# --- 3. leader failover ---------------------------------------------------------------------------

@dataclass
class Convergence:
    """Polls one host from before the kill: its `docker ps` of the churned containers against its own
    client's services and the catalog's entries for its node, every 100 ms, each sample timed."""

    fleet: Fleet
    host: Host
    catalog: bool = True  # False: the host's own client only (what our agent writes)
    samples: list[tuple[float, bool]] = field(default_factory=list)
    mismatch: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append((time.time(), self.equal()))

    def equal(self) -> bool:
        token = self.fleet.management_token
        try:
            running = {(self.host.ip, port) for port in published_ports(self.host, "elect")}
            local = self.host.consul("GET", "/v1/agent/services", token, timeout=1)
            catalog = self.host.consul("GET", "/v1/catalog/service/elect", token, timeout=1) if self.catalog else None
        except (OSError, ConsulError, docker.errors.APIError) as exc:
            self.mismatch = {"at": time.time(), "error": repr(exc)}
            return False  # a client's API stalls during the election: not yet
        held = {(s["Address"], s["Port"]) for s in local.values() if s["Service"] == "elect"}
        listed = running if catalog is None else {(e["ServiceAddress"], e["ServicePort"]) for e in catalog
                                                  if e["Node"] == self.host.name}
        if held == running and listed == running:
            return True
        self.mismatch = {"at": time.time(), "docker_ps": sorted(running), "client": sorted(held), "catalog": sorted(listed)}
        return False

    def stable_since(self, seconds: float) -> bool:
        """Equal in every sample of the last SECONDS."""
        now = time.time()
        recent = [ok for t, ok in self.samples if t >= now - seconds]
        return bool(recent) and all(recent) and self.samples[0][0] < now - seconds

    def converged_at(self) -> float:
        """The first sample of the last unbroken run of equal ones."""
        at = self.samples[-1][0]
        for t, ok in reversed(self.samples):
            if not ok:
                break
            at = t
        return at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


TIMEOUT = 120  # a failover run not converged by then is recorded as such


def leader_failover(fleet: Fleet, runs: int) -> dict[str, Any]:
    hosts = list(fleet.hosts.values())
    containers = {h.name: [run_http(fleet, h, f"elect-0-{i}", "elect") for i in range(2)] for h in hosts}
    results = [failover(fleet, containers, run) for run in range(1, runs + 1)]
    remove_all(fleet)
    converged = [r["converged_s"] for r in results if r["converged_s"] is not None]
    elections = [r["election_s"] for r in results if r["election_s"] is not None]
    return {"runs": results, "not_converged_within_s": TIMEOUT, "not_converged": len(results) - len(converged),
            "converged_s": {"median": round(statistics.median(converged), 2) if converged else None, "samples": converged,
                            "n": len(converged)},
            "election_s": {"median": round(statistics.median(elections), 2) if elections else None, "samples": elections,
                           "n": len(elections)}}


def failover(fleet: Fleet, containers: dict[str, list[Any]], run: int) -> dict[str, Any]:
    """One leader kill during churn, the server brought back after."""
    hosts = list(fleet.hosts.values())
    eventually(partial(tolerant, fleet), timeout=120, interval=0.5, what="every server a healthy voter")
    watches = {h.name: Convergence(fleet, h) for h in hosts}
    eventually(lambda: all(w.stable_since(1) for w in watches.values()), timeout=60, interval=0.2, what="every host converged "
                                                                                                        "before the kill")
    leader = eventually(fleet.leader, timeout=30, what="a leader")
    assert leader is not None
    elected: dict[str, Any] = {}
    logs = {h.name: h.log_size("registrator") for h in hosts}
    consul_logs = {h.name: h.log_size("consul") for h in hosts}
    lost = time.time()

    def watch_election() -> None:
        while time.time() - lost < 120:
            now = fleet.leader()
            if now is not None and now != leader:
                elected.update(at=time.time(), name=now.name)
                return
            time.sleep(0.05)

    election = threading.Thread(target=watch_election, daemon=True)
    election.start()
    fleet.stop(leader, "consul", signal.SIGKILL)
    try:
        for step in range(3):  # churn on every host while the servers elect
            parallel([partial(turn, fleet, h, containers[h.name], f"elect-{run}-{step}") for h in hosts])
        churned = time.time() - lost
        election.join()
        try:
            eventually(lambda: all(w.stable_since(3) for w in watches.values()), timeout=TIMEOUT, interval=0.2,
                       what="every host converged")
            converged = True
        except AssertionError:
            converged = False  # kept with its evidence; the other runs go on
    finally:
        for w in watches.values():
            w.stop()
        fleet.start(leader, "consul", timeout=120)
    per_host = {name: round(w.converged_at() - lost, 2) if w.samples[-1][1] else None for name, w in watches.items()}
    lagging = max(per_host, key=lambda n: float("inf") if per_host[n] is None else per_host[n])
    result: dict[str, Any] = {
        "killed": leader.name, "elected": elected.get("name"), "election_s": round(elected["at"] - lost, 2) if elected else None,
        "churn_done_s": round(churned, 2), "converged_s": per_host[lagging] if converged else None, "per_host_s": per_host,
        "lagging": lagging}
    if not converged or per_host[lagging] > 15:  # an outlier: what the lagging host saw and its agent said meanwhile
        host = fleet.hosts[lagging]
        mismatch = dict(watches[lagging].mismatch)
        if "at" in mismatch:
            mismatch["at_s"] = round(mismatch.pop("at") - lost, 2)
        result["lagging_last_mismatch"] = mismatch
        result["lagging_log"] = host.registrator_log(logs[lagging])[-6000:]
        log_tail = (host.dir / "consul.log").read_bytes()[consul_logs[lagging]:]
        result["lagging_consul_log"] = log_tail.decode(errors="replace")[-6000:]
    eventually(partial(tolerant, fleet), timeout=120, interval=0.5, what="every server a healthy voter again")
    return result


def tolerant(fleet: Fleet) -> bool:
    """Every server a healthy voter, so the next kill leaves a quorum: a server just back is a non-voter
    until autopilot promotes it (~10 s), and killing the leader then stalls the cluster until it returns."""
    for server in fleet.server_nodes:
        try:
            health = server.consul("GET", "/v1/operator/autopilot/health", fleet.management_token, timeout=2)
        except (OSError, ConsulError):
            continue
        return bool(health["Healthy"]) and health["FailureTolerance"] >= 1 and \
            sum(s["Voter"] and s["Healthy"] for s in health["Servers"]) == len(fleet.server_nodes)
    return False


# --- 5. quorum loss -------------------------------------------------------------------------------

OUTAGE = 60  # seconds without quorum


def quorum_loss(fleet: Fleet, runs: int) -> dict[str, Any]:
    hosts = list(fleet.hosts.values())
    containers = {h.name: [run_http(fleet, h, f"elect-0-{i}", "elect") for i in range(2)] for h in hosts}
    results = [outage(fleet, containers, run) for run in range(1, runs + 1)]
    remove_all(fleet)

    def figure(key: str) -> dict[str, Any]:
        values = [r[key] for r in results if r[key] is not None]
        return {"median": round(statistics.median(values), 2) if values else None, "samples": values, "n": len(values),
                "not_converged": len(results) - len(values)}
    return {"outage_s": OUTAGE, "runs": results, "not_converged_within_s": TIMEOUT,
            "clients_after_leader_s": figure("clients_s"), "catalog_after_leader_s": figure("catalog_s")}


def outage(fleet: Fleet, containers: dict[str, list[Any]], run: int) -> dict[str, Any]:
    """Two servers down for OUTAGE seconds while every host churns; then back, the clock restarting
    when a leader answers again."""
    hosts = list(fleet.hosts.values())
    eventually(partial(tolerant, fleet), timeout=120, interval=0.5, what="every server a healthy voter")
    clients = {h.name: Convergence(fleet, h, catalog=False) for h in hosts}
    catalogs = {h.name: Convergence(fleet, h) for h in hosts}
    watches = [*clients.values(), *catalogs.values()]
    eventually(lambda: all(w.stable_since(1) for w in watches), timeout=60, interval=0.2, what="every host converged before the "
                                                                                               "outage")
    survivor = eventually(fleet.leader, timeout=30, what="a leader")
    gone = [server for server in fleet.server_nodes if server != survivor]
    logs = {h.name: h.log_size("registrator") for h in hosts}
    lost = time.time()
    for server in gone:
        fleet.stop(server, "consul", signal.SIGKILL)
    try:
        for step in range(4):  # churn on every host, spread over the outage
            time.sleep(max(lost + step * OUTAGE / 5 - time.time(), 0))
            parallel([partial(turn, fleet, h, containers[h.name], f"elect-{run}-{step}") for h in hosts])
        time.sleep(max(lost + OUTAGE - time.time(), 0))
    finally:
        leader_back: dict[str, float] = {}

        def watch_leader() -> None:
            while time.time() - lost < OUTAGE + TIMEOUT and not leader_back:
                if fleet.leader() is not None:
                    leader_back["at"] = time.time()
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_leader, daemon=True)
        watcher.start()
        parallel([partial(fleet.start, server, "consul", timeout=120) for server in gone])
    watcher.join()
    assert leader_back, f"no leader within {TIMEOUT} s of the servers starting again"
    back = leader_back["at"]
    converged = {}
    for name, group in (("clients", clients), ("catalog", catalogs)):
        try:
            eventually(lambda g=group: all(w.stable_since(3) for w in g.values()), timeout=TIMEOUT, interval=0.2,
                       what=f"every host's {name}")
            converged[name] = round(max(w.converged_at() for w in group.values()) - back, 2)
        except AssertionError:
            converged[name] = None
    for w in watches:
        w.stop()
    result: dict[str, Any] = {"leader_back_after_s": round(back - lost, 2), "clients_s": converged["clients"],
                              "catalog_s": converged["catalog"],
                              "per_host_clients_s": {n: round(w.converged_at() - back, 2) for n, w in clients.items()}}
    if converged["clients"] is None or converged["clients"] > 3:  # what the slowest agent said after the leader was back
        lagging = max(clients, key=lambda n: clients[n].converged_at())
        result["lagging"] = lagging
        result["lagging_log"] = fleet.hosts[lagging].registrator_log(logs[lagging])[-8000:]
        result["leader_back_at"] = datetime.fromtimestamp(back, UTC).strftime("%H:%M:%S.%f")[:-3]
    eventually(partial(tolerant, fleet), timeout=120, interval=0.5, what="every server a healthy voter again")
    return result


def turn(fleet: Fleet, host: Host, containers: list[Any], name: str) -> None:
    """One churn step on HOST: NAME starts and the oldest of CONTAINERS is removed."""
    containers.append(run_http(fleet, host, name, "elect"))
    containers.pop(0).remove(force=True)


# --- 4. idle writes -------------------------------------------------------------------------------

def interval_counts(data: dict[str, Any], client: bool) -> dict[str, float]:
    """Counts of one /v1/agent/metrics interval: writes reaching a server (raft applies, catalog
    register/deregister RPCs) or a client's HTTP PUTs."""
    counts: dict[str, float] = {}
    for kind in ("Counters", "Samples"):
        for metric in data.get(kind) or []:
            name, labels = metric["Name"], metric.get("Labels") or {}
            if client:
                if name == "consul.api.http" and labels.get("method") == "PUT":
                    key = f"PUT {labels.get('path', '?')}"
                elif name.startswith("consul.http.PUT"):
                    key = name
                else:
                    continue
            elif name in ("consul.raft.apply", "consul.catalog.register", "consul.catalog.deregister", "consul.raft.commitTime"):
                key = name
            else:
                continue
            counts[key] = counts.get(key, 0) + metric["Count"]
    return counts


def idle_writes(fleet: Fleet, window: int) -> dict[str, Any]:
    """Consul keeps 10 s intervals and shows the last complete one: poll every 5 s, keep each
    interval once, and count those inside a window aligned on the intervals."""
    nodes: list[Node] = [*fleet.server_nodes, *fleet.hosts.values()]
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    start = (int(time.time()) // 10 + 1) * 10
    end = start + window
    writes_after: dict[str, float] = {}
    resyncs_after: dict[str, float] = {}
    time.sleep(start - time.time())
    writes_before = {h.name: h.writes() for h in fleet.hosts.values()}
    resyncs_before = {h.name: h.metric("registrator_resyncs_total") for h in fleet.hosts.values()}
    while time.time() < end + 16:
        for node in nodes:
            try:
                data = node.consul("GET", "/v1/agent/metrics", fleet.management_token)
            except (OSError, ConsulError):
                continue
            seen[(node.name, data["Timestamp"])] = data
        if time.time() >= end and not writes_after:  # the agents' counters at the window's end
            writes_after = {h.name: h.writes() for h in fleet.hosts.values()}
            resyncs_after = {h.name: h.metric("registrator_resyncs_total") for h in fleet.hosts.values()}
        time.sleep(5)
    totals: dict[str, dict[str, float]] = {node.name: {} for node in nodes}
    intervals: dict[str, int] = {node.name: 0 for node in nodes}
    for (name, stamp), data in seen.items():
        at = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        if start <= at < end:
            intervals[name] += 1
            for key, count in interval_counts(data, client=name in fleet.hosts).items():
                totals[name][key] = totals[name].get(key, 0) + count
    servers = [n.name for n in fleet.server_nodes]
    return {
        "window_s": window, "intervals_counted": intervals,
        "our_agents_writes": {n: writes_after[n] - writes_before[n] for n in writes_before},
        "our_agents_resyncs": {n: resyncs_after[n] - resyncs_before[n] for n in resyncs_before},
        "servers": {n: totals[n] for n in servers}, "clients": {n: totals[n] for n in fleet.hosts},
        "catalog_writes_at_servers": sum(t.get("consul.catalog.register", 0) + t.get("consul.catalog.deregister", 0)
                                         for n, t in totals.items() if n in servers),
        "raft_applies": sum(totals[n].get("consul.raft.apply", 0) for n in servers),
        "client_puts": sum(sum(totals[n].values()) for n in fleet.hosts),
    }


def idle_summary(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-window figures summed: the table shows per-minute rates over all windows."""
    return {"window_s": windows[0]["window_s"], "windows": windows,
            **{key: sum(w[key] for w in windows) for key in ("catalog_writes_at_servers", "raft_applies", "client_puts")},
            "our_agents_writes": {n: sum(w["our_agents_writes"][n] for w in windows) for n in windows[0]["our_agents_writes"]}}


# --- output ---------------------------------------------------------------------------------------

def machine(fleet: Fleet) -> dict[str, Any]:
    consul = subprocess.run([consul_binary(), "version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "docker": fleet.hosts["a"].docker.version()["Version"], "consul": consul}


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    if s := results.get("start_to_dns"):
        f = s["start_to_c_dns_ms"]
        rows.append((f"start on a (Docker's event) → published port in c's DNS SRV over TCP, ms, p50 / p99 "
                     f"(poll every {s['poll_interval_ms_median']} ms)", f"{f['median']} / {f['p99']} (min {f['min']}, max "
                                                                        f"{f['max']}, n={f['n']})"))
        if f := s.get("start_to_catalog_ms"):
            rows.append(("start on a (Docker's event) → in the catalog, read through c's client from the leader, ms, p50 / p99",
                         f"{f['median']} / {f['p99']} (min {f['min']}, max {f['max']}, n={f['n']})"))
    if s := results.get("host_loss"):
        for name, g in s["gone_s"].items():
            rows.append((f"SIGKILL of host a → its instances gone from {name}'s DNS, s, median (all)",
                         f"{g['median']} ({', '.join(map(str, g['samples']))}; n={g['n']})"))
    if s := results.get("leader_failover"):
        c, e = s["converged_s"], s["election_s"]
        runs = c["n"] + s["not_converged"]
        within = s["not_converged_within_s"]
        failed = f"; {s['not_converged']} of {runs} runs not converged in {within} s" if s["not_converged"] else ""
        rows.append(("leader SIGKILLed during churn → every host's client and catalog = its docker ps, s, median (all)",
                     f"{c['median']} ({', '.join(map(str, c['samples']))}; n={c['n']}{failed})"))
        rows.append(("leader SIGKILLed → new leader elected, s, median (all)", f"{e['median']} "
                                                                               f"({', '.join(map(str, e['samples']))}; "
                                                                               f"n={e['n']})"))
    if s := results.get("quorum_loss"):
        for key, what in (("clients_after_leader_s", "every host's client"), ("catalog_after_leader_s", "every host's catalog "
                                                                                                        "entries")):
            f = s[key]
            failed = f"; {f['not_converged']} not converged in {s['not_converged_within_s']} s" if f["not_converged"] else ""
            rows.append((f"quorum lost {s['outage_s']} s during churn → {what} = its docker ps, s after a leader is back, "
                         "median (all)",
                         f"{f['median']} ({', '.join(map(str, f['samples']))}; n={f['n']}{failed})"))
    if s := results.get("idle"):
        windows = len(s.get("windows", [s]))
        per_minute = 60 / (s["window_s"] * windows)
        ours = sum(s["our_agents_writes"].values())
        rows.append((f"idle: writes by our agents per minute (3 hosts, {windows} windows of {s['window_s']} s)",
                     f"{ours * per_minute:g} ({', '.join(f'{k}={v:g}' for k, v in s['our_agents_writes'].items())})"))
        rows.append(("idle: catalog register/deregister at the servers per minute (Consul's anti-entropy)",
                     f"{s['catalog_writes_at_servers'] * per_minute:g}"))
        rows.append(("idle: HTTP PUTs at the hosts' clients per minute", f"{s['client_puts'] * per_minute:g}"))
        rows.append(("idle: raft applies per minute (Consul's own: coordinates, autopilot, …)",
                     f"{s['raft_applies'] * per_minute:g}"))
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    lines = [f"| {'figure'.ljust(width)} | {'value'.ljust(value)} |", f"|{'-' * (width + 2)}|{'-' * (value + 2)}|"]
    lines += [f"| {f.ljust(width)} | {v.ljust(value)} |" for f, v in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 starts, 2 host losses, 2 failovers, one 30 s idle window, one "
                                                             "quorum loss")
    parser.add_argument("--figures", default="1,4,2,3,5", help="which figures, in this order (default 1,4,2,3,5)")
    parser.add_argument("--failovers", type=int, default=None, help="leader failover runs (default 5, --quick 2)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    options = parser.parse_args()
    sizes = {"starts": 10, "losses": 2, "failovers": 2, "idle_s": 30, "idle_windows": 1, "outages": 1} if options.quick else \
        {"starts": 100, "losses": 5, "failovers": 5, "idle_s": 60, "idle_windows": 3, "outages": 3}
    if options.failovers:
        sizes["failovers"] = options.failovers
    began = time.time()
    fleet = Fleet()
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit(), "scale": sizes,
                               "quick": options.quick}
    try:
        fleet.up(timeout=180)
        results["fleet_up_s"] = round(fleet.timings.get("up", 0), 1)
        results["machine"] = machine(fleet)
        print(json.dumps(results["machine"]), flush=True)
        remove_all(fleet)
        for figure in options.figures.split(","):
            step = time.time()
            results.setdefault("figure_started", {})[figure] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if figure == "1":
                results["start_to_dns"] = start_to_dns(fleet, sizes["starts"])
            elif figure == "4":
                time.sleep(5)  # the last registration settled: nothing changes from here
                windows = [idle_writes(fleet, sizes["idle_s"]) for _ in range(sizes["idle_windows"])]
                results["idle"] = idle_summary(windows)
                remove_all(fleet)
            elif figure == "5":
                results["quorum_loss"] = quorum_loss(fleet, sizes["outages"])
            elif figure == "2":
                results["host_loss"] = host_loss(fleet, sizes["losses"])
            elif figure == "3":
                results["leader_failover"] = leader_failover(fleet, sizes["failovers"])
            print(f"figure {figure} done in {time.time() - step:.0f}s", flush=True)
    finally:
        results["seconds"] = round(time.time() - began, 1)
        fleet.down()
        out = Path(options.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"fleet-{results['started'][:10]}{'-quick' if options.quick else ''}.json"
        figures = {"start_to_dns", "idle", "host_loss", "leader_failover", "quorum_loss"}
        if path.exists() and not figures <= results.keys():  # a partial run: the figures it has replace the file's
            merged = json.loads(path.read_text())
            first_run = {k: merged.pop(k) for k in ("started", "seconds", "fleet_up_s") if k in merged}
            merged.setdefault("runs", [first_run | {"figures": sorted(figures & merged.keys())}])
            merged["runs"].append({k: results[k] for k in ("started", "seconds", "fleet_up_s")
                                   if k in results} | {"figures": sorted(figures & results.keys())})
            started = merged.get("figure_started", {}) | results.get("figure_started", {})
            results = merged | {k: v for k, v in results.items()
                                if k in figures | {"machine", "scale", "commit"}} | {"figure_started": started}
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path} ({round(time.time() - began, 1)} s, fleet down)")
    print(table(results))


if __name__ == "__main__":
    main()
