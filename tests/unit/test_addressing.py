"""The address precedence, one row per rule (see registrator/addressing.py)."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from registrator.mapping.services import desired_services
from registrator.mapping.settings import MappingSettings
from registrator.model import ContainerPort, ContainerSnapshot, NetworkAttachment, PortBinding
from tests.settings import mapping_settings, with_ip

SETTINGS = mapping_settings()
NETWORKS = (NetworkAttachment("back", "10.2.0.3", "fd00::3"), NetworkAttachment("front", "10.1.0.3"))
PUBLISHED = ContainerPort(80, "tcp", (PortBinding("0.0.0.0", 32080), PortBinding("::", 32080)))
UNPUBLISHED = ContainerPort(80, "tcp")


def container(port: ContainerPort = PUBLISHED, env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
              **fields: object) -> ContainerSnapshot:
    fields.setdefault("networks", NETWORKS)
    return ContainerSnapshot(id="c" * 64, name="web", image="web", running=True, env=MappingProxyType(env or {}),
                             labels=MappingProxyType(labels or {}), ports=(port,), **fields)


def targets(snapshot: ContainerSnapshot, settings: MappingSettings = SETTINGS) -> list[tuple[str, int]]:
    return [(s.address, s.port) for s in desired_services(snapshot, settings).services.values()]


@pytest.mark.parametrize(
    ("snapshot", "settings", "expected"),
    [
        (container(env={"SERVICE_IP": "192.0.2.7"}), replace(SETTINGS, internal=True, network="front"), [("192.0.2.7", 32080)]),
        (container(UNPUBLISHED, env={"SERVICE_80_IP": "192.0.2.7"}), SETTINGS, [("192.0.2.7", 80)]),
        (container(env={"SERVICE_NETWORK": "front"}, labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip"),
         [("10.1.0.3", 80)]),
        (container(labels={"ip": "192.0.2.9/24"}), replace(SETTINGS, use_ip_from_label="ip", network="front"),
         [("192.0.2.9", 32080)]),
        (container(), replace(SETTINGS, network="front", internal=True), [("10.1.0.3", 80)]),
        (container(), replace(SETTINGS, network="elsewhere"), [("10.0.0.5", 32080)]),
        (container(UNPUBLISHED, task_ip="10.9.0.4"), SETTINGS, [("10.9.0.4", 80)]),
        (container(UNPUBLISHED), replace(SETTINGS, internal=True), [("10.2.0.3", 80)]),
        (container(UNPUBLISHED, ip="172.17.0.2"), replace(SETTINGS, internal=True), [("172.17.0.2", 80)]),
        (container(), with_ip(SETTINGS, "10.7.7.7"), [("10.7.7.7", 32080)]),
        (container(), SETTINGS, [("10.0.0.5", 32080)]),
        (container(UNPUBLISHED), SETTINGS, []),
        (container(UNPUBLISHED, labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip"), []),
        (container(UNPUBLISHED, labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip", internal=True),
         [("192.0.2.9", 80)]),
        (container(labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip", internal=True), [("192.0.2.9", 80)]),
        (container(networks=(NetworkAttachment("front"),)), replace(SETTINGS, network="front"), [("10.0.0.5", 32080)]),
    ],
    ids=["service-ip-first", "service-ip-unpublished", "service-network-before-label", "label-before-global-network",
         "global-network-before-internal", "global-network-not-attached", "awsvpc-task", "internal-first-network-by-name",
         "internal-default-bridge", "ip-flag", "detected-host-ip", "unreachable", "label-ip-unpublished",
         "label-ip-unpublished-internal", "label-ip-published-internal", "global-network-without-address"],
)
def test_precedence(snapshot, settings, expected):
    assert targets(snapshot, settings) == expected


def test_unreachable_ports_are_explained_in_notes():
    assert "no reachable port" in " ".join(desired_services(container(UNPUBLISHED), SETTINGS).notes)


def test_missing_chosen_network_is_a_warning_and_no_service():
    desired = desired_services(container(env={"SERVICE_NETWORK": "gone"}), SETTINGS)
    assert desired.services == {}
    assert "env SERVICE_NETWORK: the container has no address on network 'gone'" in " ".join(desired.warnings)


def test_invalid_service_ip_is_warned_about_and_the_next_rule_applies():
    desired = desired_services(container(env={"SERVICE_IP": "not-an-ip"}), SETTINGS)
    assert [(s.address, s.port) for s in desired.services.values()] == [("10.0.0.5", 32080)]
    assert "'not-an-ip' is not an IP address" in " ".join(desired.warnings)


@pytest.mark.parametrize("label", ["not-an-ip", "not-an-ip/24", "10.0.0.256", "١٠.٠.٠.١"])
def test_a_label_that_is_not_an_ip_is_warned_about_and_the_next_rule_applies(label):
    desired = desired_services(container(labels={"ip": label}), replace(SETTINGS, use_ip_from_label="ip", network="front"))
    assert [(s.address, s.port) for s in desired.services.values()] == [("10.1.0.3", 80)]
    assert f"label ip: {label.strip()!r} is not an IP address; -useIpFromLabel ignored for this container" in desired.warnings


def test_ipv6_family_and_tagged_addresses():
    [spec] = desired_services(container(env={"SERVICE_NETWORK": "back", "SERVICE_IP_FAMILY": "ipv6"}), SETTINGS).services.values()
    assert spec.address == "fd00::3"
    assert spec.tagged_addresses == (("lan_ipv4", "10.2.0.3", 80), ("lan_ipv6", "fd00::3", 80))
    [spec] = desired_services(container(env={"SERVICE_NETWORK": "back"}), SETTINGS).services.values()
    assert spec.address == "10.2.0.3"


def test_dual_stack_bindings_register_once_and_tag_the_host_ipv6_when_known():
    [spec] = desired_services(container(), replace(SETTINGS, host_ipv6="2001:db8::5")).services.values()
    assert (spec.address, spec.port) == ("10.0.0.5", 32080)
    assert spec.tagged_addresses == (("lan_ipv4", "10.0.0.5", 32080), ("lan_ipv6", "2001:db8::5", 32080))


def test_dual_stack_bindings_on_different_host_ports_are_one_service():
    port = ContainerPort(80, "tcp", (PortBinding("0.0.0.0", 32947), PortBinding("::", 32946)))
    assert targets(container(port)) == [("10.0.0.5", 32947)]
    [spec] = desired_services(container(port), replace(SETTINGS, host_ipv6="2001:db8::5")).services.values()
    assert spec.tagged_addresses == (("lan_ipv4", "10.0.0.5", 32947), ("lan_ipv6", "2001:db8::5", 32946))


def test_a_binding_to_a_specific_ipv6_address_registers_that_address():
    port = ContainerPort(80, "tcp", (PortBinding("2001:db8::9", 8080),))
    assert targets(container(port)) == [("2001:db8::9", 8080)]


def test_network_keys_do_not_become_meta():
    [spec] = desired_services(container(env={"SERVICE_NETWORK": "front", "SERVICE_IP_FAMILY": "ipv4"}),
                              SETTINGS).services.values()
    assert not {"network", "ip_family", "ip"} & set(spec.meta)


ECS = {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:r:1:task/c/abc", "com.amazonaws.ecs.container-name": "lookupd",
       "com.amazonaws.ecs.task-definition-family": "nsq", "com.amazonaws.ecs.task-definition-version": "3",
       "com.amazonaws.ecs.cluster": "prod"}


@pytest.mark.parametrize(("ecs_name", "ecs", "name"), [("container", True, "lookupd"), ("family", True, "nsq"),
                                                       ("image", True, "web"), ("container", False, "web")])
def test_ecs_default_names(ecs_name, ecs, name):
    [spec] = desired_services(container(labels=ECS), replace(SETTINGS, ecs_name=ecs_name, ecs=ecs)).services.values()
    assert spec.name == name


def test_ecs_meta_and_service_name_still_wins():
    [spec] = desired_services(container(labels={**ECS, "SERVICE_NAME": "custom"}), SETTINGS).services.values()
    assert spec.name == "custom"
    assert {k: v for k, v in spec.meta.items() if k.startswith("ecs_")} == {
        "ecs_cluster": "prod", "ecs_task_arn": "arn:aws:ecs:r:1:task/c/abc", "ecs_task_family": "nsq",
        "ecs_task_revision": "3", "ecs_container": "lookupd"}


@pytest.mark.parametrize("networks",
                         [(NetworkAttachment("front", "10.1.0.3"),), (NetworkAttachment("back", "10.2.0.3", "fd00::3"),)],
                         ids=["ipv4-only", "dual-stack"])
def test_an_internal_address_is_explained_by_its_rule_and_tagged_only_when_dual_stack(networks):
    desired = desired_services(container(UNPUBLISHED, networks=networks), replace(SETTINGS, internal=True))
    [(service_id, spec)] = desired.services.items()
    assert any("rule 6: -internal, the container's address" in why for _, why in desired.reasons[service_id])
    assert bool(spec.tagged_addresses) == (len(networks[0].ipv6) > 0)


@pytest.mark.parametrize(
    ("snapshot", "settings", "rule"),
    [
        (container(env={"SERVICE_IP": "192.0.2.7"}), SETTINGS, "rule 1: env SERVICE_IP"),
        (container(env={"SERVICE_NETWORK": "front"}), SETTINGS, "rule 2: env SERVICE_NETWORK, the address on network front"),
        (container(labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip"), "rule 3: -useIpFromLabel ip"),
        (container(UNPUBLISHED, labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip", internal=True),
         "rule 3: -useIpFromLabel ip"),
        (container(), replace(SETTINGS, network="front", internal=True), "rule 4: --network front"),
        (container(UNPUBLISHED, task_ip="10.9.0.4"), SETTINGS, "rule 5: ECS awsvpc task address from the ECS agent"),
        (container(UNPUBLISHED), replace(SETTINGS, internal=True), "rule 6: -internal, the container's address"),
        (container(), with_ip(SETTINGS, "10.7.7.7"), "rule 7: published port, -ip"),
        (container(), SETTINGS, "rule 7: published port, the host IP (--ip-from route)"),
    ],
    ids=["service-ip", "service-network", "label", "label-internal", "global-network", "awsvpc", "internal", "ip-flag",
         "host-ip"],
)
def test_explain_names_the_rule_that_chose_the_address(snapshot, settings, rule):
    desired = desired_services(snapshot, settings)
    assert [why for reasons in desired.reasons.values() for _, why in reasons if why.startswith("rule")] == [rule]


@pytest.mark.parametrize("settings", [replace(SETTINGS, network="back", internal=True), replace(SETTINGS, internal=True)],
                         ids=["global-network", "internal"])
def test_a_dual_stack_network_gives_both_addresses_whichever_rule_chose_it(settings):
    [spec] = desired_services(container(UNPUBLISHED), settings).services.values()
    assert spec.tagged_addresses == (("lan_ipv4", "10.2.0.3", 80), ("lan_ipv6", "fd00::3", 80))


def test_a_label_ip_with_more_than_one_slash_is_not_an_ip():
    desired = desired_services(container(labels={"ip": "192.0.2.9/24/8"}),
                               replace(SETTINGS, use_ip_from_label="ip", network="front"))
    assert [(s.address, s.port) for s in desired.services.values()] == [("10.1.0.3", 80)]
    assert desired.warnings == ("label ip: '192.0.2.9/24/8' is not an IP address; -useIpFromLabel ignored for this container",)


def test_a_missing_ip_label_is_no_warning_and_the_next_rule_applies():
    desired = desired_services(container(), replace(SETTINGS, use_ip_from_label="ip"))
    assert ([(s.address, s.port) for s in desired.services.values()], desired.warnings) == ([("10.0.0.5", 32080)], ())


def test_internal_without_any_container_address_is_explained_and_registers_nothing():
    snapshot = container(UNPUBLISHED, networks=(NetworkAttachment("none", ""),), network_mode="none")
    desired = desired_services(snapshot, replace(SETTINGS, internal=True))
    assert (dict(desired.services), desired.notes) == ({}, ("port 80/tcp: no container address for -internal (network mode "
                                                            "none)",))


@pytest.mark.parametrize(("family", "settings", "address"), [
    ("ipv4", replace(SETTINGS, ip_family="ipv6", network="back"), "10.2.0.3"),
    ("IPv6", replace(SETTINGS, network="back"), "fd00::3"),
    ("ipv6", replace(SETTINGS, internal=True), "fd00::3"),
], ids=["ipv4-over-the-flag", "ipv6-any-case-on-the-network", "ipv6-internal"])
def test_a_port_chooses_its_address_family(family, settings, address):
    desired = desired_services(container(UNPUBLISHED, env={"SERVICE_IP_FAMILY": family}), settings)
    assert ([s.address for s in desired.services.values()], desired.warnings) == ([address], ())


def test_an_unknown_address_family_is_warned_about_and_the_flag_applies():
    desired = desired_services(container(UNPUBLISHED, env={"SERVICE_IP_FAMILY": "ipv5"}),
                               replace(SETTINGS, network="back", ip_family="ipv6"))
    assert [s.address for s in desired.services.values()] == ["fd00::3"]
    assert desired.warnings == ("env SERVICE_IP_FAMILY: 'ipv5' is not ipv4 or ipv6; ipv6 used",)


@pytest.mark.parametrize(("settings", "address"),
                         [(SETTINGS, "10.0.0.5"), (replace(SETTINGS, host_ipv6="2001:db8::5"), "2001:db8::5")],
                         ids=["host-ipv6-unknown", "host-ipv6-known"])
def test_a_port_published_on_ipv6_only_registers_the_host_address_of_that_family_when_known(settings, address):
    [spec] = desired_services(container(ContainerPort(80, "tcp", (PortBinding("::", 32080),))), settings).services.values()
    assert (spec.address, spec.port, spec.tagged_addresses) == (address, 32080, ())


def test_a_host_named_by_a_hostname_is_registered_without_dual_stack_tags():
    settings = replace(with_ip(SETTINGS, "node1.example"), host_ipv6="2001:db8::5")
    [spec] = desired_services(container(), settings).services.values()
    assert (spec.address, spec.port, spec.tagged_addresses) == ("node1.example", 32080, ())


def test_an_unpublished_port_with_service_ip_is_explained_by_its_rule():
    desired = desired_services(container(UNPUBLISHED, env={"SERVICE_IP": "192.0.2.7"}), SETTINGS)
    assert [why for reasons in desired.reasons.values() for _, why in reasons if why.startswith("rule")] == ["rule 1: env "
                                                                                                             "SERVICE_IP"]


def test_dual_stack_published_ports_are_explained_by_their_rule():
    desired = desired_services(container(), replace(SETTINGS, host_ipv6="2001:db8::5"))
    assert [why for reasons in desired.reasons.values() for _, why in reasons if why.startswith("rule")] == [
        "rule 7: published port, the host IP (--ip-from route)"]


def test_a_label_with_an_empty_name_is_no_address_when_no_ip_label_is_chosen():
    """Docker's API takes a label named "" (its CLI does not)."""
    assert targets(container(labels={"": "192.0.2.66"})) == [("10.0.0.5", 32080)]


# Docker 20.10: one -p, two host ports
SPLIT = ContainerPort(80, "tcp", (PortBinding("0.0.0.0", 36959), PortBinding("::", 36956)))


@pytest.mark.parametrize(("snapshot", "settings", "expected"), [
    (container(SPLIT, env={"SERVICE_IP": "127.0.0.1"}), SETTINGS, [("127.0.0.1", 36959)]),
    (container(SPLIT, env={"SERVICE_IP": "::1"}), SETTINGS, [("::1", 36956)]),
    (container(SPLIT, labels={"ip": "192.0.2.9"}), replace(SETTINGS, use_ip_from_label="ip"), [("192.0.2.9", 36959)]),
    (container(SPLIT, labels={"ip": "2001:db8::9"}), replace(SETTINGS, use_ip_from_label="ip"), [("2001:db8::9", 36956)]),
], ids=["service-ip-v4", "service-ip-v6", "label-v4", "label-v6"])
def test_an_address_given_for_a_port_takes_the_host_port_published_on_its_family_only(snapshot, settings, expected):
    """On IPv4, 36956 may be another container's port: registering it sent clients to the wrong container (issue 21)."""
    assert targets(snapshot, settings) == expected


def test_an_address_given_for_a_port_published_only_on_the_other_family_registers_nothing_and_says_why():
    port = ContainerPort(80, "tcp", (PortBinding("::", 36956),))
    desired = desired_services(container(port, env={"SERVICE_IP": "192.0.2.7"}), SETTINGS)
    assert (dict(desired.services), desired.warnings) == (
        {}, ("env SERVICE_IP: 192.0.2.7 is an IPv4 address, and port 80 is published on IPv6 only; not registered",))
