# Sourced by consul.sh and nsq.sh: build_go_module MODULE VERSION OUTDIR PACKAGE...
#
# Fetches MODULE@VERSION through the Go module proxy (never from version control) and builds the
# packages as the main module, so its own go.mod (replace and exclude directives included) governs
# the build; static binaries (CGO off) land in OUTDIR. Output goes to stderr.
build_go_module() {
  local module="$1" version="$2" outdir="$3"
  shift 3
  (
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
    GOPROXY="$(go env GOPROXY | sed -e 's/,direct$//' -e 's/|direct$//')"
    export GOPROXY
    work="$(mktemp -d)"
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
    cd "$work"
    go mod download -json "$module@$version" > module.json
    cp -r "$(python3 -c 'import json; print(json.load(open("module.json"))["Dir"])')" src
    chmod -R u+w src
    cd src
    mkdir -p "$work/bin"
    go build -trimpath -ldflags "-s -w" -o "$work/bin/" "$@"
    mkdir -p "$outdir"
    for binary in "$work/bin/"*; do  # a temporary name of this process's own, then an atomic rename: builds may run side by side
      cp "$binary" "$outdir/.$(basename "$binary").$BASHPID.tmp"
      mv "$outdir/.$(basename "$binary").$BASHPID.tmp" "$outdir/$(basename "$binary")"
    done
  ) >&2
}
