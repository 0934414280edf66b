from __future__ import annotations

import pytest

from registrator.docker.snapshot import snapshot_from_inspect
from registrator.model import ContainerPort, PortBinding


def test_bridge_container_with_a_published_port(inspect_json):
    snap = snapshot_from_inspect(inspect_json("bridge"))

    assert snap.name == "fx-bridge"
    assert snap.image.startswith("registrator-test/http:")
    assert snap.running
    assert snap.env["SERVICE_NAME"] == "web"
    assert snap.labels["SERVICE_TAGS"] == "a,b"
    [port] = snap.ports
    assert (port.port, port.protocol) == (80, "tcp")
    assert [b.host_ip for b in port.bindings] == ["0.0.0.0", "::"]


def test_every_exposed_port_is_listed_sorted_with_all_its_bindings(inspect_json):
    snap = snapshot_from_inspect(inspect_json("multi"))

    assert [(p.port, p.protocol, len(p.bindings)) for p in snap.ports] == [
        (53, "udp", 2), (80, "tcp", 2), (8080, "tcp", 0), (9000, "tcp", 1),
    ]
    assert snap.ports[-1].bindings == (PortBinding("127.0.0.1", 32768),)


def test_stopped_container_is_not_running(inspect_json):
    assert not snapshot_from_inspect(inspect_json("stopped")).running


def test_unusual_inspect_documents_do_not_break_parsing():
    snap = snapshot_from_inspect({
        "Id": "abc",
        "Name": None,
        "Config": {"Env": ["NOEQUALS", "A=1=2", "EMPTY="], "Labels": None, "ExposedPorts": {"bogus/tcp": {}, "53": {}}},
        "NetworkSettings": {"Ports": {"53/tcp": [{"HostIp": "", "HostPort": ""}, None, {"HostPort": "1053"}]}},
        "State": None,
    })

    assert snap.name == "" and not snap.running
    assert dict(snap.env) == {"A": "1=2", "EMPTY": ""}
    assert dict(snap.labels) == {}
    assert snap.ports == (ContainerPort(53, "tcp", (PortBinding("", 1053),)),)


def test_restarting_container_counts_as_not_running():
    snap = snapshot_from_inspect({"Id": "abc", "State": {"Running": True, "Restarting": True}})
    assert not snap.running


@pytest.mark.parametrize(
    ("stop_signal", "number"),
    [
        ("SIGQUIT", 3), ("quit", 3), ("9", 9), ("SIGRTMIN+3", 37), ("RTMIN+3", 37), ("sigrtmin+1", 35), ("SIGRTMIN", 34),
        ("RTMIN+15", 49), ("SIGRTMAX-14", 50), ("SIGRTMAX-1", 63), ("SIGRTMAX", 64), ("64", 64),
        (None, 15), ("", 15), ("SIGBOGUS", 15), ("SIGRTMIN+16", 15), ("RTMAX-15", 15), ("RTMIN+03", 15), ("0", 15), ("65", 15),
        ("٣", 15), ("３", 15), ("9" * 5000, 15),
    ],
    ids=["name", "short-name", "number", "rtmin-plus", "rtmin-plus-short", "rtmin-plus-lower", "rtmin", "rtmin-last",
         "rtmax-minus-first", "rtmax-minus", "rtmax", "largest-number", "unset", "empty", "unknown", "rtmin-past-docker",
         "rtmax-past-docker", "leading-zero", "zero", "past-rtmax", "arabic-indic-digit", "fullwidth-digit", "5000-digits"],
)
def test_stop_signal_in_dockers_forms_and_sigterm_otherwise(stop_signal, number):
    assert snapshot_from_inspect({"Id": "abc", "Config": {"StopSignal": stop_signal}}).stop_signal == number


def test_port_numbers_are_ascii_digits_and_a_huge_one_is_just_ignored():
    snap = snapshot_from_inspect({
        "Id": "abc",
        "Config": {"ExposedPorts": {"٨٠/tcp": {}, "9" * 5000 + "/tcp": {}, "81/tcp": {}}},
        "NetworkSettings": {"Ports": {"81/tcp": [{"HostPort": "٨٠٨٠"}, {"HostPort": "9" * 5000}, {"HostPort": "8081"}]}},
    })
    assert snap.ports == (ContainerPort(81, "tcp", (PortBinding("", 8081),)),)


@pytest.mark.parametrize(
    ("started_at", "epoch"),
    [("2026-11-25T23:32:37.5Z", 1795649557.5), ("2026-11-25T23:32:37+01:00", 1795645957.0), ("2026-13-45T99:99:99Z", 0.0),
     ("٢٠٢٦-11-25T23:32:37Z", 0.0), ("", 0.0)],
    ids=["utc-fraction", "offset", "out-of-range", "arabic-indic-digits", "unset"],
)
def test_start_time_is_read_or_zero(started_at, epoch):
    assert snapshot_from_inspect({"Id": "abc", "State": {"StartedAt": started_at}}).started_at == epoch
