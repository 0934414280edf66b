"""What the CLI prints: tables, `list` rows and `explain` output. Formatting only."""

from __future__ import annotations

import shlex
from typing import Any

from registrator.consul.sink import ConsulReader, check_payload
from registrator.mapping.services import Desired
from registrator.model import META_CONTAINER, CheckSpec, ContainerSnapshot, ServiceSpec, host_port
from registrator.ops.text import shown


def service_rows(sink: ConsulReader, hostname: str, name: str = "") -> list[dict[str, Any]]:
    """This host's services (or, without a hostname, the whole catalog) as plain rows."""
    if hostname:
        health = sink.service_health()
        found = [(spec, health.get(spec.id, ""), "") for spec in sink.owned_services(hostname).values()]
    else:
        found = [(row["spec"], row["status"], row["node"]) for row in sink.catalog(name)]
    rows = [
        {"name": spec.name, "id": spec.id, "address": spec.address, "port": spec.port, "tags": list(spec.tags),
         "checks": status or "none", "container": spec.meta.get(META_CONTAINER, ""), "node": node, "meta": dict(spec.meta)}
        for spec, status, node in found
        if not name or spec.name == name
    ]
    return sorted(rows, key=lambda r: (r["name"], r["node"], r["id"]))


def table(rows: list[dict[str, Any]], with_node: bool = False) -> str:
    header = ["NAME", "ID", "ADDRESS", "TAGS", "CHECKS", "NODE" if with_node else "CONTAINER"]
    lines = [header] + [
        [shown(cell) for cell in (r["name"], r["id"], host_port(r["address"], r["port"]), ",".join(r["tags"]) or "-", r["checks"],
                                  r["node"] if with_node else (r["container"][:12] or "-"))]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def explain_json(snapshot: ContainerSnapshot, desired: Desired) -> dict[str, Any]:
    return {
        "container": {"id": snapshot.id, "name": snapshot.name, "image": snapshot.image, "running": snapshot.running,
                      "network_mode": snapshot.network_mode},
        "services": [_service_json(spec, dict(desired.reasons.get(spec.id, ()))) for spec in desired.services.values()],
        "retained": desired.retain,
        "warnings": list(desired.warnings),
        "not_registered": list(desired.notes),
    }


def explain_text(snapshot: ContainerSnapshot, desired: Desired) -> str:
    lines = [f"container {snapshot.name} ({snapshot.short_id}), image {snapshot.image}, network mode {snapshot.network_mode}"
             + ("" if snapshot.running else ", not running")]
    if desired.retain:
        lines.append("  stopped: its registered services are kept (deregister policy)")
    for spec in desired.services.values():
        reasons = dict(desired.reasons.get(spec.id, ()))
        meta = ", ".join(f"{k}={v}" for k, v in spec.meta.items() if not k.startswith("registrator-")) or "-"
        lines += [
            f"service {spec.id}",
            f"  name     {spec.name}    <- {reasons.get('name', '')}",
            f"  id       {spec.id}    <- {reasons.get('id', '')}",
            f"  address  {host_port(spec.address, spec.port)}    <- {reasons.get('address', '')}",
            f"  tags     {', '.join(spec.tags) or '-'}    <- {reasons.get('tags', '')}",
            f"  meta     {meta}    <- {reasons.get('meta', '')}",
        ]
        lines += [f"  check    {c.check_id}: {_check_summary(c)}" for c in spec.checks] or ["  checks   none"]
    if not desired.services and not desired.retain:
        lines.append("no services")
    lines += [f"warning: {w}" for w in desired.warnings]
    lines += [f"not registered: {n}" for n in desired.notes]
    return "\n".join(lines)


def _service_json(spec: ServiceSpec, reasons: dict[str, str]) -> dict[str, Any]:
    return {"id": spec.id, "name": spec.name, "address": spec.address, "port": spec.port, "tags": list(spec.tags),
            "meta": dict(spec.meta), "tagged_addresses": {tag: {"address": a, "port": p} for tag, a, p in spec.tagged_addresses},
            "checks": [{"id": c.check_id, **check_payload(c)} for c in spec.checks], "why": reasons}


def _check_summary(check: CheckSpec) -> str:
    """What a check probes and how often: `tcp 10.0.0.5:32000 every 10s`, `ttl 30s`, `docker /probe check every 10s`."""
    what = check.target or shlex.join(check.args) or check.ttl
    every = f" every {check.interval}" if check.interval else ""
    return f"{check.kind.value} {what}{every}"
