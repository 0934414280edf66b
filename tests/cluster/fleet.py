"""A fleet of hosts on one machine: network namespaces on one bridge, each host with its own dockerd,
Consul client agent and `registrator run`, plus three Consul servers (no dev mode: persistent data,
bootstrap_expect 3, gossip encryption, default-deny ACLs with per-agent tokens).

Every address is in 198.18.0.0/15 and no traffic leaves the namespaces made here. Everything lives
under one root folder; `down()` finds what to stop there and in the namespaces (never by process
name), so it also cleans up after a crashed `up()` or a run in another process.

    python -m tests.cluster.fleet up|down|status      (scripts/cluster.sh wraps this)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, TypeVar

import docker

from tests.integration.rig import ROOT, build_image, consul_binary, eventually

T = TypeVar("T")
BRIDGE = "rfleet-br"
NET = "198.18.0"  # the fleet's /24 on the bridge: servers .11…, hosts .21…
RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", "registrator-fleet", "-j", "ACCEPT"]
DEFAULT_ROOT = Path("/tmp/registrator-fleet")
REGISTRATOR = ROOT / ".venv" / "bin" / "registrator"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: Consul's API is reached from the root namespace through the socket
    each agent also serves, so the root namespace needs no address on the fleet's bridge."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class ConsulError(Exception):
    """A non-2xx answer from a Consul agent."""


@dataclass
class Node:
    """A network namespace on the fleet bridge: a Consul server or a host."""

    name: str
    ip: str
    dir: Path

    @property
    def netns(self) -> Path:
        return self.dir / "netns"

    @property
    def consul_socket(self) -> Path:
        return self.dir / "consul.sock"

    def command(self, *argv: str) -> list[str]:
        """ARGV run inside this node's network namespace (nsenter keeps /sys, unlike `ip netns exec`)."""
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    def exec(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*argv), capture_output=True, text=True, timeout=timeout)

    def consul(self, method: str, path: str, token: str, body: object = None, timeout: float = 5) -> Any:
        """One call to this node's Consul agent; a timeout raises (callers polling treat it as "not yet")."""
        connection = UnixHTTPConnection(self.consul_socket, timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=payload, headers={"X-Consul-Token": token})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status // 100 != 2:
            raise ConsulError(f"{method} {path}: {response.status} {data.decode(errors='replace').strip()}")
        return json.loads(data) if data else None


@dataclass
class Host(Node):
    """A host: its own dockerd (own UTS name, so `docker info` names the host), Consul client and agent."""

    index: int = 0
    agent_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    registrator_token: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def docker_socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_socket}"

    @cached_property
    def docker(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, timeout=60)

    def close(self) -> None:
        """Drop the cached Docker client (its engine is going away)."""
        client = self.__dict__.pop("docker", None)
        if client is not None:
            client.close()

    def dig(self, name: str, rtype: str = "SRV") -> list[str]:
        """Answer and additional records from this host's Consul DNS, over TCP (Consul drops records
        that do not fit a UDP answer without setting TC): `name ttl class type data` lines."""
        result = self.exec("dig", "@127.0.0.1", "-p", "8600", "+tcp", "+noall", "+answer", "+additional",
                           "+time=2", "+tries=1", name, rtype, timeout=10)
        return [line for line in result.stdout.splitlines() if line and not line.startswith(";")]

    def endpoints(self, name: str) -> set[tuple[str, int]]:
        """(address, port) of every SRV record for NAME, each target resolved by the additional A records."""
        lines = [line.split() for line in self.dig(name, "SRV")]
        addresses = {fields[0]: fields[4] for fields in lines if fields[3] == "A"}
        return {(addresses.get(fields[7], fields[7]), int(fields[6])) for fields in lines if fields[3] == "SRV"}

    def metric(self, name: str) -> float:
        """One unlabelled series from the agent's /metrics (served inside the namespace on 127.0.0.1:9666);
        an agent that does not answer raises rather than reading as zero."""
        result = self.exec("curl", "-sf", "--max-time", "5", "http://127.0.0.1:9666/metrics", timeout=10)
        if result.returncode != 0:
            raise OSError(f"/metrics of {self.name}: curl exited with {result.returncode}")
        values = [line.split()[1] for line in result.stdout.splitlines() if line.startswith(f"{name} ")]
        return float(values[0]) if values else 0.0

    def writes(self) -> float:
        """The Consul writes our agent on this host has made: registrations and deregistrations."""
        return self.metric("registrator_registrations_total") + self.metric("registrator_deregistrations_total")

    def registrator_log(self, since: int = 0) -> str:
        """The agent's log from byte SINCE (its log is appended to across restarts)."""
        path = self.dir / "registrator.log"
        return path.read_bytes()[since:].decode(errors="replace") if path.exists() else ""

    def log_size(self, name: str) -> int:
        path = self.dir / f"{name}.log"
        return path.stat().st_size if path.exists() else 0


@dataclass
class Fleet:
    """The rig. `up()` reuses a running fleet under `root` or rebuilds it; `down()` leaves nothing behind."""

    root: Path = DEFAULT_ROOT
    host_names: tuple[str, ...] = ("a", "b", "c")
    servers: int = 3
    images: tuple[str, ...] = ("http", "nsq")
    registrator_args: tuple[str, ...] = ("--ip-from", "route", "--resync", "10", "--listen", "127.0.0.1:9666")
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server_nodes = [Node(f"server{i + 1}", f"{NET}.{11 + i}", self.root / f"server{i + 1}") for i in range(self.servers)]
        self.hosts = {name: Host(name, f"{NET}.{21 + i}", self.root / name, index=i) for i, name in enumerate(self.host_names)}
        secrets = self._load_secrets()
        self.management_token: str = secrets.get("management", str(uuid.uuid4()))
        self.dns_token: str = secrets.get("dns", str(uuid.uuid4()))
        self.gossip_key: str = secrets.get("gossip", "")
        for host in self.hosts.values():
            host.agent_token = secrets.get(f"agent-{host.name}", host.agent_token)
            host.registrator_token = secrets.get(f"registrator-{host.name}", host.registrator_token)
        self.image_tags: dict[str, str] = {}
        self.processes: dict[tuple[str, str], subprocess.Popen[bytes]] = {}

    @property
    def nodes(self) -> list[Node]:
        return [*self.server_nodes, *self.hosts.values()]

    # --- bring-up ---------------------------------------------------------------------------------

    def up(self, timeout: float = 90) -> Fleet:
        """Bring the whole fleet up, or keep the one already running; a failure tears down what started
        and raises with the log tails of what did not come up."""
        started = time.monotonic()
        if self.running():
            parallel([partial(self._images, h) for h in self.hosts.values()])
            self.timings["up"] = time.monotonic() - started
            return self
        self.down()
        try:
            self._up(time.monotonic() + timeout)
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - started
        return self

    def _up(self, deadline: float) -> None:
        for path in (self.root / "bin", *(node.dir for node in self.nodes)):
            path.mkdir(parents=True, exist_ok=True)
        consul = consul_binary()
        if not self.gossip_key:
            self.gossip_key = subprocess.run([consul, "keygen"], capture_output=True, text=True, check=True).stdout.strip()
        self._save_secrets()
        self._network()
        # its own process name: `pidof dockerd` must not find it
        self._engine.symlink_to(shutil.which("dockerd") or "/usr/sbin/dockerd")
        for server in self.server_nodes:
            self._consul_agent(consul, server, self._server_config(server))
        for host in self.hosts.values():
            self._dockerd(host)
        parallel([lambda: self._wait_leader(deadline), *[partial(self._wait_engine, h, deadline) for h in self.hosts.values()]])
        self._tokens(deadline)
        for host in self.hosts.values():
            self._consul_agent(consul, host, self._client_config(host))
        parallel([partial(self._wait_client, h, deadline) for h in self.hosts.values()])
        for host in self.hosts.values():
            self._registrator(host)
        parallel([partial(self._wait_registrator, h, deadline) for h in self.hosts.values()])

    @property
    def _engine(self) -> Path:
        return self.root / "bin" / "dockerd-fleet"

    def _network(self) -> None:
        """The bridge (no address in the root namespace), one namespace and veth per node, and the one
        FORWARD rule the bridge needs: the root namespace filters bridged frames (bridge-nf-call-iptables)
        with a DROP policy."""
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "link", "set", BRIDGE, "up")
        run("iptables", "-I", *RULE)
        for i, node in enumerate(self.nodes):
            node.netns.touch()
            run("unshare", f"--net={node.netns}", "true")  # the namespace lives on, bind-mounted on the file
            outside = f"rfleet-{i}"
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", str(node.netns))
            run("ip", "link", "set", outside, "master", BRIDGE, "up")
            for argv in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "eth0", "up"],
                         ["ip", "addr", "add", f"{node.ip}/24", "dev", "eth0"],
                         ["ip", "route", "add", "default", "via", f"{NET}.1"]):  # --ip-from route reads it
                run(*node.command(*argv))

    def _server_config(self, server: Node) -> dict[str, Any]:
        return {
            **self._common_config(server),
            "server": True, "bootstrap_expect": self.servers,
            "retry_join": [other.ip for other in self.server_nodes if other is not server],
            "acl": {"enabled": True, "default_policy": "deny", "enable_token_persistence": True,
                    "tokens": {"initial_management": self.management_token, "agent": self.management_token}},
        }

    def _client_config(self, host: Host) -> dict[str, Any]:
        return {
            **self._common_config(host),
            "retry_join": [server.ip for server in self.server_nodes],
            "acl": {"enabled": True, "default_policy": "deny", "enable_token_persistence": True,
                    "tokens": {"agent": host.agent_token, "default": self.dns_token}},
        }

    def _common_config(self, node: Node) -> dict[str, Any]:
        return {
            "node_name": node.name, "datacenter": "dc1", "data_dir": str(node.dir / "consul-data"),
            "bind_addr": node.ip, "client_addr": f"127.0.0.1 {node.ip}",
            "addresses": {"http": f"127.0.0.1 {node.ip} unix://{node.consul_socket}"},
            "ports": {"grpc": -1, "grpc_tls": -1}, "encrypt": self.gossip_key,
            "disable_update_check": True, "log_level": "INFO",
            "performance": {"raft_multiplier": 1},  # the production setting; dev-like timings would hide nothing here
        }

    def _consul_agent(self, binary: str, node: Node, config: dict[str, Any]) -> None:
        (node.dir / "consul.json").write_text(json.dumps(config, indent=1))
        self._spawn(node, "consul", node.command(binary, "agent", f"-config-file={node.dir / 'consul.json'}"),
                    env={"CHECKPOINT_DISABLE": "1"})

    def _dockerd(self, host: Host) -> None:
        d = host.dir
        argv = host.command(
            "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', f"fleet-{host.name}", str(self._engine),
            f"--data-root={d / 'docker-data'}", f"--exec-root={d / 'docker-exec'}", f"--host={host.docker_host}",
            f"--pidfile={d / 'docker.pid'}", f"--bip=198.18.{10 + host.index}.1/24",
            f"--default-address-pool=base=198.19.{16 * host.index}.0/20,size=24",
        )
        self._spawn(host, "dockerd", argv)

    def _registrator(self, host: Host, agent: Path = REGISTRATOR) -> None:
        argv = host.command(str(agent), "run", *self.registrator_args, "consul://127.0.0.1:8500")
        self._spawn(host, "registrator", argv, env={"DOCKER_HOST": host.docker_host, "CONSUL_HTTP_TOKEN": host.registrator_token})

    def _spawn(self, node: Node, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start a process of the node in a session of its own (a person's Ctrl-C after `up` leaves it be)."""
        with open(node.dir / f"{name}.log", "ab") as log:
            self.processes[(node.name, name)] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                                 stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, **(env or {})})

    def _wait_leader(self, deadline: float) -> None:
        first = self.server_nodes[0]
        self._until(lambda: self._answers(lambda: first.consul("GET", "/v1/status/leader", "")), deadline,
                    "a Consul leader", self.server_nodes, "consul")

    def _wait_engine(self, host: Host, deadline: float) -> None:
        def ping() -> bool:
            try:
                return bool(host.docker.ping())
            except Exception:  # not listening yet
                return False
        self._until(ping, deadline, f"dockerd of {host.name}", [host], "dockerd")
        self._images(host)

    def _images(self, host: Host) -> None:
        """Each engine has its own image store: the test images are built into each (reused by content key)."""
        self.image_tags = {name: build_image(host.docker, name) for name in self.images}

    def _tokens(self, deadline: float) -> None:
        """Per-host Consul agent and registrator tokens, and the DNS (default) token, with fixed SecretIDs
        chosen before the client agents started."""
        server = self.server_nodes[0]
        token = self.management_token
        policies = {
            "dns": 'node_prefix "" { policy = "read" }\nservice_prefix "" { policy = "read" }',
            **{f"agent-{h.name}": f'node "{h.name}" {{ policy = "write" }}\nservice_prefix "" {{ policy = "read" }}'
               for h in self.hosts.values()},
            "registrator": 'service_prefix "" { policy = "write" }\nnode_prefix "" { policy = "read" }\nagent_prefix "" { '
                           'policy = "read" }',
        }
        secrets = [(self.dns_token, "dns"), *[(h.agent_token, f"agent-{h.name}") for h in self.hosts.values()],
                   *[(h.registrator_token, "registrator") for h in self.hosts.values()]]

        def create() -> bool:
            existing = {p["Name"] for p in server.consul("GET", "/v1/acl/policies", token)}
            for name, rules in policies.items():
                if name not in existing:
                    server.consul("PUT", "/v1/acl/policy", token, {"Name": name, "Rules": rules})
            for secret, policy in secrets:
                if not self._answers(partial(server.consul, "GET", "/v1/acl/token/self", secret)):
                    server.consul("PUT", "/v1/acl/token", token, {"SecretID": secret, "Policies": [{"Name": policy}]})
            return True
        # the ACL system answers "not yet initialized" for a moment after the first election
        self._until(lambda: self._answers(create), deadline, "the ACL tokens", self.server_nodes, "consul")

    def _wait_client(self, node: Node, deadline: float) -> None:
        """Until NODE's own Consul agent says the cluster sees it alive (a node that failed stays in the
        catalog, critical)."""
        def alive() -> bool:
            checks = self._answers(lambda: node.consul("GET", f"/v1/health/node/{node.name}", self.management_token))
            return any(c["CheckID"] == "serfHealth" and c["Status"] == "passing" for c in checks or [])
        self._until(alive, deadline, f"the Consul agent of {node.name} alive in the catalog", [node], "consul")

    def _wait_registrator(self, host: Host, deadline: float, since: int = 0) -> None:
        self._until(lambda: "ready:" in host.registrator_log(since), deadline, f"the registrator of {host.name}", [host],
                    "registrator")

    @staticmethod
    def _answers(call: Callable[[], T]) -> T | None:
        try:
            return call()
        except (OSError, ConsulError):  # not listening yet, a stalled API during an election, ACLs settling
            return None

    def _until(self, probe: Callable[[], object], deadline: float, what: str, nodes: list[Node], log: str) -> None:
        def alive_and() -> object:
            for node in nodes:  # a process that exited will not come up: fail now, not at the deadline
                process = self.processes.get((node.name, log))
                if process is not None and process.poll() is not None:
                    raise AssertionError(f"{log} of {node.name} exited with {process.returncode}")
            return probe()
        try:
            eventually(alive_and, timeout=max(deadline - time.monotonic(), 0.1), interval=0.2, what=what)
        except AssertionError as exc:
            tails = "\n".join(f"--- {node.dir / (log + '.log')} ---\n{_tail(node.dir / (log + '.log'), 3000)}" for node in nodes)
            raise RuntimeError(f"{exc}\n{tails}") from None

    # --- faults and restarts -----------------------------------------------------------------------

    def kill(self, host: Host) -> None:
        """Host loss as a power cut would do it: SIGKILL to everything in HOST's namespace (Consul client,
        engine, containerd and its shims, our agent) and to its containers; the data dirs stay."""
        pids = _pids_in(host.netns)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        _kill_cgroups([host.dir])
        eventually(lambda: not any(_alive(pid) for pid in pids), timeout=10, what=f"{host.name}'s processes gone")
        self._reap(host)
        host.close()

    def stop(self, node: Node, part: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop one of NODE's parts ("registrator", "consul") with SIG and wait until it has exited."""
        pids = {pid for pid in _pids_in(node.netns) if _comm_matches(pid, part)}
        assert pids, f"no {part} running on {node.name}"
        for pid in pids:
            _signal(pid, sig)
        eventually(lambda: not any(_alive(pid) for pid in pids), timeout=timeout, interval=0.1, what=f"{part} of {node.name} "
                                                                                                     "gone")
        self._reap(node, part)

    def start(self, node: Node, *parts: str, timeout: float = 60, agent: Path = REGISTRATOR) -> None:
        """Start NODE's PARTS again on their data dirs, in dependency order ("dockerd", "consul",
        "registrator"; a server has only "consul"), each waited for until it serves. AGENT is the
        registrator command to run (another build, for an upgrade)."""
        deadline = time.monotonic() + timeout
        if "consul" in parts and not isinstance(node, Host):
            self._consul_agent(consul_binary(), node, self._server_config(node))
            self._wait_client(node, deadline)
            return
        assert isinstance(node, Host), f"{node.name} is a server: it has only consul"
        host = node
        if "dockerd" in parts:
            self._dockerd(host)
            self._wait_engine(host, deadline)
        if "consul" in parts:
            self._consul_agent(consul_binary(), host, self._client_config(host))
            self._wait_client(host, deadline)
        if "registrator" in parts:
            since = host.log_size("registrator")
            self._registrator(host, agent)
            self._wait_registrator(host, deadline, since)

    def _reap(self, node: Node, *parts: str) -> None:
        for part in parts or ("registrator", "dockerd", "consul"):
            process = self.processes.pop((node.name, part), None)
            if process is not None:
                process.wait(timeout=5)

    def cut(self, node: Node) -> None:
        """Pull NODE's cable: its veth on the bridge goes down; everything on it keeps running."""
        run("ip", "link", "set", self._veth(node), "down")

    def restore(self, node: Node) -> None:
        run("ip", "link", "set", self._veth(node), "up")

    def _veth(self, node: Node) -> str:
        return f"rfleet-{self.nodes.index(node)}"

    def leader(self) -> Node | None:
        """The server leading now, as the first server that answers says (None during an election)."""
        for server in self.server_nodes:
            address = self._answers(partial(server.consul, "GET", "/v1/status/leader", "", timeout=2))
            if address:
                return next(s for s in self.server_nodes if address.startswith(f"{s.ip}:"))
        return None

    # --- state ------------------------------------------------------------------------------------

    def running(self) -> bool:
        """Whether every node's namespace holds its processes (and answers): then `up()` keeps it."""
        try:
            if not all(node.netns.exists() and _pids_in(node.netns) for node in self.nodes):
                return False
            self._wait_leader(time.monotonic() + 5)
            return all("ready:" in host.registrator_log() and len(_pids_in(host.netns)) >= 4 for host in self.hosts.values())
        except (RuntimeError, OSError):
            return False

    def _load_secrets(self) -> dict[str, str]:
        path = self.root / "secrets.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _save_secrets(self) -> None:
        secrets = {"management": self.management_token, "dns": self.dns_token, "gossip": self.gossip_key}
        for host in self.hosts.values():
            secrets |= {f"agent-{host.name}": host.agent_token, f"registrator-{host.name}": host.registrator_token}
        path = self.root / "secrets.json"
        path.write_text(json.dumps(secrets))
        path.chmod(0o600)

    # --- tear-down --------------------------------------------------------------------------------

    def down(self, timeout: float = 30) -> None:
        """Stop and remove everything the fleet made, whatever state it is in; idempotent."""
        started = time.monotonic()
        if not self.root.exists() and not _link_exists(BRIDGE):
            self._remove_rule()
            return
        hosts = [h for h in self.hosts.values() if h.docker_socket.exists()]
        parallel([partial(_remove_containers, h) for h in hosts])
        for name in ("registrator", "dockerd", "consul"):  # the agent first: it must not see the engines go
            self._stop(partial(_comm_matches, name=name), timeout / 3)
        self._stop(lambda pid: True, timeout / 3)  # whatever else was left in the namespaces
        _kill_cgroups([host.dir for host in self.hosts.values()])
        for host in self.hosts.values():
            host.close()
        for target in sorted(_mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        if _link_exists(BRIDGE):
            run("ip", "link", "del", BRIDGE)
        for i in range(len(self.nodes)):  # a veth whose namespace is gone is gone too; this is for the rest
            if _link_exists(f"rfleet-{i}"):
                run("ip", "link", "del", f"rfleet-{i}")
        self._remove_rule()
        shutil.rmtree(self.root, ignore_errors=True)
        for process in self.processes.values():
            process.wait(timeout=5)  # reaped: gone, not zombies
        self.processes.clear()
        self.timings["down"] = time.monotonic() - started

    def _stop(self, which: Callable[[int], bool], timeout: float) -> None:
        """SIGTERM the chosen processes in the fleet's namespaces (and the containerd each engine
        started), wait for them to go (a dockerd started while its old containerd lingers never comes
        up), then SIGKILL the rest."""
        pids = {pid for node in self.nodes if node.netns.exists() for pid in _pids_in(node.netns) if which(pid)}
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while (alive := {pid for pid in pids if _alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in alive:
            _signal(pid, signal.SIGKILL)
        eventually(lambda: not any(_alive(pid) for pid in pids), timeout=10, what="the fleet's processes gone")

    @staticmethod
    def _remove_rule() -> None:
        while subprocess.run(["iptables", "-C", *RULE], capture_output=True).returncode == 0:
            run("iptables", "-D", *RULE)


def parallel(calls: list[Callable[[], object]]) -> None:
    """Run the calls side by side; the first failure is raised once all have finished."""
    with ThreadPoolExecutor(max_workers=max(len(calls), 1)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _tail(path: Path, size: int) -> str:
    return path.read_bytes()[-size:].decode(errors="replace") if path.exists() else ""


def _pids_in(netns: Path) -> set[int]:
    """Processes whose network namespace is the one bound on NETNS (only this fleet's processes are)."""
    try:
        target = os.stat(netns).st_ino
    except OSError:
        return set()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == target and _alive(int(entry.name)):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def _comm_matches(pid: int, name: str) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm.startswith(name)


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie's parent reaps it; it holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point.startswith(prefix)]


def _remove_containers(host: Host) -> None:
    """Containers go with SIGKILL before their engine stops (it would give each its 10 s stop timeout)."""
    try:
        parallel([partial(c.remove, force=True) for c in host.docker.containers.list(all=True)])
    except Exception:  # an engine that does not answer: its containers' processes are killed by cgroup
        pass


def _kill_cgroups(host_dirs: list[Path]) -> None:
    """Kill what still runs in the cgroups of these hosts' containers (an engine killed before it
    stopped them leaves them running), and remove those cgroups."""
    ids = {p.name for d in host_dirs for p in d.glob("docker-data/containers/*")}
    groups = [g for cid in ids for g in Path("/sys/fs/cgroup").glob(f"*/docker/{cid}")] + \
             [g for cid in ids for g in Path("/sys/fs/cgroup").glob(f"system.slice/docker-{cid}.scope")]
    for group in groups:
        for pid in (group / "cgroup.procs").read_text().split() if (group / "cgroup.procs").exists() else []:
            _signal(int(pid), signal.SIGKILL)
    for group in groups:
        eventually(partial(_empty, group), timeout=5, what=f"{group} empty")
        group.rmdir()


def _empty(group: Path) -> bool:
    return not (group / "cgroup.procs").exists() or not (group / "cgroup.procs").read_text().strip()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    fleet = Fleet(root=Path(os.environ.get("FLEET_ROOT", DEFAULT_ROOT)))
    if command == "up":
        fleet.up()
        print(f"fleet up in {fleet.timings.get('up', 0):.1f}s under {fleet.root}")
        for host in fleet.hosts.values():
            print(f"  {host.name}: {host.ip}  DOCKER_HOST={host.docker_host}  "
                  f"CONSUL_HTTP_ADDR=unix://{host.consul_socket}  netns={host.netns}")
        print(f"  management token: {fleet.root / 'secrets.json'}")
    elif command == "down":
        fleet.down()
        print(f"fleet down in {fleet.timings.get('down', 0):.1f}s")
    elif command == "status":
        print("up" if fleet.running() else "down")
        return 0 if fleet.running() else 3
    else:
        print(f"usage: {sys.argv[0]} up|down|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
