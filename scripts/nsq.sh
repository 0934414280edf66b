#!/usr/bin/env bash
# Print a folder holding nsqd, nsqlookupd and nsq_tail, building them from source once if needed.
#
# NSQ $NSQ_VERSION (default v1.3.0) is fetched through the Go module proxy and built as the main
# module (static, CGO off), cached under ${XDG_CACHE_HOME:-~/.cache}/registrator/nsq/<version>-<go>.
# Used by the NSQ discovery test and the compose demo. Build output goes to stderr.
set -euo pipefail

VER="${NSQ_VERSION:-v1.3.0}"
command -v go >/dev/null || { echo "nsq.sh: no 'go' on PATH" >&2; exit 1; }
GOVER="$(go env GOVERSION)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/registrator/nsq/${VER}-${GOVER}"

if [[ ! -x "$CACHE/nsqd" || ! -x "$CACHE/nsqlookupd" || ! -x "$CACHE/nsq_tail" ]]; then
  echo "nsq.sh: building NSQ $VER with $GOVER into $CACHE" >&2
  # shellcheck source=scripts/go-module-build.sh
  source "$(dirname "$0")/go-module-build.sh"
  build_go_module github.com/nsqio/nsq "$VER" "$CACHE" ./apps/nsqd ./apps/nsqlookupd ./apps/nsq_tail
fi
echo "$CACHE"
