from __future__ import annotations

from types import MappingProxyType

import pytest

from registrator.metadata import service_metadata
from registrator.model import ContainerPort, ContainerSnapshot


def snapshot(env: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> ContainerSnapshot:
    return ContainerSnapshot(id="c1", name="app", image="app", running=True,
                             env=MappingProxyType(env or {}), labels=MappingProxyType(labels or {}))


@pytest.mark.parametrize(
    ("env", "labels", "port", "expected", "scoped"),
    [
        ({"SERVICE_NAME": "web"}, {}, 80, {"name": "web"}, set()),
        ({"SERVICE_NAME": "env"}, {"SERVICE_NAME": "label"}, 80, {"name": "label"}, set()),
        ({"SERVICE_80_NAME": "www", "SERVICE_NAME": "web"}, {}, 80, {"name": "www"}, {"name"}),
        ({"SERVICE_80_NAME": "www"}, {"SERVICE_NAME": "web"}, 80, {"name": "www"}, {"name"}),
        ({"SERVICE_80_NAME": "www"}, {}, 443, {}, set()),
        ({"SERVICE_REGION": "eu", "OTHER": "x", "service_name": "lower"}, {}, 80, {"region": "eu"}, set()),
        ({"SERVICE_": "empty key"}, {}, 80, {}, set()),
    ],
    ids=["env", "label-beats-env", "port-scoped-beats-generic", "port-env-beats-generic-label",
         "other-port-ignored", "prefix-is-case-sensitive", "empty-key-ignored"],
)
def test_service_metadata(env, labels, port, expected, scoped):
    assert service_metadata(snapshot(env, labels), ContainerPort(port, "tcp")) == (expected, scoped)
