from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from registrator.metrics import COUNTERS, GAUGES, Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render()[0].decode()) for s in family.samples}


def test_unlabelled_families_start_at_zero_and_labelled_ones_empty():
    samples = _samples(Metrics())
    for name, (_, labels) in {**COUNTERS, **GAUGES}.items():
        assert ((name, ()) in samples) is (not labels), name
    assert not any(name.startswith("registrator_events") for name, _ in samples)


def test_counts_gauges_and_summaries_keep_their_names_and_labels():
    metrics = Metrics()
    metrics.inc("registrator_events_total", action="start")
    metrics.inc("registrator_events_total", action="start")
    metrics.inc("registrator_consul_requests_total", call="agent/service/register", outcome="ok")
    metrics.observe("registrator_consul_request_duration_seconds", 0.25, call="agent/services")
    metrics.set("registrator_services_owned", 7)

    samples = _samples(metrics)
    assert samples[("registrator_events_total", (("action", "start"),))] == 2
    assert samples[("registrator_consul_requests_total", (("call", "agent/service/register"), ("outcome", "ok")))] == 1
    assert samples[("registrator_consul_request_duration_seconds_count", (("call", "agent/services"),))] == 1
    assert samples[("registrator_consul_request_duration_seconds_sum", (("call", "agent/services"),))] == 0.25
    assert samples[("registrator_services_owned", ())] == 7
    assert metrics.value("registrator_events_total", action="start") == 2
    assert metrics.value("registrator_consul_request_duration_seconds", call="agent/services") == 1
    assert metrics.value("registrator_events_total", action="die") == 0


def test_the_standard_collectors_are_there_and_no_created_series():
    names = {name for name, _ in _samples(Metrics())}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= names
    assert any(name.startswith("python_gc_") for name in names)
    assert not any(name.endswith("_created") for name in names)


def test_each_instance_counts_on_its_own():
    first, second = Metrics(), Metrics()
    first.inc("registrator_resyncs_total")
    assert (first.value("registrator_resyncs_total"), second.value("registrator_resyncs_total")) == (1, 0)


PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus sends when it scrapes


def test_the_format_is_the_one_the_scraper_asks_for():
    metrics = Metrics()
    assert metrics.render("")[1] == "text/plain; version=0.0.4; charset=utf-8"
    assert metrics.render("*/*")[1] == "text/plain; version=0.0.4; charset=utf-8"
    body, content_type = metrics.render(PROMETHEUS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n") and b"registrator_resyncs_total 0.0" in body
