"""The agent's Prometheus metrics, through prometheus_client.

Each `Metrics` owns its registry (commands and tests make several in one process), with the
standard process, platform and garbage-collector collectors beside the agent's own families.
Callers name a family and its labels; the names and labels are the exposition's.
"""

from __future__ import annotations

from typing import TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, PlatformCollector, ProcessCollector, Summary
from prometheus_client.exposition import choose_encoder

# `*_created` series double every counter and summary for a timestamp no dashboard of ours reads.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# name: (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "registrator_events_total": ("Docker events received, by action.", ("action",)),
    "registrator_registrations_total": ("Services registered or updated in Consul.", ()),
    "registrator_deregistrations_total": ("Services deregistered from Consul.", ()),
    "registrator_reconciles_total": ("Per-container reconciles run.", ()),
    "registrator_reconcile_writes_total": ("Consul writes made by reconciles (registrations and deregistrations).", ()),
    "registrator_resyncs_total": ("Full comparisons of Docker and Consul.", ()),
    "registrator_docker_requests_total": ("Docker API calls, by call (inspect, list, events).", ("call",)),
    "registrator_consul_requests_total": ("Consul HTTP calls, by call and outcome (ok or error).", ("call", "outcome")),
    "registrator_loop_restarts_total": ("Background loops restarted after an unexpected error, by loop.", ("loop",)),
    "registrator_other_agent_writes_total": ("This host's services found written by another agent with the same host "
                                             "identity.", ()),
}
SUMMARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "registrator_reconcile_duration_seconds": ("Time to reconcile one container.", ()),
    "registrator_consul_request_duration_seconds": ("Consul HTTP call latency, by call.", ("call",)),
}
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "registrator_services_owned": ("Services this host has registered in Consul.", ()),
    "registrator_last_reconcile_timestamp_seconds": ("Unix time of the last finished reconcile.", ()),
    "registrator_docker_events_connected": ("1 while the agent follows Docker's events stream.", ()),
    "registrator_retrying_containers": ("Containers waiting to be tried again after a failure.", ()),
}

Family = TypeVar("Family", Counter, Gauge, Summary)


class Metrics:
    """Thread-safe (prometheus_client's own locks): the event pump, the workers and the HTTP server share it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self._counters = {name: Counter(name, text, labels, registry=self.registry) for name, (text, labels) in COUNTERS.items()}
        self._summaries = {name: Summary(name, text, labels, registry=self.registry)
                           for name, (text, labels) in SUMMARIES.items()}
        self._gauges = {name: Gauge(name, text, labels, registry=self.registry) for name, (text, labels) in GAUGES.items()}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        _series(self._counters[name], labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        _series(self._gauges[name], labels).set(value)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        _series(self._summaries[name], labels).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's value, a summary's count; 0 for a series not seen yet."""
        sample = f"{name}_count" if name in SUMMARIES else name
        return self.registry.get_sample_value(sample, {k: str(v) for k, v in labels.items()}) or 0.0

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition and its content type, in the format the scraper's Accept asks for, as
        prometheus_client's own server answers: the 0.0.4 text format unless OpenMetrics is asked for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def _series(family: Family, labels: dict[str, str]) -> Family:
    return family.labels(**{k: str(v) for k, v in labels.items()}) if labels else family
