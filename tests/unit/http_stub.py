"""A scripted HTTP server on loopback TCP or a unix socket: records each request, answers by path.

For the edges' own transport code (status codes, redirects, what goes on the wire); what Docker and
Consul really answer is covered against the real ones in tests/integration.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    """`answers` maps a path prefix to (status, body, headers); anything else is a 404."""

    answers: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    address: str = ""  # host:port, or the socket path

    def answer(self, prefix: str, status: int, body: bytes = b"", **headers: str) -> None:
        self.answers[prefix] = (status, body, headers)

    def _respond(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        self.seen.append(Seen(handler.command, handler.path, dict(handler.headers), handler.rfile.read(length)))
        prefix = max((p for p in self.answers if handler.path.startswith(p)), key=len, default=None)
        status, body, headers = self.answers[prefix] if prefix is not None else (404, b"not found", {})
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)


def _handler(stub: Stub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real servers

        def do_GET(self) -> None:
            stub._respond(self)

        do_PUT = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

        def address_string(self) -> str:
            return "stub"

    return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextmanager
def serving(socket_path: str = "", host: str = "127.0.0.1") -> Iterator[Stub]:
    """A stub on a free loopback port (IPv4, or IPv6 with host="::1"), or on `socket_path` when given."""
    stub = Stub()
    server: socketserver.BaseServer
    if socket_path:
        server = _UnixServer(socket_path, _handler(stub))
        stub.address = socket_path
    else:
        server = (_V6Server if ":" in host else http.server.ThreadingHTTPServer)((host, 0), _handler(stub))
        stub.address = f"[{host}]:{server.server_address[1]}" if ":" in host else f"{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
