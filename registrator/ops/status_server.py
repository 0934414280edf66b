"""`--listen`: `/healthz` (Docker and Consul reachable, last reconcile age) and `/metrics` (Prometheus)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

from registrator.metrics import Metrics


def parse_listen(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[v6]:PORT`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {address!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


class StatusServer:
    def __init__(self, address: str, metrics: Metrics, health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        host, port = parse_listen(address)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/metrics":
                    self._send(200, *metrics.render(self.headers.get("Accept", "")))
                elif self.path == "/healthz":
                    try:
                        ok, details = health()
                    except Exception as exc:  # noqa: BLE001 - an unhealthy answer, never an empty reply
                        ok, details = False, {"error": f"{type(exc).__name__}: {exc}"}
                    self._send(200 if ok else 503, json.dumps(details).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.address = f"{host}:{self._server.server_address[1]}"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="status", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
