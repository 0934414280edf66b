"""The real test rig: a Consul dev agent, locally built images, the agent under test, and dig."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "images"
T = TypeVar("T")


def in_ci() -> bool:
    """CI is set to anything but empty, 0, false or no (CI providers set true, 1, or the provider's name)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """A missing part of the rig: a failure in CI, a skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI={os.environ['CI']}: the rig must be complete)", pytrace=False)
    pytest.skip(reason)


def mark_integration(folder: Path, items: list[pytest.Item]) -> None:
    """Give the tests under FOLDER the `integration` marker (`-m "not integration"` leaves them out).
    A `pytestmark` in a conftest.py marks nothing: only test modules are read for it."""
    for item in items:
        if folder in item.path.parents:
            item.add_marker(pytest.mark.integration)


def eventually(probe: Callable[[], T], timeout: float = 2.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {value!r})")
        time.sleep(interval)


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port never handed out before in this process (the kernel may offer a port it
    just gave us again, and one Consul agent takes several)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def consul_binary() -> str:
    """scripts/consul.sh: $CONSUL_BIN, the cached build, or a build from source (once per machine)."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "consul.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/consul.sh failed: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def consul_template_binary() -> str:
    """scripts/consul-template.sh: $CONSUL_TEMPLATE_BIN, the cached build, or a build from source
    (once per machine); a rig without it is unavailable (a failure with CI=true)."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "consul-template.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        unavailable(f"scripts/consul-template.sh failed: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


@dataclass
class ConsulAgent:
    """A `consul agent -dev` on free loopback ports, stopped with `stop()`."""

    binary: str
    workdir: Path
    http_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def uri(self) -> str:
        return f"consul://{self.http_addr}"

    https_port: int = field(default_factory=free_port)
    extra_hcl: str = ""
    token: str = ""  # sent by get/put, for an agent with ACLs

    @property
    def socket(self) -> Path:
        return self.workdir / "consul.sock"

    def tls_file(self, name: str) -> str:
        """TLS material made by `consul tls`: ca, server, client certificates and keys."""
        files = {"ca": "consul-agent-ca.pem", "client-cert": "dc1-client-consul-0.pem",
                 "client-key": "dc1-client-consul-0-key.pem",
                 "server-cert": "dc1-server-consul-0.pem", "server-key": "dc1-server-consul-0-key.pem"}
        return str(self.workdir / files[name])

    def start(self, timeout: float = 30.0) -> None:
        """Plain HTTP on a free port, HTTPS requiring a client certificate, a unix socket, and DNS."""
        if not (self.workdir / "consul-agent-ca.pem").exists():
            for args in (["ca", "create"], ["cert", "create", "-server", "-dc", "dc1"],
                         ["cert", "create", "-client", "-dc", "dc1"]):
                subprocess.run([self.binary, "tls", *args], cwd=self.workdir, check=True, capture_output=True)
        (self.workdir / "agent.hcl").write_text(
            f'addresses {{ http = "127.0.0.1 unix://{self.socket}" }}\n'
            f'tls {{ defaults {{ ca_file = "{self.tls_file("ca")}" cert_file = "{self.tls_file("server-cert")}" '
            f'key_file = "{self.tls_file("server-key")}" }} https {{ verify_incoming = true }} }}\n'
            "disable_update_check = true\n"
            "enable_script_checks = true\n"
            'telemetry { prometheus_retention_time = "1h" }\n'
            + self.extra_hcl
        )
        ports = {flag: str(free_port()) for flag in ("-serf-lan-port", "-serf-wan-port", "-server-port")}
        args = [
            self.binary, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-http-port", str(self.http_port), "-https-port", str(self.https_port), "-dns-port", str(self.dns_port),
            "-grpc-port", "-1", "-grpc-tls-port", "-1", "-config-file", str(self.workdir / "agent.hcl"),
            *[item for pair in ports.items() for item in pair],
        ]
        log = open(self.workdir / "consul.log", "wb")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
        eventually(self._has_leader, timeout=timeout, interval=0.2, what=f"Consul leader (log: {self.workdir / 'consul.log'})")
        if "acl" not in self.extra_hcl:  # with default-deny ACLs anonymous DNS answers nothing
            eventually(lambda: dig(self.dns_port, "consul.service.consul", "A"), timeout=timeout, what="Consul DNS")

    def _has_leader(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"consul exited: {(self.workdir / 'consul.log').read_text()[-2000:]}")
        try:
            return bool(json.loads(self.get("/v1/status/leader")))
        except OSError:
            return False

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(f"http://{self.http_addr}{path}", headers={"X-Consul-Token": self.token} if self.token
                                         else {})
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    def put(self, path: str, body: bytes = b"") -> bytes:
        headers = {"X-Consul-Token": self.token} if self.token else {}
        request = urllib.request.Request(f"http://{self.http_addr}{path}", data=body, method="PUT", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    def log(self) -> str:
        return (self.workdir / "consul.log").read_text(errors="replace")

    def writes(self) -> int:
        """Every PUT the agent's HTTP API has served, by Consul's own cumulative counters."""
        metrics = self.get("/v1/agent/metrics?format=prometheus").decode()
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
                   if line.startswith('consul_api_http_count{method="PUT"'))

    def services(self) -> dict[str, dict[str, object]]:
        return dict(json.loads(self.get("/v1/agent/services")))

    def deregister_all(self) -> None:
        for service_id in self.services():
            self.put(f"/v1/agent/service/deregister/{urllib.request.quote(service_id, safe='')}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def dig(dns_port: int, name: str, rtype: str = "SRV") -> list[str]:
    """`dig @127.0.0.1 -p PORT NAME TYPE +short` as a consumer would run it; answer lines."""
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(dns_port), name, rtype, "+short", "+time=1", "+tries=1"],
        capture_output=True, text=True, timeout=10,
    )
    return [line for line in result.stdout.splitlines() if line and not line.startswith(";")]


def srv_ports(dns_port: int, name: str) -> set[int]:
    """Ports of the SRV answer for `name` (records read `priority weight port target`)."""
    return {int(line.split()[2]) for line in dig(dns_port, name, "SRV")}


def has_image(client: docker.DockerClient, tag: str) -> bool:
    """Whether a locally built image is there already (images are tagged by a hash of their content)."""
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_image(client: docker.DockerClient, name: str) -> str:
    """Build tests/images/<name> FROM scratch and reuse it by content key.

    The context gets the host's static busybox, and for a Go program (a go.mod beside the
    Dockerfile) its static binary, built through the Go module proxy.
    """
    folder = IMAGES / name
    sources = sorted(p for p in folder.iterdir() if p.is_file())
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    scripts = [ROOT / (folder / "binaries-from").read_text().strip()] if (folder / "binaries-from").exists() else []
    key = hashlib.sha256(b"".join(p.read_bytes() for p in [*sources, *scripts]) + busybox).hexdigest()[:12]
    tag = f"registrator-test/{name}:{key}"
    if has_image(client, tag):
        return tag
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(folder / "Dockerfile", context)
        (Path(context) / "busybox").write_bytes(busybox)
        (Path(context) / "busybox").chmod(0o755)
        if (folder / "go.mod").exists():
            _go_build(folder, Path(context) / name)
        if (folder / "binaries-from").exists():  # a script that prints a folder of prebuilt binaries
            script = ROOT / (folder / "binaries-from").read_text().strip()
            result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{script.name} failed ({result.returncode}): {result.stderr[-2000:]}")
            copy_prebuilt(Path(result.stdout.strip()), Path(context))
        client.images.build(path=context, tag=tag, rm=True, forcerm=True)
    return tag


def copy_prebuilt(built: Path, context: Path) -> list[str]:
    """Copy a build script's binaries; returns their names. Another process may be building into the
    same cache folder right now: its files there are temporary (`.name.PID.tmp`, renamed away at any
    moment) and are never copied."""
    names = sorted(p.name for p in built.iterdir() if not p.name.startswith("."))
    for name in names:
        shutil.copy(built / name, context)
    return names


def _go_build(folder: Path, output: Path) -> None:
    proxy = subprocess.run(["go", "env", "GOPROXY"], capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly",
           "GOPROXY": proxy.removesuffix(",direct").removesuffix("|direct")}
    result = subprocess.run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(output), "."],
                            cwd=folder, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"go build of {folder.name} failed: {result.stderr[-2000:]}")


@dataclass
class Agent:
    """The agent under test, run as a real `registrator run` process."""

    hostname: str
    ip: str
    consul: ConsulAgent
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, timeout: float = 20.0) -> None:
        """`registrator run --hostname H --ip IP EXTRA... consul://…`, waiting until it follows events."""
        self.launch(["run", "--hostname", self.hostname, "--ip", self.ip, *extra, self.consul.uri], timeout=timeout)

    def launch(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 20.0) -> None:
        """Start `registrator ARGV` exactly as given (a registrator command line, say) and wait until ready."""
        self.process = subprocess.Popen(
            [*registrator_command(), *argv], stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"),
            env={**os.environ, **(env or {})},
        )
        eventually(self._ready, timeout=timeout, interval=0.05, what=f"agent ready (log: {self.log_path})")

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, f"agent exited:\n{self.log()}"
        return "ready:" in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another `registrator` subcommand as this host, against the same Consul."""
        return run_registrator(*args, "--hostname", self.hostname, self.consul.uri)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_registrator(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `registrator ARGS` to completion."""
    return subprocess.run([*registrator_command(), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def registrator_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("registrator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


class FakeEndpoint:
    """A loopback HTTP server answering like a documented AWS endpoint; `handle(method, path, headers)`
    returns (status, body) and every request is recorded."""

    def __init__(self, handle: Callable[[str, str, dict[str, str]], tuple[int, str]]) -> None:
        import http.server
        import threading

        requests: list[tuple[str, str, dict[str, str]]] = []
        self.requests = requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                requests.append((self.command, self.path, headers))
                status, body = handle(self.command, self.path, headers)
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
