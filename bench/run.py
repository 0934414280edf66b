"""Benchmarks against real Docker, a real Consul agent and Consul DNS; prints a table and writes JSON.

    .venv/bin/python bench/run.py            # the full run (200 sequential, bursts of 100 and 200, 500 at startup)
    .venv/bin/python bench/run.py --quick    # a smaller run for a smoke test

Figures (min / median / p99 where there are several samples):
1. start → resolvable: Docker's `start` event time to the first SRV answer with the container's port;
   stop → gone: Docker's `kill` event time to the SRV answer without it.
2. burst: last `start` event of N concurrent starts to all N in the SRV answer.
3. startup reconcile: agent process launched to its last registration accepted by the Consul agent,
   with N containers running; its Docker API calls and Consul writes.
4. steady state: Consul writes per unchanged resync, agent CPU seconds per idle minute, RSS.
5. checks: Docker `health_status: unhealthy` event to the service leaving DNS.

Every container it starts carries the label `registrator-bench` and is removed at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dns import srv_ports  # noqa: E402
from tests.integration.rig import ConsulAgent, build_image, consul_binary, dig, free_port  # noqa: E402

LABEL = "registrator-bench"
HOSTNAME = "bench-host"
IP = "127.0.0.10"


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

    def wait(self, container_id: str, action: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while (container_id, action) not in self.times:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {action} event for {container_id[:12]}")
            time.sleep(0.001)
        return self.times[(container_id, action)]

    def close(self) -> None:
        self._process.kill()


class Agent:
    def __init__(self, consul: ConsulAgent, *flags: str) -> None:
        self.metrics_port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="bench-agent-", suffix=".log", delete=False)
        command = [str(Path(sys.executable).with_name("registrator")), "run", "--hostname", HOSTNAME, "--ip", IP,
                   "--listen", f"127.0.0.1:{self.metrics_port}", "--log-format", "json", *flags, consul.uri]
        self.started = time.time()
        self.process = subprocess.Popen(command, stderr=self.log)
        until(lambda: "ready:" in Path(self.log.name).read_text(), 30)

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def last_registration(self) -> float:
        """When the agent's last registration was accepted by the Consul agent (its log's clock)."""
        lines = [json.loads(text) for text in Path(self.log.name).read_text().splitlines() if text.startswith("{")]
        times = [datetime.fromisoformat(line["time"]).timestamp() for line in lines if ": registered " in line["message"]]
        return max(times)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


class Watch:
    """Polls DNS every millisecond in a thread from before the change is made, so the time it
    records is when the answer changed, not when the caller got round to asking."""

    def __init__(self, condition: Any, timeout: float = 10) -> None:
        self.seen: float | None = None
        self._thread = threading.Thread(target=self._poll, args=(condition, timeout), daemon=True)
        self._thread.start()

    def _poll(self, condition: Any, timeout: float) -> None:
        self.seen = until(lambda: _answered(condition), timeout)

    def wait(self) -> float:
        self._thread.join()
        if self.seen is None:
            raise TimeoutError("the DNS answer did not change")
        return self.seen


def _answered(condition: Any) -> bool:
    try:
        return bool(condition())
    except OSError:  # a lost UDP answer: ask again
        return False


def until(condition: Any, timeout: float, interval: float = 0.001) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(interval)
    return time.time()


def owned(consul: ConsulAgent) -> int:
    return sum(1 for s in consul.services().values() if (s.get("Meta") or {}).get("registrator-host") == HOSTNAME)


def run_container(image: str, name: str, *args: str) -> str:
    return docker("run", "-d", "-l", LABEL, "-e", f"SERVICE_NAME={name}", *args, image)


def parallel(function: Any, items: list[Any], workers: int = 8) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def remove_all() -> None:
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}").split()
    for chunk in range(0, len(ids), 50):
        subprocess.run(["docker", "rm", "-f", *ids[chunk:chunk + 50]], capture_output=True)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"min": ordered[0], "median": statistics.median(ordered), "p99": p99, "n": len(ordered)}


def sequential(consul: ConsulAgent, events: Events, image: str, count: int) -> dict[str, Any]:
    agent = Agent(consul)
    try:
        started, stopped, containers = [], [], []
        for i in range(count):
            name = f"seq-{i}"  # one name per container: any SRV answer for it is this container
            appeared = Watch(lambda n=name: srv_ports(f"{n}.service.consul", consul.dns_port))
            container_id = run_container(image, name, "--init", "-p", "0:80")  # --init: httpd then ends on SIGTERM
            started.append((appeared.wait() - events.wait(container_id, "start")) * 1000)
            containers.append((name, container_id))
        assert all(dig(consul.dns_port, f"{n}.service.consul") for n, _ in containers[-5:]), "dig confirms"
        for name, container_id in containers:
            gone = Watch(lambda n=name: not srv_ports(f"{n}.service.consul", consul.dns_port))
            subprocess.run(["docker", "stop", "-t", "5", container_id], stdout=subprocess.DEVNULL, check=True)
            stopped.append((gone.wait() - events.wait(container_id, "kill")) * 1000)
        return {"start_to_srv_ms": summary(started), "stop_to_gone_ms": summary(stopped)}
    finally:
        agent.stop()
        remove_all()


def burst(consul: ConsulAgent, events: Events, image: str, sizes: list[int]) -> dict[str, Any]:
    agent = Agent(consul)
    results = {}
    try:
        for size in sizes:
            name = f"burst-{size}"
            ids = parallel(lambda _, n=name: run_container(image, n, "-p", "0:80"), list(range(size)), workers=16)
            last_start = max(events.wait(i, "start") for i in ids)
            seen = until(lambda n=name, s=size: len(srv_ports(f"{n}.service.consul", consul.dns_port, tcp=True)) >= s, 60)
            results[f"burst_{size}_ms"] = round((seen - last_start) * 1000, 1)
            remove_all()
            until(lambda: owned(consul) == 0, 60, 0.05)
    finally:
        agent.stop()
        remove_all()
    return results


def forget_owned(consul: ConsulAgent) -> None:
    for service_id in [sid for sid, s in consul.services().items() if (s.get("Meta") or {}).get("registrator-host") == HOSTNAME]:
        consul.put(f"/v1/agent/service/deregister/{service_id}")


def consul_floor(consul: ConsulAgent, count: int, workers: int = 4) -> float:
    """Seconds for the Consul agent to accept `count` registrations like the agent's, sent `workers`
    at a time by a bare http.client: what the same startup costs Consul alone on this machine."""
    local = threading.local()

    def call(method: str, path: str, body: bytes = b"") -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", consul.http_port, timeout=10)
        local.conn.request(method, path, body)
        response = local.conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    def register(i: int) -> None:
        service = {"ID": f"floor-{i}", "Name": "floor", "Address": "10.0.0.1", "Port": 80, "Tags": [], "Checks": [],
                   "Meta": {"registrator-host": "floor", "registrator-container": f"{i:064x}", "registrator-hash": "0" * 16}}
        call("PUT", "/v1/agent/service/register?replace-existing-checks=true", json.dumps(service).encode())

    started = time.perf_counter()
    parallel(register, list(range(count)), workers)
    seconds = time.perf_counter() - started
    parallel(lambda i: call("PUT", f"/v1/agent/service/deregister/floor-{i}"), list(range(count)), workers)
    return round(seconds, 2)


def startup(consul: ConsulAgent, image: str, sizes: list[int], idle_seconds: float) -> dict[str, Any]:
    """-internal: no published ports, so hundreds of containers need no userland proxies."""
    results: dict[str, Any] = {}
    running = 0
    for size in sizes:
        parallel(lambda _: run_container(image, "startup", "--network", "bench"), list(range(size - running)), workers=8)
        running = size
        forget_owned(consul)
        writes = consul.writes()
        agent = Agent(consul, "-internal")
        try:
            until(lambda s=size: owned(consul) >= s, 120, 0.25)  # seldom: listing 500 services costs Consul CPU
            results[f"startup_{size}"] = {
                "seconds": round(agent.last_registration() - agent.started, 2),
                "docker_calls": agent.metric("registrator_docker_requests_total"),
                "consul_writes": consul.writes() - writes,
            }
            if size == sizes[-1]:
                results["steady"] = steady(consul, agent, idle_seconds)
        finally:
            agent.stop()
    forget_owned(consul)  # the same starting point as the agent's startup had
    results[f"consul_floor_{sizes[-1]}"] = consul_floor(consul, sizes[-1])
    remove_all()
    return results


def steady(consul: ConsulAgent, agent: Agent, idle_seconds: float) -> dict[str, Any]:
    """With the default settings (a resync every 60 s ± 10 %), nothing changing."""
    resyncs, writes, cpu = agent.metric("registrator_resyncs_total"), consul.writes(), agent.cpu_seconds()
    time.sleep(idle_seconds)
    done_resyncs = agent.metric("registrator_resyncs_total") - resyncs
    return {
        "resyncs": done_resyncs,
        "writes": consul.writes() - writes,
        "writes_per_resync": (consul.writes() - writes) / max(done_resyncs, 1),
        "cpu_seconds_per_idle_minute": round((agent.cpu_seconds() - cpu) * 60 / idle_seconds, 3),
        "rss_mb": round(agent.rss_mb(), 1),
    }


def checks(consul: ConsulAgent, events: Events, image: str, count: int) -> dict[str, Any]:
    agent = Agent(consul)
    samples = []
    try:
        for i in range(count):
            name = f"health-{i}"
            container_id = run_container(image, name, "-p", "0:80")
            until(lambda n=name: srv_ports(f"{n}.service.consul", consul.dns_port), 30, 0.01)
            docker("exec", container_id, "rm", "/www/health")
            gone = until(lambda n=name: not srv_ports(f"{n}.service.consul", consul.dns_port), 30)
            samples.append((gone - events.wait(container_id, "health_status: unhealthy", timeout=30)) * 1000)
    finally:
        agent.stop()
        remove_all()
    return {"unhealthy_to_gone_ms": summary(samples)}


def machine() -> dict[str, Any]:
    consul_version = subprocess.run([consul_binary(), "version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "cpus": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(), "python": platform.python_version(), "docker": docker("version", "--format", "{{.Server.Version}}"),
        "consul": consul_version,
    }


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "min", "median", "p99", "target")]
    seq = results["sequential"]
    for key, label, target in (("start_to_srv_ms", "start → SRV (ms)", "p50 ≤ 15, p99 ≤ 60"), ("stop_to_gone_ms", "stop → gone (ms)", "")):
        s = seq[key]
        rows.append((f"{label}, n={s['n']}", f"{s['min']:.1f}", f"{s['median']:.1f}", f"{s['p99']:.1f}", target))
    for key, value in results["burst"].items():
        rows.append((f"{key.replace('_ms', '')}: last start → all resolvable (ms)", "", f"{value:.0f}", "", "≤ 500 for 200"))
    for key, value in results["startup"].items():
        if key.startswith("consul_floor_"):
            rows.append((f"{key}: seconds for Consul alone to take as many registrations, 4 at a time", "", f"{value}", "", ""))
        if key.startswith("startup_"):
            rows.append((f"{key}: seconds / Docker calls / Consul writes", "",
                         f"{value['seconds']} / {value['docker_calls']:.0f} / {value['consul_writes']}", "", "≤ 2 s for 500"))
    steady_state = results["startup"]["steady"]
    rows.append((f"Consul writes per unchanged resync ({steady_state['resyncs']:.0f} resyncs)", "",
                 f"{steady_state['writes_per_resync']:.1f}", "", "0"))
    rows.append(("agent CPU seconds per idle minute (500 containers)", "", f"{steady_state['cpu_seconds_per_idle_minute']}", "", "< 0.6 (1 %)"))
    rows.append(("agent RSS at 500 containers (MB)", "", f"{steady_state['rss_mb']}", "", "≤ 60"))
    s = results["checks"]["unhealthy_to_gone_ms"]
    rows.append((f"Docker unhealthy → out of DNS (ms), n={s['n']}", f"{s['min']:.0f}", f"{s['median']:.0f}", f"{s['p99']:.0f}", ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run: 20 sequential, bursts of 20 and 50, 50 and 100 at startup")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the JSON results")
    options = parser.parse_args()
    sizes = {"sequential": 20, "burst": [20, 50], "startup": [50, 100], "idle": 10, "checks": 3} if options.quick else \
        {"sequential": 200, "burst": [100, 200], "startup": [100, 300, 500], "idle": 75, "checks": 10}
    import docker as docker_sdk

    client = docker_sdk.from_env()
    image, health_image = build_image(client, "http"), build_image(client, "healthcheck")
    workdir = Path(tempfile.mkdtemp(prefix="bench-consul-"))
    consul = ConsulAgent(binary=consul_binary(), workdir=workdir)
    consul.start()
    events = Events()
    subprocess.run(["docker", "network", "create", "bench"], capture_output=True)
    results: dict[str, Any] = {"machine": machine(), "scale": sizes, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        results["sequential"] = sequential(consul, events, image, sizes["sequential"])
        results["burst"] = burst(consul, events, image, sizes["burst"])
        results["startup"] = startup(consul, image, sizes["startup"], sizes["idle"])
        results["checks"] = checks(consul, events, health_image, sizes["checks"])
    finally:
        remove_all()
        subprocess.run(["docker", "network", "rm", "bench"], capture_output=True)
        events.close()
        consul.stop()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results["machine"]))
    print(table(results))


if __name__ == "__main__":
    main()
