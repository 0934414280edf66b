from __future__ import annotations

import pytest

from registrator.hostip import HostIPError, check_method, default_route_interface, detect_host_ip

HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


def test_default_route_with_the_lowest_metric_wins():
    table = HEADER + (
        "eth1\t00000000\t010200C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    assert default_route_interface(table) == "eth0"


def test_no_default_route():
    assert default_route_interface(HEADER + "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n") is None


def test_host_ip_is_read_from_the_default_route_interface(tmp_path):
    routes = tmp_path / "route"
    routes.write_text(HEADER + "lo\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert detect_host_ip(str(routes)) == "127.0.0.1"


def test_missing_default_route_is_a_clear_error(tmp_path):
    routes = tmp_path / "route"
    routes.write_text(HEADER)
    with pytest.raises(HostIPError, match="no default route"):
        detect_host_ip(str(routes))


@pytest.mark.parametrize("method", ["route", "ec2", "docker", "interface:eth0"])
def test_ip_from_methods(method):
    assert check_method(method) == method


@pytest.mark.parametrize("method", ["", "dns", "interface:", "ec2x"])
def test_unknown_ip_from_methods_are_refused(method):
    with pytest.raises(HostIPError, match="--ip-from"):
        check_method(method)
