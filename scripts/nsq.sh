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
  {
    echo "nsq.sh: building NSQ $VER with $GOVER into $CACHE"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
    GOPROXY="$(go env GOPROXY | sed -e 's/,direct$//' -e 's/|direct$//')"
    export GOPROXY
    WORK="$(mktemp -d)"
    trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
    cd "$WORK"
    go mod download -json "github.com/nsqio/nsq@$VER" > nsq.json
    DIR="$(python3 -c 'import json; print(json.load(open("nsq.json"))["Dir"])')"
    cp -r "$DIR" src
    chmod -R u+w src
    cd src
    mkdir -p "$WORK/bin"
    go build -trimpath -ldflags "-s -w" -o "$WORK/bin/" ./apps/nsqd ./apps/nsqlookupd ./apps/nsq_tail
    mkdir -p "$CACHE"
    cp "$WORK/bin/"* "$CACHE/"
  } >&2
fi
echo "$CACHE"
