#!/usr/bin/env bash
# The multi-host test rig for a person: 3 Consul servers and hosts a, b, c (each its own dockerd,
# Consul client and registrator) in network namespaces on one bridge, all in 198.18.0.0/15.
#   scripts/cluster.sh up       bring it up (or keep the one running); prints each host's sockets
#   scripts/cluster.sh down     stop and remove everything it made (idempotent)
#   scripts/cluster.sh status   "up" (exit 0) or "down" (exit 3)
#   scripts/cluster.sh exec HOST CMD...   run CMD in HOST's namespace with DOCKER_HOST set, e.g.
#                               scripts/cluster.sh exec c dig @127.0.0.1 -p 8600 +tcp web.service.consul SRV
# Needs root. FLEET_ROOT (default /tmp/registrator-fleet) holds its state, logs and secrets.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == exec ]]; then
  root=${FLEET_ROOT:-/tmp/registrator-fleet}
  host=$2
  shift 2
  exec env DOCKER_HOST="unix://$root/$host/docker.sock" nsenter --net="$root/$host/netns" -- "$@"
fi
exec .venv/bin/python -m tests.cluster.fleet "$@"
