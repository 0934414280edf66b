#!/usr/bin/env bash
# Print a folder holding a caddy binary for the compose test's stand-in of caddy:2.10.2-alpine,
# building it from source once if needed.
#
# Caddy $CADDY_VERSION (default v2.10.2, Apache-2.0) is fetched through the Go module proxy and
# built as the main module (./cmd/caddy, static, CGO off), cached under
# ${XDG_CACHE_HOME:-~/.cache}/registrator/caddy/<version>-<go version>. Takes minutes cold.
# Build output goes to stderr; stdout carries only the folder.
set -euo pipefail

VER="${CADDY_VERSION:-v2.10.2}"
command -v go >/dev/null || { echo "caddy build.sh: no 'go' on PATH" >&2; exit 1; }
GOVER="$(go env GOVERSION)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/registrator/caddy/${VER}-${GOVER}"

if [[ ! -x "$CACHE/caddy" ]]; then
  echo "caddy build.sh: building Caddy $VER with $GOVER into $CACHE (once per machine)" >&2
  # shellcheck source=scripts/go-module-build.sh
  source "$(dirname "$0")/../../../scripts/go-module-build.sh"
  build_go_module github.com/caddyserver/caddy/v2 "$VER" "$CACHE" ./cmd/caddy
fi
echo "$CACHE"
