from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from registrator.mapping import META_CONTAINER, META_HASH, META_HOST, MappingSettings, desired_services, image_basename, spec_hash
from registrator.model import ContainerPort, ContainerSnapshot, PortBinding
from registrator.snapshot import snapshot_from_inspect

SETTINGS = MappingSettings(hostname="host1", ip="10.0.0.5")


def container(*ports: ContainerPort, env: dict[str, str] | None = None, running: bool = True) -> ContainerSnapshot:
    return ContainerSnapshot(id="f" * 64, name="app.1", image="registry:5000/team/app:1.2", running=running,
                             env=MappingProxyType(env or {}), ports=ports)


def published(port: int, host_port: int, protocol: str = "tcp") -> ContainerPort:
    return ContainerPort(port, protocol, (PortBinding("0.0.0.0", host_port), PortBinding("::", host_port)))


@pytest.mark.parametrize(
    ("image", "name"),
    [("redis", "redis"), ("redis:7", "redis"), ("gliderlabs/foobar:1.2", "foobar"),
     ("registry:5000/a/b:1", "b"), ("app@sha256:0123", "app"), ("registry:5000/app@sha256:0123", "app")],
)
def test_image_basename(image, name):
    assert image_basename(image) == name


def test_one_published_port_gives_one_service_named_after_the_image():
    [spec] = desired_services(container(published(80, 32768)), SETTINGS).values()

    assert (spec.id, spec.name, spec.address, spec.port) == ("host1:app.1:80", "app", "10.0.0.5", 32768)
    assert spec.meta[META_HOST] == "host1"
    assert spec.meta[META_CONTAINER] == "f" * 64
    assert spec.meta[META_HASH] == spec_hash(spec)


def test_service_name_from_metadata():
    [spec] = desired_services(container(published(80, 1), env={"SERVICE_NAME": "web"}), SETTINGS).values()
    assert spec.name == "web"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, {"app-80", "app-443"}),
        ({"SERVICE_NAME": "web"}, {"web-80", "web-443"}),
        ({"SERVICE_NAME": "web", "SERVICE_443_NAME": "secure"}, {"web-80", "secure"}),
    ],
    ids=["image-name", "generic-name", "port-scoped-name-has-no-suffix"],
)
def test_several_published_ports_get_a_port_suffix_unless_named_per_port(env, names):
    services = desired_services(container(published(80, 1), published(443, 2), env=env), SETTINGS)
    assert {s.name for s in services.values()} == names


def test_udp_ports_get_a_distinct_id():
    services = desired_services(container(published(53, 1053, "udp"), published(53, 1053)), SETTINGS)
    assert set(services) == {"host1:app.1:53", "host1:app.1:53:udp"}


def test_unpublished_ports_and_stopped_or_missing_containers_have_no_services():
    assert desired_services(container(ContainerPort(80, "tcp")), SETTINGS) == {}
    assert desired_services(container(published(80, 1), running=False), SETTINGS) == {}
    assert desired_services(None, SETTINGS) == {}


def test_mapping_is_deterministic_and_the_hash_follows_every_field(inspect_json):
    snap = snapshot_from_inspect(inspect_json("multi"))
    first = desired_services(snap, SETTINGS)

    assert desired_services(snap, SETTINGS) == first
    moved = desired_services(snap, replace(SETTINGS, ip="10.0.0.6"))
    assert {s.meta[META_HASH] for s in moved.values()}.isdisjoint(s.meta[META_HASH] for s in first.values())


def test_real_multiport_container(inspect_json):
    services = desired_services(snapshot_from_inspect(inspect_json("multi")), SETTINGS)

    assert sorted((s.name, s.port > 0) for s in services.values()) == [("multi-53", True), ("multi-9000", True), ("www", True)]
