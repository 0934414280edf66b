"""Counters, gauges and summaries in the Prometheus text format, without a client library.

Thread-safe: the event pump, the workers and the HTTP server touch it concurrently.
"""

from __future__ import annotations

import threading
from collections import defaultdict

Labels = tuple[tuple[str, str], ...]

# name: (type, help); families listed in LABELLED have labels and start empty, the rest start at 0.
FAMILIES: dict[str, tuple[str, str]] = {
    "registrator_events_total": ("counter", "Docker events received, by action."),
    "registrator_registrations_total": ("counter", "Services registered or updated in Consul."),
    "registrator_deregistrations_total": ("counter", "Services deregistered from Consul."),
    "registrator_reconciles_total": ("counter", "Per-container reconciles run."),
    "registrator_reconcile_duration_seconds": ("summary", "Time to reconcile one container."),
    "registrator_reconcile_writes_total": ("counter", "Consul writes made by reconciles (registrations and deregistrations)."),
    "registrator_resyncs_total": ("counter", "Full comparisons of Docker and Consul."),
    "registrator_docker_requests_total": ("counter", "Docker API calls, by call (inspect, list, events)."),
    "registrator_consul_requests_total": ("counter", "Consul HTTP calls, by call and outcome (ok or error)."),
    "registrator_consul_request_duration_seconds": ("summary", "Consul HTTP call latency, by call."),
    "registrator_services_owned": ("gauge", "Services this host has registered in Consul."),
    "registrator_last_reconcile_timestamp_seconds": ("gauge", "Unix time of the last finished reconcile."),
}
LABELLED = {"registrator_events_total", "registrator_docker_requests_total", "registrator_consul_requests_total",
            "registrator_consul_request_duration_seconds"}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._sums: dict[str, dict[Labels, float]] = defaultdict(dict)
        for name, (kind, _) in FAMILIES.items():
            if kind != "summary" and name not in LABELLED:
                self._values[name][()] = 0.0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][_labels(labels)] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + 1
            self._sums[name][key] = self._sums[name].get(key, 0.0) + seconds

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(_labels(labels), 0.0)

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, (kind, help_text) in FAMILIES.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                for labels, value in sorted(self._values.get(name, {}).items()):
                    if kind == "summary":
                        lines.append(f"{name}_count{_format(labels)} {value:g}")
                        lines.append(f"{name}_sum{_format(labels)} {self._sums[name].get(labels, 0.0):.6f}")
                    else:
                        lines.append(f"{name}{_format(labels)} {value:g}")
        return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _format(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, escaped, strict=True)) + "}"
