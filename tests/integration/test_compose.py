"""The quick start, for real: `docker-compose up` on the repository's docker-compose.yml brings up
Consul, the agent (built from the repository's Dockerfile), the NSQ example and the consul-template
example; nsqd finds both nsqlookupd through Consul DNS, a consumer that knows only Consul DNS reads a
published message, and Caddy proxies to the `web` instances consul-template renders from Consul.

No registry image can be pulled here, so the file's image variables point at stand-ins built
locally: Consul FROM scratch with the binary the rig built, NSQ from tests/images/nsq, busybox from
tests/images/http, Caddy from tests/images/caddy, consul-template FROM scratch with the binary
scripts/consul-template.sh built, and for the agent's base a Debian root filesystem from debootstrap
with a wheelhouse in place of PyPI.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.rig import ROOT, consul_template_binary, dig, eventually, has_image, unavailable

PROJECT = "regtest-compose"
CONSUL_DNS = 8600  # the compose file's Consul keeps its default ports on the host network
PROXY = "http://127.0.0.1:8080/"  # Caddy, on the host network


@pytest.fixture(scope="module")
def compose(docker_client: docker.DockerClient, images: dict[str, str], consul_server) -> Iterator[Callable[..., Any]]:
    """`docker-compose up -d --build` of the repository's file with stand-in images, yielding a runner
    of further docker-compose commands; `down` afterwards."""
    if not shutil.which("docker-compose"):
        unavailable("no docker-compose on PATH (Debian package docker-compose)")
    env = {
        **os.environ,
        "CONSUL_IMAGE": _consul_image(docker_client, consul_server.binary),
        "NSQ_IMAGE": images["nsq"],
        "BUSYBOX_IMAGE": images["http"],
        "CADDY_IMAGE": images["caddy"],
        "CONSUL_TEMPLATE_IMAGE": _consul_template_image(docker_client),
        "PYTHON_BASE": _python_base(docker_client),
    }
    command = ["docker-compose", "--project-name", PROJECT, "--file", str(ROOT / "docker-compose.yml")]
    subprocess.run([*command, "down", "--volumes", "--remove-orphans"], env=env, capture_output=True)
    up = subprocess.run([*command, "up", "--detach", "--build"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield lambda *args: subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120)
    finally:
        logs = subprocess.run([*command, "logs", "--no-color", "--tail", "40"], env=env, capture_output=True, text=True)
        print(logs.stdout[-6000:])
        subprocess.run([*command, "down", "--volumes", "--remove-orphans"], env=env, capture_output=True, timeout=120)


def test_compose_up_makes_both_nsqlookupd_resolvable_through_consul_dns(compose):
    answers = eventually(lambda: (found := dig(CONSUL_DNS, "nsqlookupd.service.consul", "SRV")) and len(found) == 2 and found,
                         timeout=60, what="two nsqlookupd in the SRV answer of the compose Consul")
    ports = {int(line.split()[2]) for line in answers}
    assert len(ports) == 2 and not ports & {4160, 4161}, answers  # each lookupd at its own published port

    listed = compose("exec", "-T", "registrator", "registrator", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    owned = {(row["name"], row["port"]) for row in json.loads(listed.stdout)}
    assert {("nsqlookupd", port) for port in ports} | {("nsqd", 4150), ("nsqd-http", 4151)} <= owned


def test_nsqd_started_from_the_srv_answer_and_a_consumer_reads_through_consul_dns_only(compose):
    lookupd_http = eventually(lambda: (found := _resolve("nsqlookupd-http")) and len(found) == 2 and found,
                              timeout=60, what="both nsqlookupd HTTP ports passing in Consul DNS")
    [nsqd_http] = eventually(lambda: _resolve("nsqd-http"), timeout=60, what="nsqd HTTP passing in Consul DNS")
    for address in lookupd_http:  # nsqd connects to every lookupd it was started with
        eventually(lambda a=address: _nodes(a), timeout=30, what=f"nsqd registered with the nsqlookupd at {address}")

    request = urllib.request.Request(f"http://{nsqd_http}/pub?topic=orders", data=b"order-7", method="POST")
    urllib.request.urlopen(request, timeout=5)
    nsq_bin = Path(subprocess.run(["bash", str(ROOT / "scripts" / "nsq.sh")], capture_output=True, text=True,
                                  check=True).stdout.strip())
    consumer = subprocess.run(
        [str(nsq_bin / "nsq_tail"), "--topic=orders", "-n", "1", *[f"--lookupd-http-address={a}" for a in lookupd_http]],
        capture_output=True, text=True, timeout=30,
    )
    assert consumer.stdout.strip() == "order-7", consumer.stderr


def test_the_proxy_balances_over_the_web_instances_consul_template_renders_and_drops_a_stopped_one(compose):
    ports = {name: int(compose("port", name, "80").stdout.split()[0].rsplit(":", 1)[1]) for name in ("web-1", "web-2")}
    eventually(lambda: _upstream_ports(compose) == set(ports.values()), timeout=60,
               what="both web instances in the proxy's rendered Caddyfile")
    hostnames = {name: compose("exec", "-T", name, "hostname").stdout.strip() for name in ports}
    seen: set[str] = set()  # Caddy picks an upstream at random for each request
    eventually(lambda: seen.add(_get(PROXY)) or seen >= set(hostnames.values()), timeout=30,
               what="both web instances answering through the proxy")

    stopped = compose("stop", "web-2")
    assert stopped.returncode == 0, stopped.stderr
    eventually(lambda: _upstream_ports(compose) == {ports["web-1"]}, timeout=30, what="web-2 gone from the rendered Caddyfile")
    eventually(lambda: [_get(PROXY) for _ in range(5)] == [hostnames["web-1"]] * 5, timeout=10,
               what="every request through the proxy answered by web-1")


def _upstream_ports(compose: Callable[..., Any]) -> set[int]:
    """Ports of the upstreams in the Caddyfile consul-template rendered in the proxy container."""
    rendered = compose("exec", "-T", "proxy", "cat", "/etc/caddy/Caddyfile").stdout
    return {int(upstream.rsplit(":", 1)[1]) for line in rendered.splitlines() if line.split()[:1] == ["reverse_proxy"]
            for upstream in line.split()[1:]}


def _get(url: str) -> str:
    try:
        return urllib.request.urlopen(url, timeout=2).read().decode().strip()
    except OSError:
        return ""


def _resolve(name: str) -> list[str]:
    """host:port per SRV record, the A record of each target looked up the way a consumer would."""
    found = []
    for record in dig(CONSUL_DNS, f"{name}.service.consul", "SRV"):
        _, _, port, target = record.split()
        addresses = dig(CONSUL_DNS, target, "A")
        if addresses:
            found.append(f"{addresses[0]}:{port}")
    return sorted(found)


def _nodes(lookupd_http: str) -> list[object]:
    try:
        return list(json.loads(urllib.request.urlopen(f"http://{lookupd_http}/nodes", timeout=2).read()).get("producers", []))
    except OSError:
        return []


def _consul_image(client: docker.DockerClient, binary: str) -> str:
    """hashicorp/consul's stand-in: the rig's static Consul binary FROM scratch, same entrypoint."""
    content = Path(binary).read_bytes()
    tag = f"registrator-test/consul:{hashlib.sha256(content).hexdigest()[:12]}"
    dockerfile = 'FROM scratch\nCOPY consul /bin/consul\nENTRYPOINT ["/bin/consul"]\n'
    return _build(client, tag, {"Dockerfile": dockerfile.encode(), "consul": content})


def _consul_template_image(client: docker.DockerClient) -> str:
    """hashicorp/consul-template's stand-in, for the proxy's build to copy /bin/consul-template from:
    the binary scripts/consul-template.sh built, FROM scratch."""
    content = Path(consul_template_binary()).read_bytes()
    tag = f"registrator-test/consul-template:{hashlib.sha256(content).hexdigest()[:12]}"
    dockerfile = 'FROM scratch\nCOPY consul-template /bin/consul-template\nENTRYPOINT ["/bin/consul-template"]\n'
    return _build(client, tag, {"Dockerfile": dockerfile.encode(), "consul-template": content})


def _python_base(client: docker.DockerClient) -> str:
    """python:3.11-slim's stand-in: debootstrapped Debian with a venv first on PATH, and pip pointed
    at a wheelhouse of the project's dependencies (built here from PyPI) instead of the index."""
    script = subprocess.run(["bash", str(ROOT / "scripts" / "python-base.sh")], capture_output=True, text=True)
    if script.returncode != 0:
        unavailable(f"scripts/python-base.sh failed: {script.stderr.strip()[-1500:]}")
    tarball = Path(script.stdout.strip())
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject + str(tarball.stat().st_mtime_ns).encode()).hexdigest()[:12]
    tag = f"registrator-test/python:{key}"
    if has_image(client, tag):
        return tag
    rootfs = f"registrator-test/debian-python:{key}"
    client.api.import_image_from_file(str(tarball), repository=rootfs.split(":")[0], tag=key)
    with tempfile.TemporaryDirectory() as wheels:
        project = tomllib.loads(pyproject.decode())
        requirements = [*project["build-system"]["requires"], "wheel", *project["project"]["dependencies"]]
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels, *requirements],
                       check=True, capture_output=True, timeout=600)
        files = {f"wheels/{p.name}": p.read_bytes() for p in Path(wheels).iterdir()}
    dockerfile = (f"FROM {rootfs}\nCOPY wheels /wheels\n"
                  "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
                  "PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels PIP_DISABLE_PIP_VERSION_CHECK=1\n")
    return _build(client, tag, {"Dockerfile": dockerfile.encode(), **files})


def _build(client: docker.DockerClient, tag: str, files: dict[str, bytes]) -> str:
    if has_image(client, tag):
        return tag
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            archive.addfile(info, io.BytesIO(content))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True)
    return tag
