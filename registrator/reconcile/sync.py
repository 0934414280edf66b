"""One comparison of every container with Consul (`registrator sync --once`), without the daemon."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from registrator.docker.source import Listed
from registrator.mapping.settings import MappingSettings
from registrator.model import Op
from registrator.reconcile.kills import KillLog
from registrator.reconcile.reconciler import Consul, Docker, Reconciler


class ListingDocker(Docker, Protocol):
    def running(self) -> dict[str, Listed]: ...


def sync_once(docker: ListingDocker, consul: Consul, settings: MappingSettings, kills: KillLog, *, dry_run: bool,
              show: Callable[[str, Op], None]) -> int:
    """Every container this host runs or has services for, looked at once: each op is shown
    (container label, op) and, unless `dry_run`, written. Returns how many services changed (or
    would). A container refused an ID that another one released in this pass is looked at again."""
    woken: set[str] = set()
    reconciler = Reconciler(docker, consul, settings, kills, wake=woken.update)
    changes = 0
    for container_id in sorted(reconciler.refresh() | set(docker.running())):
        label, ops = reconciler.plan(container_id)
        for op in ops:
            show(label, op)
        changes += len(ops) if dry_run else reconciler.reconcile(container_id).writes
    if not dry_run:
        changes += sum(reconciler.reconcile(container_id).writes for container_id in sorted(woken))
    return changes
