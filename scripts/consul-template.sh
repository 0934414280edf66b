#!/usr/bin/env bash
# Print the path of a consul-template binary, building it from source once if needed.
#
# $CONSUL_TEMPLATE_BIN wins when set. Otherwise consul-template $CONSUL_TEMPLATE_VERSION (default
# v0.41.1, MPL-2.0, the release the Go module proxy lists) is built with the machine's `go` through
# the Go module proxy, as the main module, static (CGO off), and cached under
# ${XDG_CACHE_HOME:-~/.cache}/registrator/consul-template/<version>-<go version>/consul-template.
# Used by the consul-template consumer test and the compose demo's stand-in image.
# Build output goes to stderr; stdout carries only the path.
set -euo pipefail

if [[ -n "${CONSUL_TEMPLATE_BIN:-}" ]]; then
  [[ -x "$CONSUL_TEMPLATE_BIN" ]] || { echo "consul-template.sh: CONSUL_TEMPLATE_BIN=$CONSUL_TEMPLATE_BIN is not executable" >&2; exit 1; }
  echo "$CONSUL_TEMPLATE_BIN"
  exit 0
fi

VER="${CONSUL_TEMPLATE_VERSION:-v0.41.1}"
command -v go >/dev/null || { echo "consul-template.sh: no 'go' on PATH; install Go or set CONSUL_TEMPLATE_BIN" >&2; exit 1; }
GOVER="$(go env GOVERSION)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/registrator/consul-template/${VER}-${GOVER}"
BIN="$CACHE/consul-template"

if [[ ! -x "$BIN" ]]; then
  echo "consul-template.sh: building consul-template $VER with $GOVER into $CACHE (once per machine)" >&2
  # shellcheck source=scripts/go-module-build.sh
  source "$(dirname "$0")/go-module-build.sh"
  build_go_module github.com/hashicorp/consul-template "$VER" "$CACHE" .
  "$BIN" -version >&2
fi
echo "$BIN"
