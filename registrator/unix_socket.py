"""HTTP over a unix socket (the Docker engine's, or Consul's with consul-unix://) through one
connection pool per socket.

docker-py's adapter keys its pools by the whole request URL, so every container's inspect opened a
new connection and pushed an older pool (and its open connection) out of a 25-pool cache: a
connect and a close per call. One pool keeps the connections alive between calls.
"""

from __future__ import annotations

from typing import Any

from docker.transport import UnixHTTPAdapter


class UnixSocketAdapter(UnixHTTPAdapter):  # type: ignore[misc]
    def get_connection(self, url: str, proxies: Any = None) -> Any:
        return self.pool()

    def pool(self) -> Any:
        """The socket's one urllib3 connection pool (a hot call may use it without requests)."""
        return super().get_connection(f"http+unix://{self.socket_path}")
