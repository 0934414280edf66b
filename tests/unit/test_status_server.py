"""/healthz and /metrics: an answer for every question, whatever the health probe does."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from registrator.metrics import Metrics
from registrator.ops.status_server import StatusServer


def healthz(health) -> tuple[int, dict]:
    with socket.socket() as probe:  # a free port (--listen takes no port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = StatusServer(f"127.0.0.1:{port}", Metrics(), health)
    server.start()
    try:
        with urllib.request.urlopen(f"http://{server.address}/healthz", timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    finally:
        server.stop()


def test_healthz_is_200_with_the_details_when_healthy_and_503_when_not():
    assert healthz(lambda: (True, {"ready": True})) == (200, {"ready": True})
    assert healthz(lambda: (False, {"ready": False})) == (503, {"ready": False})


def test_a_health_probe_that_fails_unexpectedly_is_an_unhealthy_answer_not_an_empty_reply():
    def broken() -> tuple[bool, dict]:
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    assert healthz(broken) == (503, {"error": "ValueError: Expecting value: line 1 column 1 (char 0)"})
