"""Pure: what to write to Consul so that `actual` becomes `desired`. Equal inputs give no ops."""

from __future__ import annotations

from collections.abc import Mapping

from registrator.model import Deregister, Op, Register, ServiceSpec


def plan(desired: Mapping[str, ServiceSpec], actual: Mapping[str, ServiceSpec]) -> list[Op]:
    ops: list[Op] = [Register(spec) for sid, spec in sorted(desired.items()) if actual.get(sid) != spec]
    ops += [Deregister(sid) for sid in sorted(actual) if sid not in desired]
    return ops
