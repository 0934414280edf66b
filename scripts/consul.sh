#!/usr/bin/env bash
# Print the path of a Consul agent binary, building it from source once if needed.
#
# $CONSUL_BIN wins when set. Otherwise Consul $CONSUL_VERSION (default v1.16.2, the last
# MPL-2.0 release whose go.mod has no replace directives) is built with the machine's `go`
# through the Go module proxy, as the main module so its `exclude` directives apply, and
# cached under ${XDG_CACHE_HOME:-~/.cache}/registrator/consul/<version>-<go version>/consul.
# Build output goes to stderr; stdout carries only the path.
set -euo pipefail

if [[ -n "${CONSUL_BIN:-}" ]]; then
  [[ -x "$CONSUL_BIN" ]] || { echo "consul.sh: CONSUL_BIN=$CONSUL_BIN is not executable" >&2; exit 1; }
  echo "$CONSUL_BIN"
  exit 0
fi

VER="${CONSUL_VERSION:-v1.16.2}"
command -v go >/dev/null || { echo "consul.sh: no 'go' on PATH; install Go or set CONSUL_BIN" >&2; exit 1; }
GOVER="$(go env GOVERSION)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/registrator/consul/${VER}-${GOVER}"
BIN="$CACHE/consul"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

echo "consul.sh: building Consul $VER with $GOVER into $CACHE (once per machine; takes minutes)" >&2
# shellcheck source=scripts/go-module-build.sh
source "$(dirname "$0")/go-module-build.sh"
build_go_module github.com/hashicorp/consul "$VER" "$CACHE" .
"$BIN" version >&2

echo "$BIN"
