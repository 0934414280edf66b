"""consul-template as a consumer, for real: consul-template (scripts/consul-template.sh) renders an
upstream list from the `web` instances this agent registers, the way a proxy's configuration would
be rendered. An instance enters the file when its container starts, leaves when it stops, and is
left out while its health check fails (consul-template's `service` lists passing instances only)."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.rig import ConsulAgent, consul_template_binary, eventually

UPSTREAMS = '{{ range service "web" }}{{ .Address }}:{{ .Port }}\n{{ end }}'


@pytest.fixture(scope="module")
def consul_template() -> str:
    return consul_template_binary()


@pytest.fixture
def upstreams(consul_template: str, consul: ConsulAgent, tmp_path: Path) -> Iterator[Callable[[], set[str]]]:
    """consul-template rendering UPSTREAMS from the test's Consul into a file; yields a reader of the
    rendered upstreams (host:port), and stops consul-template afterwards."""
    source, rendered, log_path = tmp_path / "upstreams.ctmpl", tmp_path / "upstreams.txt", tmp_path / "consul-template.log"
    source.write_text(UPSTREAMS)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([consul_template, "-consul-addr", consul.http_addr, "-template", f"{source}:{rendered}"],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: process.poll() is None and rendered.exists(), timeout=10,
                   what=f"consul-template's first render (log: {log_path})")
        yield lambda: set(rendered.read_text().split())
    finally:
        process.send_signal(signal.SIGINT)  # consul-template's stop signal; it passes SIGTERM on to a child
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- consul-template log ---\n{log_path.read_text(errors='replace')[-3000:]}")


def test_an_instance_enters_the_rendered_upstreams_when_its_container_starts_and_leaves_when_it_stops(agent, workload, upstreams):
    agent.start()
    assert upstreams() == set()
    web = {"SERVICE_NAME": "web"}

    first = workload("http", env=web, ports={80: None})
    one = f"{agent.ip}:{first.get_exposed_port(80)}"
    eventually(lambda: upstreams() == {one}, timeout=10, what=f"{one} rendered")
    assert urllib.request.urlopen(f"http://{one}/", timeout=5).read() == b"ok\n"  # the rendered upstream answers

    second = workload("http", env=web, ports={80: None})
    two = f"{agent.ip}:{second.get_exposed_port(80)}"
    eventually(lambda: upstreams() == {one, two}, timeout=10, what="both instances rendered")

    first.get_wrapped_container().stop(timeout=1)
    eventually(lambda: upstreams() == {two}, timeout=10, what=f"{one} gone from the rendered file")


def test_an_instance_is_left_out_of_the_rendered_upstreams_while_its_health_check_fails(agent, workload, upstreams):
    agent.start()
    probe = workload("probe", env={"SERVICE_NAME": "web", "SERVICE_CHECK_HTTP": "/health", "SERVICE_CHECK_INTERVAL": "1s"},
                     ports={80: None})
    upstream = f"{agent.ip}:{probe.get_exposed_port(80)}"
    eventually(lambda: upstreams() == {upstream}, timeout=10, what=f"{upstream} rendered once its check passes")

    probe.get_wrapped_container().exec_run(["/probe", "set", "unhealthy"])
    eventually(lambda: upstreams() == set(), timeout=10, what=f"{upstream} left out while /health fails")

    probe.get_wrapped_container().exec_run(["/probe", "set", "healthy"])
    eventually(lambda: upstreams() == {upstream}, timeout=10, what=f"{upstream} back once /health passes")
