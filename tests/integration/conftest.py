"""Fixtures for tests against a real Docker engine and a real Consul agent.

With CI=true a missing Docker or Consul fails the run; elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image cannot be pulled here

import docker
import pytest
from testcontainers.core.container import DockerContainer

from tests.integration.rig import Agent, ConsulAgent, FakeEndpoint, build_image, consul_binary, dig, mark_integration, unavailable

TEST_LABEL = "registrator-test"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_integration(Path(__file__).parent, items)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no Docker here"
        unavailable(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def consul_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulAgent]:
    try:
        binary = consul_binary()
    except RuntimeError as exc:
        unavailable(str(exc))
    agent = ConsulAgent(binary=binary, workdir=tmp_path_factory.mktemp("consul"))
    agent.start()
    yield agent
    agent.stop()


@pytest.fixture
def private_consul(consul_server: ConsulAgent, tmp_path: Path) -> Iterator[Callable[..., ConsulAgent]]:
    """A Consul agent of this test's own, for tests that stop, restart or reconfigure it."""
    agents: list[ConsulAgent] = []

    def start(extra_hcl: str = "") -> ConsulAgent:
        agents.append(ConsulAgent(binary=consul_server.binary, workdir=tmp_path, extra_hcl=extra_hcl))
        agents[-1].start()
        return agents[-1]

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def consul(consul_server: ConsulAgent) -> Iterator[ConsulAgent]:
    """The shared Consul agent, emptied of services after each test."""
    yield consul_server
    consul_server.deregister_all()


@pytest.fixture
def resolve(consul: ConsulAgent) -> Callable[..., list[str]]:
    """dig against the test Consul's DNS port: resolve("web.service.consul", "SRV")."""
    return lambda name, rtype="SRV": dig(consul.dns_port, name, rtype)


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> dict[str, str]:
    names = sorted(p.parent.name for p in Path(__file__).parent.parent.joinpath("images").glob("*/Dockerfile"))
    return {name: build_image(docker_client, name) for name in names}


@pytest.fixture
def image_as(docker_client: docker.DockerClient, images: dict[str, str]) -> Callable[[str, str], str]:
    """Tag a test image under another basename, e.g. image_as("tcp", "redis") → registrator-test/redis:<key>."""

    def tag(image: str, basename: str) -> str:
        key = images[image].rsplit(":", 1)[1]
        docker_client.images.get(images[image]).tag(f"registrator-test/{basename}", key)
        return f"registrator-test/{basename}:{key}"

    return tag


@pytest.fixture
def workload(docker_client: docker.DockerClient, images: dict[str, str]) -> Iterator[Callable[..., DockerContainer]]:
    """Start a labelled container from a test image (or any local image name); all are removed after the test."""
    started: list[DockerContainer] = []

    def start(image: str = "http", *, env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
              ports: dict[int | str, int | None] | None = None, **kwargs: Any) -> DockerContainer:
        network = kwargs.pop("network", None)  # a network name, passed through to docker create
        container = DockerContainer(images.get(image, image), env=env or {}, labels={TEST_LABEL: "1", **(labels or {})}, **kwargs)
        if network:  # with_kwargs replaces the extra create() arguments, so pass the others again
            container.with_kwargs(network=network, **{k: v for k, v in kwargs.items() if k not in ("command", "name")})
        for port, host_port in (ports or {}).items():
            container.with_bind_ports(port, host_port)
        started.append(container)
        return container.start()

    yield start
    for container in started:
        try:
            container.stop()
        except docker.errors.NotFound:
            pass


@pytest.fixture
def network(docker_client: docker.DockerClient) -> Iterator[Callable[..., Any]]:
    """Create a user-defined Docker network (removed after the test, with its containers disconnected)."""
    created = []

    def create(**kwargs: Any) -> Any:
        net = docker_client.networks.create(f"regtest-{uuid.uuid4().hex[:8]}", driver="bridge", labels={TEST_LABEL: "1"},
                                            **kwargs)
        created.append(net)
        return net

    yield create
    for net in created:
        net.reload()
        for container in net.containers:
            try:
                net.disconnect(container, force=True)
            except docker.errors.APIError:
                pass
        net.remove()


@pytest.fixture
def fake_endpoint() -> Iterator[Callable[..., FakeEndpoint]]:
    servers: list[FakeEndpoint] = []

    def start(handle: Callable[[str, str, dict[str, str]], tuple[int, str]]) -> FakeEndpoint:
        servers.append(FakeEndpoint(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def agent(consul: ConsulAgent, docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Agent]:
    """The agent under test (not yet started) with a unique host identity and a loopback address."""
    under_test = Agent(hostname=f"test-{uuid.uuid4().hex[:8]}", ip="127.0.0.10", consul=consul, log_path=tmp_path / "agent.log")
    yield under_test
    under_test.stop()
    print(f"--- agent log ({under_test.log_path}) ---\n{under_test.log()}")


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[[ConsulAgent], Agent]]:
    """Agents under test against a Consul of the test's choosing (e.g. private_consul)."""
    agents: list[Agent] = []

    def make(consul_agent: ConsulAgent) -> Agent:
        agents.append(Agent(hostname=f"test-{uuid.uuid4().hex[:8]}", ip="127.0.0.10", consul=consul_agent,
                            log_path=tmp_path / f"agent-{len(agents)}.log"))
        return agents[-1]

    yield make
    for made in agents:
        made.stop()
        print(f"--- agent log ({made.log_path}) ---\n{made.log()}")
