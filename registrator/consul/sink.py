"""The Consul edge: list the services this host owns, register and deregister them.

Transport, auth and TLS come from python-consul2. Its `agent.service.register` helper lacks fields
we need (several checks, meta, `replace-existing-checks`), so registrations send the documented
JSON through the library's own HTTP client. Every call has a timeout. Writes over plain HTTP or
the unix socket skip requests' per-call work (see `_put`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import consul
import requests
import requests.adapters
import urllib3

from registrator.consul.endpoint import ConsulEndpoint, read_token_file
from registrator.errors import ConfigError
from registrator.metrics import Metrics
from registrator.model import META_HOST, CheckKind, CheckSpec, ServiceSpec
from registrator.unix_socket import UnixSocketAdapter

log = logging.getLogger(__name__)

# python-consul2 reads these in its constructor and lets them override explicit arguments.
_LIBRARY_ENV = ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY", "CONSUL_HTTP_TOKEN")
_env_lock = threading.Lock()
# consul-unix://: requests talks HTTP over the socket through docker-py's adapter, mounted for this scheme.
_UNIX_SCHEME = "http+unix"
_SEVERITY = {"passing": 0, "warning": 1, "critical": 2}


class ConsulError(Exception):
    """A Consul call failed; `transient` says whether trying again later can help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class ConsulReader:
    """The Consul agent's state, read: what `list`, `doctor` and the agent's own looks ask."""

    def __init__(self, endpoint: ConsulEndpoint, metrics: Metrics | None = None) -> None:
        self.endpoint = endpoint
        self._metrics = metrics
        with _without_library_env():
            self._client = consul.Consul(
                # python-consul2 joins host and port as they are: an IPv6 address needs its brackets.
                host="localhost" if endpoint.socket else f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host,
                port=80 if endpoint.socket else endpoint.port,
                scheme=_UNIX_SCHEME if endpoint.socket else endpoint.scheme,
                token=endpoint.token,
                verify=endpoint.verify,
                cert=endpoint.cert,
                timeout=endpoint.timeout,
            )
        # Proxies, .netrc and REQUESTS_CA_BUNDLE from the environment are not for the local agent:
        # a host's egress proxy must never see the ACL token, and the CA comes from CONSUL_CACERT.
        self._client.http.session.trust_env = False
        # Consul's API never redirects; its Go router answers a path with dot segments with a 301 to
        # the cleaned path, which requests would follow with the same PUT, to another service.
        self._client.http.session.max_redirects = 0
        if endpoint.socket:
            self._client.http.session.mount(f"{_UNIX_SCHEME}://", UnixSocketAdapter(f"http+unix://{endpoint.socket}"))
        if endpoint.server_name:
            self._client.http.session.mount("https://", _ServerNameAdapter(endpoint.server_name))
        self._timeout = urllib3.Timeout(connect=endpoint.timeout, read=endpoint.timeout)

    def leader(self) -> str:
        """The cluster leader's address; empty while the cluster has none."""
        with self._errors("status/leader"):
            return str(_expect("status/leader", self._client.status.leader() or "", str))

    def services(self) -> dict[str, ServiceSpec]:
        """Every service registered with the local agent, keyed by ID."""
        with self._errors("agent/services"):
            raw: Mapping[str, Any] = _expect("agent/services", self._client.agent.services() or {}, Mapping)
        return {sid: service_from_agent(_expect("agent/services", entry, Mapping)) for sid, entry in raw.items()}

    def owned_services(self, hostname: str) -> dict[str, ServiceSpec]:
        """Services this host registered, found by their ownership Meta."""
        return {sid: spec for sid, spec in self.services().items() if spec.meta.get(META_HOST) == hostname}

    def service(self, service_id: str) -> ServiceSpec | None:
        """What the local agent holds under this ID now, as its listing shows it; None when it has none."""
        with self._errors("agent/service", service_id):
            raw = self._client.http.get(consul.base.CB.json(), f"/v1/agent/service/{path_segment(service_id)}",
                                        headers=self._headers())
        if isinstance(raw, tuple):  # python-consul2's answer to a 404
            return None
        if not isinstance(raw, Mapping) or raw.get("ID") != service_id:
            raise ConsulError(f"Consul agent/service {service_id}: unexpected answer {str(raw)[:200]}", transient=True)
        return service_from_agent(raw)

    def has_service(self, service_id: str) -> bool:
        """Whether the local agent still knows this service (False on 404)."""
        with self._errors("agent/service", service_id):
            return bool(self._client.http.get(consul.base.CB.bool(), f"/v1/agent/service/{path_segment(service_id)}",
                                              headers=self._headers()))

    def service_health(self) -> dict[str, str]:
        """The worst check status of each local service (services without checks are left out)."""
        statuses: dict[str, list[str]] = {}
        for check in self._agent_checks().values():
            if check.get("ServiceID"):
                statuses.setdefault(str(check["ServiceID"]), []).append(str(check.get("Status") or ""))
        return {service_id: _worst(found) for service_id, found in statuses.items()}

    def catalog(self, name: str = "") -> list[dict[str, Any]]:
        """Every instance in the catalog (or of one service), with its node and worst check status."""
        with self._errors("catalog/services"):
            names = sorted(_expect("catalog/services", self._client.catalog.services()[1], Mapping))
        rows = []
        for service in (n for n in names if not name or n == name):
            with self._errors("health/service", service):
                entries = self._client.health.service(service)[1] or []
            for entry in entries:
                statuses = [str(c.get("Status") or "") for c in entry.get("Checks") or []]
                rows.append({"node": entry["Node"]["Node"], "spec": service_from_agent(entry["Service"]),
                             "status": _worst(statuses)})
        return rows

    def check_states(self) -> dict[str, tuple[str, str]]:
        """Every check on the local agent: ID → (status, output)."""
        return {cid: (str(c.get("Status") or ""), str(c.get("Output") or "")) for cid, c in self._agent_checks().items()}

    def _agent_checks(self) -> Mapping[str, Any]:
        with self._errors("agent/checks"):
            checks: Mapping[str, Any] = _expect("agent/checks", self._client.agent.checks() or {}, Mapping)
        return checks

    def runs_script_checks(self) -> bool | None:
        """Whether the agent accepts script and Docker checks over HTTP; None when it will not say."""
        with self._errors("agent/self"):
            try:
                me = _expect("agent/self", self._client.agent.self() or {}, Mapping)
            except consul.ACLPermissionDenied as exc:
                if _token_unknown(exc):
                    raise
                return None
        return bool((me.get("DebugConfig") or {}).get("EnableRemoteScriptChecks"))

    def version(self) -> str:
        """The Consul agent's version (`/v1/agent/self` Config.Version); reading it needs agent:read."""
        with self._errors("agent/self"):
            me = _expect("agent/self", self._client.agent.self() or {}, Mapping)
        return str((me.get("Config") or {}).get("Version") or "")

    def authorize(self, rights: list[tuple[str, str, str]]) -> list[bool] | None:
        """Whether the token has each (resource, segment, access) right, asked without using it; None
        when the agent has ACLs disabled, so every call is allowed.

        Consul's internal `/v1/internal/acl/authorize` (its UI uses it) answers the same list, in
        order, each with `Allow`; it takes at most 64 at once, and answers 401 when ACLs are disabled.
        """
        body = json.dumps([{"Resource": resource, "Segment": segment, "Access": access} for resource, segment, access in rights])
        with self._errors("internal/acl/authorize"):
            try:
                answer = self._client.http.post(consul.base.CB.json(allow_404=False), "/v1/internal/acl/authorize", data=body,
                                                headers=self._headers())
            except consul.ACLDisabled:
                return None
        if not (isinstance(answer, list) and len(answer) == len(rights)
                and all(isinstance(entry, dict) and isinstance(entry.get("Allow"), bool) for entry in answer)):
            raise ConsulError(f"Consul internal/acl/authorize: unexpected answer {str(answer)[:200]}", transient=False)
        return [entry["Allow"] for entry in answer]

    def reload_token(self) -> bool:
        """Read the token file again (a secrets agent may have rotated the token); True when it holds another token."""
        if not self.endpoint.token_file:
            return False
        try:
            token = read_token_file(self.endpoint.token_file)
        except ConfigError as exc:
            log.warning("%s", exc)
            return False
        if token == self.endpoint.token:
            return False
        self.endpoint = replace(self.endpoint, token=token)
        self._client.token = token
        return True

    def _headers(self) -> dict[str, str]:
        return {"X-Consul-Token": self.endpoint.token} if self.endpoint.token else {}

    @contextmanager
    def _errors(self, call: str, subject: str = "") -> Iterator[None]:
        """Time and count the call, and turn the library's exceptions into ConsulError."""
        started = time.monotonic()
        outcome = "error"
        call_text = f"{call} {subject}" if subject else call
        try:
            yield
            outcome = "ok"
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise self._transport_error(exc, call_text) from exc
        except (consul.ConsulException, ValueError, KeyError) as exc:
            raise self._answer_error(exc, call_text) from exc
        finally:
            if self._metrics is not None:
                self._metrics.inc("registrator_consul_requests_total", call=call, outcome=outcome)
                self._metrics.observe("registrator_consul_request_duration_seconds", time.monotonic() - started, call=call)

    def _transport_error(self, exc: Exception, call_text: str) -> ConsulError:
        """The request did not get an answer: worth a retry, but for a redirect (never followed,
        see __init__; asking again gets the same answer)."""
        where = f"Consul {call_text} at {self.endpoint.url}"
        if isinstance(exc, requests.exceptions.SSLError):
            return ConsulError(f"{where}: TLS failed: {_reason(exc)}", transient=True)
        if isinstance(exc, requests.TooManyRedirects):
            return ConsulError(f"{where}: answered with a redirect; not followed", transient=False)
        return ConsulError(f"{where}: {type(exc).__name__}: {_reason(exc)}", transient=True)

    def _answer_error(self, exc: Exception, call_text: str) -> ConsulError:
        """Consul, or something else on its port, answered otherwise than the call expects."""
        if isinstance(exc, consul.ACLPermissionDenied) and _token_unknown(exc):
            again = "; read again from its file" if self.reload_token() else ""
            return ConsulError(f"Consul {call_text}: the ACL token is not known to Consul (yet){again}: {exc}", transient=True)
        if isinstance(exc, (consul.ACLPermissionDenied, consul.ACLDisabled)):
            return ConsulError(f"Consul {call_text}: permission denied by ACL: {exc}", transient=False)
        if isinstance(exc, (consul.base.BadRequest, consul.base.ClientError)):
            return ConsulError(f"Consul {call_text}: rejected: {exc}", transient=False)
        if isinstance(exc, consul.ConsulException):
            return ConsulError(f"Consul {call_text}: {exc}", transient=True)
        if isinstance(exc, KeyError):  # a header every Consul answer of this call has
            return ConsulError(f"Consul {call_text} at {self.endpoint.url}: the answer has no {exc}", transient=True)
        # not JSON: something else on the port (a proxy's error page); it may be Consul again later
        return ConsulError(f"Consul {call_text} at {self.endpoint.url}: the answer is not JSON: {exc}", transient=True)


class ConsulSink(ConsulReader):
    """The Consul agent, read and written: the reconciler is its only writer."""

    def register(self, spec: ServiceSpec) -> None:
        with self._errors("agent/service/register", spec.id):
            self._put("/v1/agent/service/register", {"replace-existing-checks": "true"}, json.dumps(service_payload(spec)))

    def deregister(self, service_id: str) -> None:
        """Idempotent: an unknown service counts as removed."""
        with self._errors("agent/service/deregister", service_id):
            self._put(f"/v1/agent/service/deregister/{path_segment(service_id)}")

    def maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        """Consul maintenance mode: a critical check that hides the service from DNS while it stays registered."""
        with self._errors("agent/service/maintenance", service_id):
            self._put(f"/v1/agent/service/maintenance/{path_segment(service_id)}",
                      {"enable": "true" if enable else "false", "reason": reason})

    def update_check(self, check_id: str, status: str, output: str) -> None:
        """Set a TTL check's status and output (also resets its TTL)."""
        with self._errors("agent/check/update", check_id):
            self._put(f"/v1/agent/check/update/{path_segment(check_id)}", None, json.dumps({"Status": status, "Output": output}))

    def _put(self, path: str, params: dict[str, str] | None = None, body: str = "") -> None:
        """A write, answered through python-consul2's status rules (404 is not an error: a deregistration is idempotent).

        Every start and stop costs at least one write. Through requests a write cost about 1 ms of
        CPU, three quarters of it requests' per-call work (hooks, cookies, settings merges); on the
        same connection pool it is 0.3 ms (issue 13's profiles). So over plain HTTP and the unix
        socket the request goes straight to the pool requests itself uses: python-consul2 still
        builds the URL and judges the answer. HTTPS keeps the library's whole path, where its TLS
        settings live.
        """
        pool = self._write_pool()
        if pool is None:
            self._client.http.put(consul.base.CB.bool(), path, params=params, data=body, headers=self._headers())
            return
        target = urllib.parse.urlsplit(self._client.http.uri(path, params))
        response = pool.urlopen("PUT", f"{target.path}?{target.query}" if target.query else target.path, body=body.encode(),
                                headers=self._headers(), retries=False, redirect=False, timeout=self._timeout)
        if 300 <= response.status < 400:  # never followed: see the redirect note in __init__
            raise ConsulError(f"Consul answered {path} with a redirect (HTTP {response.status}); not followed", transient=False)
        consul.base.CB.bool()(consul.base.Response(response.status, response.headers, response.data.decode("utf-8", "replace"),
                                                   response.data))

    def _write_pool(self) -> Any:
        """The urllib3 pool requests would send a plain-HTTP or unix-socket request through; None for HTTPS."""
        base = self._client.http.base_uri
        adapter = self._client.http.session.get_adapter(base)
        if isinstance(adapter, UnixSocketAdapter):
            return adapter.pool()
        if self.endpoint.scheme == "http":
            return adapter.poolmanager.connection_from_url(base)
        return None


def _token_unknown(exc: Exception) -> bool:
    """Consul does not know the token (yet: not replicated, written after boot; or rotated away), as
    against a token it knows that lacks a right."""
    return "ACL not found" in str(exc)


def _expect(call: str, answer: object, kind: type) -> Any:
    """The answer, if it has the shape Consul gives it; else whatever answered is not Consul (yet)."""
    if not isinstance(answer, kind):
        raise ConsulError(f"Consul {call}: unexpected answer {str(answer)[:200]!r}", transient=True)
    return answer


def path_segment(text: str) -> str:
    """A service or check ID for a URL path, where it must name exactly that ID.

    IDs come from containers. python-consul2 percent-escapes every path character but '/' and ':',
    so what it cannot keep in one segment is refused: a '/' (and Consul decodes an escaped one
    before its router cleans the path), and the dot segments '.' and '..'.
    """
    if text in ("", ".", "..") or "/" in text:
        raise ConsulError(f"refusing to send ID {text!r} in a URL path: Consul would act on another ID", transient=False)
    return text


def _worst(statuses: list[str]) -> str:
    """critical over warning over passing; "" for no checks."""
    return max(statuses, key=lambda s: _SEVERITY.get(s, 0), default="")


def _reason(exc: Exception) -> str:
    """The innermost cause of a requests error, which says what actually went wrong."""
    while exc.__context__ is not None and isinstance(exc.__context__, Exception):
        exc = exc.__context__
    text = str(exc)
    return text[:300]


class _ServerNameAdapter(requests.adapters.HTTPAdapter):
    """Verify the server certificate against CONSUL_TLS_SERVER_NAME (and send it as SNI) instead of the URL host."""

    def __init__(self, server_name: str) -> None:
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self._server_name, assert_hostname=self._server_name)
        super().init_poolmanager(*args, **kwargs)


def service_payload(spec: ServiceSpec) -> dict[str, Any]:
    """The `/v1/agent/service/register` JSON body for a spec."""
    return {
        "ID": spec.id,
        "Name": spec.name,
        "Address": spec.address,
        "Port": spec.port,
        "Tags": list(spec.tags),
        "Meta": dict(spec.meta),
        "Checks": [{"CheckID": check.check_id, **check_payload(check)} for check in spec.checks],
        **({"TaggedAddresses": {tag: {"Address": address, "Port": port} for tag, address, port in spec.tagged_addresses}}
           if spec.tagged_addresses else {}),
    }


_TARGET_FIELD = {CheckKind.HTTP: "HTTP", CheckKind.HTTPS: "HTTP", CheckKind.TCP: "TCP", CheckKind.UDP: "UDP",
                 CheckKind.GRPC: "GRPC"}


# Sent when the check sets them (False and 0 included), in Consul's documented order.
_OPTIONAL_FIELDS = (
    ("Method", "method"), ("TTL", "ttl"), ("DockerContainerID", "docker_container_id"), ("Args", "args"),
    ("TLSSkipVerify", "tls_skip_verify"), ("TLSServerName", "tls_server_name"), ("Interval", "interval"), ("Timeout", "timeout"),
    ("Status", "initial_status"), ("DeregisterCriticalServiceAfter", "deregister_critical_after"),
    ("SuccessBeforePassing", "success_before_passing"), ("FailuresBeforeCritical", "failures_before_critical"),
    ("Notes", "notes"),
)


def check_payload(check: CheckSpec) -> dict[str, Any]:
    """Consul's documented JSON for a check, but its ID: the key for that depends on where it goes
    (`CheckID` in a service registration). A setting left to Consul's default is left out."""
    payload: dict[str, Any] = {"Name": check.name}
    if check.kind in _TARGET_FIELD:
        payload[_TARGET_FIELD[check.kind]] = check.target
    if check.headers:
        payload["Header"] = {name: list(values) for name, values in check.headers}
    if check.kind is CheckKind.GRPC:
        payload["GRPCUseTLS"] = check.grpc_use_tls
    for field, attribute in _OPTIONAL_FIELDS:
        value = getattr(check, attribute)
        if value not in ("", None, ()):
            payload[field] = list(value) if isinstance(value, tuple) else value
    return payload


def service_from_agent(entry: Mapping[str, Any]) -> ServiceSpec:
    """An entry of `/v1/agent/services`, normalised so it compares equal to the spec that made it."""
    return ServiceSpec(
        id=str(entry.get("ID") or ""),
        name=str(entry.get("Service") or ""),
        address=str(entry.get("Address") or ""),
        port=int(entry.get("Port") or 0),
        tags=tuple(entry.get("Tags") or ()),
        meta=MappingProxyType(dict(entry.get("Meta") or {})),
    )


@contextmanager
def _without_library_env() -> Iterator[None]:
    """Hide the CONSUL_* variables while python-consul2's constructor runs.

    We resolve them ourselves (config.consul_endpoint) with registrator's precedence; the library
    would otherwise let them silently override the registry URI, or fail on forms it cannot parse.
    """
    with _env_lock:
        saved = {name: os.environ.pop(name) for name in _LIBRARY_ENV if name in os.environ}
        try:
            yield
        finally:
            os.environ.update(saved)
