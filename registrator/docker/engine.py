"""The one door to the Docker engine: the read-only calls the agent makes, errors mapped once.

Nothing else in the package holds docker-py's client, so `READ_ONLY` is every call the agent can
make to the engine (a test holds the package to it). The client is made on first use, outside any
lock: connecting asks the engine for its API version, and a hung engine must not hold up a thread
that only wanted the lock.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.parse
from typing import Any

import docker
import docker.errors
import requests
import urllib3
from docker.transport import UnixHTTPAdapter

from registrator.unix_socket import UnixSocketAdapter

READ_ONLY = ("inspect_container", "containers", "events", "info", "ping")


class DockerUnavailable(Exception):
    """The Docker daemon could not be reached or answered with a server error: always worth a retry."""

    transient = True


class NotReadOnly(Exception):
    """A call that could change something on the engine was asked for."""


class Engine:
    """docker-py's client, from DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH or the local socket."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()  # guards `_client` only, never held across a call

    def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` of docker-py's client; `what` names the call in errors. A missing container
        raises docker.errors.NotFound (vanishing is normal: the caller decides), any other failure
        DockerUnavailable."""
        if method not in READ_ONLY:
            raise NotReadOnly(f"docker {method}: not a read-only call")
        try:
            return getattr(self._connected(), method)(*args, **kwargs)
        except docker.errors.NotFound:
            raise
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise DockerUnavailable(f"{what}: {exc}") from exc

    def stream(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """A streaming `call` (events), whose iteration ends when the engine closes it. docker-py
        reads an error answer only when iterated, and its stream then ends as if closed: the answer's
        status is checked here, so an engine that refuses says why."""
        stream = self.call(what, method, *args, **kwargs)
        response = getattr(stream, "_response", None)  # docker-py's CancellableStream keeps it
        if response is not None and response.status_code >= 400:
            stream.close()
            raise DockerUnavailable(f"{what}: HTTP {response.status_code} {response.text.strip()[:300]}")
        return stream

    def api_version(self) -> str:
        """The API version negotiated with the engine (connecting asks for it)."""
        return str(self._connected().api_version)

    def socket_transport(self) -> bool:
        """Whether inspects go straight to the unix socket's connection pool (`inspect`)."""
        return isinstance(self._connected().adapters.get("http+docker://"), UnixSocketAdapter)

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """`docker inspect`: the raw document, or None once the container is gone."""
        client = self._connected()
        adapter = client.adapters.get("http+docker://")
        if isinstance(adapter, UnixSocketAdapter):
            return _inspect_over_socket(client, adapter, container_id)
        try:
            return dict(self.call(f"docker inspect {container_id[:12]}", "inspect_container", container_id))
        except docker.errors.NotFound:
            return None

    def _connected(self) -> docker.APIClient:
        with self._lock:
            if self._client is not None:
                return self._client
        client = _connect(self._timeout)
        with self._lock:
            if self._client is None:
                self._client = client
                return client
            winner = self._client
        client.close()  # another thread connected meanwhile
        return winner


def _connect(timeout: float) -> docker.APIClient:
    address = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    path = address.removeprefix("unix://") if address.startswith("unix://") else ""
    if path and os.path.exists(path) and not stat.S_ISSOCK(os.stat(path).st_mode):
        raise DockerUnavailable(f"cannot connect to Docker at {address}: {path} is not a socket")
    try:
        client = docker.APIClient(**docker.utils.kwargs_from_env(), timeout=timeout, version="auto")
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(f"cannot connect to Docker: {exc}") from exc
    # No HTTP(S)_PROXY or .netrc for the Docker API: a host's egress proxy has no business between
    # the agent and its own engine, and reading the environment on every request cost a third of
    # each inspect's CPU.
    client.trust_env = False
    adapter = client.adapters.get("http+docker://")
    if isinstance(adapter, UnixHTTPAdapter):
        client.mount("http+docker://", UnixSocketAdapter(f"http+unix://{adapter.socket_path}", timeout=adapter.timeout,
                                                         max_pool_size=adapter.max_pool_size))
    return client


def _inspect_over_socket(client: docker.APIClient, adapter: UnixSocketAdapter, container_id: str) -> dict[str, Any] | None:
    """`docker inspect` over the engine's unix socket, straight through docker-py's own connection pool.

    An inspect is on the path of every start and every resync look. Through requests it cost about
    1.2 ms of CPU, most of it requests' per-call work (hooks, cookies, settings merges), against
    0.35 ms on the same pool (issue 13's profiles). docker-py still builds the URL (its API version
    and escaping) and owns the connections; TCP and TLS engines keep docker-py's whole path.
    """
    pool = adapter.pool()
    target = urllib.parse.urlsplit(client._url("/containers/{0}/json", container_id))
    try:
        response = pool.urlopen("GET", target.path, headers={"User-Agent": client.headers.get("User-Agent", "")}, retries=False,
                                redirect=False, timeout=urllib3.Timeout(connect=client.timeout, read=client.timeout))
    except urllib3.exceptions.HTTPError as exc:
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: {type(exc).__name__}: {exc}") from exc
    if response.status == 404:
        return None
    if response.status != 200:
        reason = response.data.decode("utf-8", "replace").strip()[:300]
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: HTTP {response.status} {reason}")
    try:
        raw = json.loads(response.data)
    except ValueError as exc:
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise DockerUnavailable(f"docker inspect {container_id[:12]}: not a JSON object")
    return raw
