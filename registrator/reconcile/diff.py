"""Pure: what to write to Consul so that `actual` becomes `desired`. Equal inputs give no ops."""

from __future__ import annotations

from collections.abc import Mapping, Set

from registrator.model import META_AGENT, Deregister, Op, Register, ServiceSpec


def plan(desired: Mapping[str, ServiceSpec], actual: Mapping[str, ServiceSpec], unsure: Set[str] = frozenset()) -> list[Op]:
    """`unsure`: IDs in `actual` whose last write failed after it may have been applied; a wanted
    one is registered again, so that Consul holds it as the agent believes."""
    ops: list[Op] = [
        Register(spec) for sid, spec in sorted(desired.items())
        if sid not in actual or sid in unsure or not same(spec, actual[sid])
    ]
    ops += [Deregister(sid) for sid in sorted(actual) if sid not in desired]
    return ops


def same(desired: ServiceSpec, actual: ServiceSpec) -> bool:
    """Equal in everything Consul's service listing shows but which agent process wrote it (a
    restarted agent rewrites nothing); checks are covered by the hash in Meta."""
    return (desired.name, desired.address, desired.port, desired.tags, _written(desired)) == (
        actual.name, actual.address, actual.port, actual.tags, _written(actual)
    )


def _written(spec: ServiceSpec) -> dict[str, str]:
    return {key: value for key, value in spec.meta.items() if key != META_AGENT}
