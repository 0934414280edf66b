"""Benchmarks against real Docker, a real Consul agent and Consul DNS; prints a table and writes JSON.

    .venv/bin/python bench/run.py            # the full run
    .venv/bin/python bench/run.py --quick    # a smaller run for a smoke test
    .venv/bin/python bench/run.py --agent-cmd '/usr/local/bin/registrator -ip {ip} -resync 2 {consul_uri}'

Every figure is measured from outside, the same way for any registrator-compatible agent: clocks
start at Docker's own event time (or the agent's launch) and stop at the DNS answer a consumer would
get, polled every millisecond from a thread started before the change. `--agent-cmd` runs a second
agent command on the same workload and prints its column beside this agent's; `{ip}`, `{consul}`
(HOST:PORT) and `{consul_uri}` (consul://HOST:PORT) are filled in. Nothing of another project is
built or committed here: bring the binary you run.

Figures (min / median / p99 where there are several samples):
1. start → SRV: Docker's `start` event to the first SRV answer with the container's port;
   stop → gone: Docker's first `kill` event to the SRV answer without it.
2. burst: N concurrent `docker run`s (up to 100 at a time), with a resync every 2 s: the last
   `start` event to all N in the SRV answer.
3. mass stop: N containers stopped at once (one `docker stop` of all): each one's first `kill` event
   to its port leaving DNS.
4. startup: the agent launched with N containers running (published ports, the agent's defaults,
   this agent from compiled bytecode as an install leaves it) to all N in the SRV answer; Consul's
   own floor: as many registrations from a bare client to all N in the SRV answer. Both poll the
   whole answer every 10 ms.
5. idle: Consul writes and agent CPU over ten resync periods (the tenth resync of this agent is a
   full one), and RSS, with the largest startup workload running.
6. checks: Docker `health_status: unhealthy` to the service leaving DNS.

Every container it starts carries the label `registrator-bench` and is removed at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dns import srv_ports  # noqa: E402
from bench.provenance import commit  # noqa: E402
from tests.integration.rig import ConsulAgent, build_image, consul_binary, dig, free_port  # noqa: E402

LABEL = "registrator-bench"
HOSTNAME = "bench-host"
IP = "127.0.0.10"
RESYNC = 2  # seconds between resyncs, for every agent (its -resync flag)
THIS_AGENT = "this agent"
# Startup figures poll an answer of hundreds of records over TCP: every 10 ms, not every 1 ms, so
# the poller does not cost Consul a third of a core (its CPU during a 500-container startup fell
# from 2.1 to 1.4 s). The floor is polled the same way.
WHOLE_ANSWER_POLL = 0.01
# This agent runs from its compiled bytecode, as `pip install` leaves it: machines like CI set
# PYTHONDONTWRITEBYTECODE, and compiling the package at every launch cost 60 ms of each startup.
BYTECODE = Path(tempfile.mkdtemp(prefix="bench-pycache-"))


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


class Events:
    """`docker events` in a thread: (container ID, action) → time of its first such event, in seconds
    (`docker stop` sends two kills when the stop signal is ignored; the first is when the stop began)."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], float] = {}
        self._process = subprocess.Popen(["docker", "events", "--format", "{{json .}}", "--filter", "type=container"],
                                         stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            event = json.loads(line)
            action = str(event.get("Action") or event.get("status"))  # e.g. "start", "health_status: unhealthy"
            self.times.setdefault((event["Actor"]["ID"], action), event["timeNano"] / 1e9)

    def wait(self, container_id: str, action: str, timeout: float = 30) -> float:
        until(lambda: (container_id, action) in self.times, timeout)
        return self.times[(container_id, action)]

    def close(self) -> None:
        self._process.kill()


class Agent:
    """One agent process: this agent (with its metrics endpoint) or `--agent-cmd`'s."""

    def __init__(self, consul: ConsulAgent, template: str | None) -> None:
        self.metrics_port = free_port()
        self.ours = template is None
        self.log = tempfile.NamedTemporaryFile(prefix="bench-agent-", suffix=".log", delete=False)
        env = dict(os.environ)
        if template is None:
            command = [str(Path(sys.executable).with_name("registrator")), "run", "--hostname", HOSTNAME, "-ip", IP,
                       "-resync", str(RESYNC), "--listen", f"127.0.0.1:{self.metrics_port}", consul.uri]
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(BYTECODE)
        else:
            command = shlex.split(template.format(ip=IP, consul=consul.http_addr, consul_uri=consul.uri))
        self.started = time.time()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=env)

    def wait_ready(self, consul: ConsulAgent, image: str) -> None:
        """Any agent: ready once a canary container is resolvable, and again once it is gone."""
        name = f"canary-{uuid.uuid4().hex[:8]}"
        container_id = run_container(image, name, "-p", "0:80")
        until(lambda: bool(srv_ports(f"{name}.service.consul", consul.dns_port)), 60, 0.01)
        docker("rm", "-f", container_id)
        until(lambda: not srv_ports(f"{name}.service.consul", consul.dns_port), 60, 0.01)

    def metric(self, name: str) -> float | None:
        if not self.ours:
            return None
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Watch:
    """Polls a condition every millisecond (or `interval`) in a thread from before the change is
    made, so the time it records is when the answer changed, not when the caller got round to asking."""

    def __init__(self, condition: Callable[[], bool], timeout: float = 30, interval: float = 0.001) -> None:
        self.seen: float | None = None
        self._thread = threading.Thread(target=self._poll, args=(condition, timeout, interval), daemon=True)
        self._thread.start()

    def _poll(self, condition: Callable[[], bool], timeout: float, interval: float) -> None:
        self.seen = until(lambda: _answered(condition), timeout, interval)

    def wait(self) -> float:
        self._thread.join()
        if self.seen is None:
            raise TimeoutError("the DNS answer did not change")
        return self.seen


class PortsLeaving:
    """Polls one service's SRV answer from before a mass stop and records when each port left it."""

    def __init__(self, name: str, dns_port: int, ports: set[int], timeout: float = 120) -> None:
        self.left: dict[int, float] = {}
        self._thread = threading.Thread(target=self._poll, args=(name, dns_port, ports, timeout), daemon=True)
        self._thread.start()

    def _poll(self, name: str, dns_port: int, ports: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.left) < len(ports) and time.monotonic() < deadline:
            try:
                present = set(srv_ports(f"{name}.service.consul", dns_port, tcp=True))
            except OSError:
                continue
            now = time.time()
            for port in ports - present - set(self.left):
                self.left[port] = now
            time.sleep(0.001)

    def wait(self) -> dict[int, float]:
        self._thread.join()
        return self.left


def _answered(condition: Callable[[], bool]) -> bool:
    try:
        return bool(condition())
    except OSError:  # a lost UDP answer or a refused TCP one: ask again
        return False


def until(condition: Callable[[], bool], timeout: float, interval: float = 0.001) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)
    return time.time()


def run_container(image: str, name: str, *args: str) -> str:
    return docker("run", "-d", "-l", LABEL, "-e", f"SERVICE_NAME={name}", *args, image)


def parallel(function: Callable[[Any], Any], items: list[Any], workers: int = 8) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def remove_all() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}").split()
    parallel(lambda chunk: subprocess.run(["docker", "rm", "-f", *chunk], capture_output=True),
             [ids[i:i + 25] for i in range(0, len(ids), 25)], workers=4)


def resolvable(consul: ConsulAgent, name: str) -> int:
    return len(srv_ports(f"{name}.service.consul", consul.dns_port, tcp=True))


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"min": round(ordered[0], 1), "median": round(statistics.median(ordered), 1), "p99": round(p99, 1), "n": len(ordered)}


def sequential(consul: ConsulAgent, events: Events, image: str, count: int) -> dict[str, Any]:
    started, stopped, containers = [], [], []
    for i in range(count):
        name = f"seq-{i}"  # one name per container: any SRV answer for it is this container
        appeared = Watch(lambda n=name: bool(srv_ports(f"{n}.service.consul", consul.dns_port)))
        container_id = run_container(image, name, "--init", "-p", "0:80")  # --init: httpd then ends on SIGTERM
        started.append((appeared.wait() - events.wait(container_id, "start")) * 1000)
        containers.append((name, container_id))
    assert all(dig(consul.dns_port, f"{n}.service.consul") for n, _ in containers[-5:]), "dig confirms"
    for name, container_id in containers:
        gone = Watch(lambda n=name: not srv_ports(f"{n}.service.consul", consul.dns_port))
        subprocess.run(["docker", "stop", "-t", "5", container_id], stdout=subprocess.DEVNULL, check=True)
        stopped.append((gone.wait() - events.wait(container_id, "kill")) * 1000)
    remove_all()
    return {"start_to_srv_ms": summary(started), "stop_to_gone_ms": summary(stopped)}


def burst(consul: ConsulAgent, events: Events, image: str, sizes: list[int]) -> dict[str, Any]:
    results = {}
    for size in sizes:
        name = f"burst-{size}"
        everything = Watch(lambda n=name, s=size: resolvable(consul, n) >= s, timeout=300)
        ids = parallel(lambda _, n=name: run_container(image, n, "-p", "0:80"), list(range(size)), workers=min(size, 100))
        last_start = max(events.wait(i, "start") for i in ids)
        results[f"burst_{size}_ms"] = round((everything.wait() - last_start) * 1000, 1)
        remove_all()
        until(lambda n=name: resolvable(consul, n) == 0, 120, 0.05)
    return results


def mass_stop(consul: ConsulAgent, events: Events, image: str, count: int) -> dict[str, Any]:
    name = "mass-stop"
    ids = parallel(lambda _: run_container(image, name, "--init", "-p", "0:80"), list(range(count)), workers=16)
    until(lambda: resolvable(consul, name) >= count, 120, 0.05)
    port_of = {int(docker("port", cid, "80/tcp").splitlines()[0].rsplit(":", 1)[1]): cid for cid in ids}
    leaving = PortsLeaving(name, consul.dns_port, set(port_of))
    subprocess.run(["docker", "stop", "-t", "5", *ids], stdout=subprocess.DEVNULL)  # the CLI stops them all at once
    left = leaving.wait()
    samples = [(left[port] - events.wait(cid, "kill")) * 1000 for port, cid in port_of.items() if port in left]
    remove_all()
    return {"stop_to_gone_ms": summary(samples), "left_dns": len(left), "stopped": count}


def startup(consul: ConsulAgent, template: str | None, image: str, sizes: list[int], idle_periods: int) -> dict[str, Any]:
    """Published ports and the agent's defaults: the workload a registrator host has."""
    results: dict[str, Any] = {}
    running = 0
    for size in sizes:
        parallel(lambda _: run_container(image, "startup", "-p", "0:80"), list(range(size - running)), workers=16)
        running = size
        writes = consul.writes()
        everything = Watch(lambda s=size: resolvable(consul, "startup") >= s, timeout=300, interval=WHOLE_ANSWER_POLL)
        agent = Agent(consul, template)
        try:
            seen = everything.wait()
            results[f"startup_{size}"] = {
                "seconds": round(seen - agent.started, 2),
                "docker_calls": agent.metric("registrator_docker_requests_total"),
                "consul_writes": consul.writes() - writes,
            }
            if size == sizes[-1]:
                results["idle"] = idle(consul, agent, idle_periods)
        finally:
            agent.stop()
        forget(consul)  # every agent starts from an empty Consul agent
        results[f"consul_floor_{size}"] = consul_floor(consul, size)
    remove_all()
    return results


def idle(consul: ConsulAgent, agent: Agent, periods: int) -> dict[str, Any]:
    """Nothing changing, over `periods` resync periods (the window holds this agent's full resync)."""
    resyncs, writes, cpu = agent.metric("registrator_resyncs_total"), consul.writes(), agent.cpu_seconds()
    time.sleep(periods * RESYNC)
    done = agent.metric("registrator_resyncs_total")
    return {
        "window_seconds": periods * RESYNC,
        "resyncs": None if done is None or resyncs is None else done - resyncs,
        "consul_writes": consul.writes() - writes,
        "cpu_seconds": round(agent.cpu_seconds() - cpu, 3),
        "rss_mb": round(agent.rss_mb(), 1),
    }


def forget(consul: ConsulAgent) -> None:
    for service_id in consul.services():
        consul.put(f"/v1/agent/service/deregister/{urllib.parse.quote(service_id, safe='')}")


def consul_floor(consul: ConsulAgent, count: int, workers: int = 4) -> float:
    """What the same startup costs Consul alone on this machine: `count` registrations like the
    agent's, sent `workers` at a time by a bare http.client, until all answer in DNS (the startup
    figure's own end, polled the same way)."""
    local = threading.local()

    def call(method: str, path: str, body: bytes = b"") -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", consul.http_port, timeout=10)
        local.conn.request(method, path, body)
        response = local.conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    def register(i: int) -> None:
        # Each its own port, as published ports are: DNS answers identical SRV records once.
        service = {"ID": f"floor-{i}", "Name": "floor", "Address": IP, "Port": 20000 + i, "Tags": [], "Checks": [],
                   "Meta": {"registrator-host": "floor", "registrator-container": f"{i:064x}", "registrator-hash": "0" * 16}}
        call("PUT", "/v1/agent/service/register?replace-existing-checks=true", json.dumps(service).encode())

    everything = Watch(lambda: resolvable(consul, "floor") >= count, timeout=300, interval=WHOLE_ANSWER_POLL)
    started = time.time()
    parallel(register, list(range(count)), workers)
    seconds = everything.wait() - started
    parallel(lambda i: call("PUT", f"/v1/agent/service/deregister/floor-{i}"), list(range(count)), workers)
    return round(seconds, 2)


def checks(consul: ConsulAgent, events: Events, image: str, count: int) -> dict[str, Any]:
    samples = []
    for i in range(count):
        name = f"health-{i}"
        container_id = run_container(image, name, "-p", "0:80")
        until(lambda n=name: bool(srv_ports(f"{n}.service.consul", consul.dns_port)), 60, 0.01)
        gone = Watch(lambda n=name: not srv_ports(f"{n}.service.consul", consul.dns_port), timeout=60)
        docker("exec", container_id, "rm", "/www/health")
        samples.append((gone.wait() - events.wait(container_id, "health_status: unhealthy", timeout=60)) * 1000)
    remove_all()
    return {"unhealthy_to_gone_ms": summary(samples)}


def measure(consul: ConsulAgent, events: Events, images: dict[str, str], template: str | None, sizes: dict[str, Any]) -> dict[str,
                                                                                                                              Any]:
    """Every figure for one agent command, from an empty Consul agent and no bench containers."""
    results: dict[str, Any] = {"command": template or "registrator run (this repository)"}
    agent = Agent(consul, template)
    try:
        agent.wait_ready(consul, images["http"])
        results["sequential"] = sequential(consul, events, images["http"], sizes["sequential"])
        results["burst"] = burst(consul, events, images["http"], sizes["burst"])
        results["mass_stop"] = mass_stop(consul, events, images["http"], sizes["mass_stop"])
        results["checks"] = checks(consul, events, images["healthcheck"], sizes["checks"])
    finally:
        agent.stop()
        remove_all()
        forget(consul)
    results["startup"] = startup(consul, template, images["http"], sizes["startup"], sizes["idle_periods"])
    return results


def machine() -> dict[str, Any]:
    consul_version = subprocess.run([consul_binary(), "version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "docker": docker("version", "--format", "{{.Server.Version}}"),
        "consul": consul_version,
    }


def cells(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of one agent's results."""
    rows = []
    for key, label in (("start_to_srv_ms", "start → SRV (ms)"), ("stop_to_gone_ms", "stop → gone from the first kill (ms)")):
        s = result["sequential"][key]
        rows.append((f"{label}, one at a time, p50 / p99", f"{s['median']} / {s['p99']} (n={s['n']})"))
    for key, value in result["burst"].items():
        rows.append((f"{key.removesuffix('_ms').replace('_', ' of ')} concurrent starts: last start → all resolvable "
                     "(ms)", f"{value:.0f}"))
    stop = result["mass_stop"]["stop_to_gone_ms"]
    rows.append((f"mass stop of {result['mass_stop']['stopped']}: first kill → gone (ms), p50 / p99", f"{stop['median']} / "
                                                                                                      f"{stop['p99']}"))
    for key, value in result["startup"].items():
        if key.startswith("startup_"):
            calls = "" if value["docker_calls"] is None else f", {value['docker_calls']:.0f} Docker calls"
            rows.append((f"startup with {key.removeprefix('startup_')} running: launch → all resolvable (s)",
                         f"{value['seconds']} ({value['consul_writes']} Consul writes{calls})"))
        if key.startswith("consul_floor_"):
            rows.append((f"Consul alone: {key.removeprefix('consul_floor_')} registrations, 4 at a time, until all resolvable "
                         "(s)", f"{value}"))
    idle_state = result["startup"]["idle"]
    resyncs = "" if idle_state["resyncs"] is None else f", {idle_state['resyncs']:.0f} resyncs"
    rows.append((f"idle {idle_state['window_seconds']} s (resync {RESYNC} s): Consul writes / agent CPU s",
                 f"{idle_state['consul_writes']} / {idle_state['cpu_seconds']}{resyncs}"))
    rows.append(("agent RSS with the largest startup workload (MB)", f"{idle_state['rss_mb']}"))
    s = result["checks"]["unhealthy_to_gone_ms"]
    rows.append((f"Docker unhealthy → out of DNS (ms), p50 / p99, n={s['n']}", f"{s['median']} / {s['p99']}"))
    return rows


def table(results: dict[str, dict[str, Any]]) -> str:
    columns = {name: dict(cells(result)) for name, result in results.items()}
    figures = list(dict.fromkeys(figure for column in columns.values() for figure in column))
    rows = [("figure", *columns)] + [(figure, *(column.get(figure, "") for column in columns.values())) for figure in figures]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run: 20 one at a time, bursts of 20 and 50, 50 at startup")
    parser.add_argument("--agent-cmd", default=None, metavar="COMMAND",
                        help="a second registrator-compatible agent to measure on the same workload ({ip}, {consul}, "
                             "{consul_uri})")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON results")
    options = parser.parse_args()
    sizes = {"sequential": 20, "burst": [20, 50], "mass_stop": 20, "startup": [20, 50], "idle_periods": 10,
             "checks": 3} if options.quick \
        else {"sequential": 100, "burst": [100, 500], "mass_stop": 100, "startup": [100, 500], "idle_periods": 10, "checks": 10}
    import docker as docker_sdk

    client = docker_sdk.from_env()
    images = {name: build_image(client, name) for name in ("http", "healthcheck")}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "registrator"), str(ROOT / "cli.py")], check=True,
                   env={**os.environ, "PYTHONPYCACHEPREFIX": str(BYTECODE)})
    workdir = Path(tempfile.mkdtemp(prefix="bench-consul-"))
    consul = ConsulAgent(binary=consul_binary(), workdir=workdir)
    consul.start()
    events = Events()
    began = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "commit": commit(), "scale": sizes,
                               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "agents": {}}
    try:
        results["agents"][THIS_AGENT] = measure(consul, events, images, None, sizes)
        if options.agent_cmd:
            results["agents"][shlex.split(options.agent_cmd)[0].rsplit("/", 1)[-1]] = measure(consul, events, images,
                                                                                              options.agent_cmd, sizes)
    finally:
        remove_all()
        events.close()
        consul.stop()
    results["elapsed_seconds"] = round(time.monotonic() - began)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    document = json.dumps(results, indent=2)
    (out / "latest.json").write_text(document)
    if not options.quick:
        (out / f"{results['started'][:10]}.json").write_text(document)
    print(json.dumps(results["machine"]))
    print(table(results["agents"]))


if __name__ == "__main__":
    main()
