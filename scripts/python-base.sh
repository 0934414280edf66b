#!/usr/bin/env bash
# Print the path of a root filesystem tarball of Debian bookworm with Python 3 and a venv at
# /opt/venv, building it once with debootstrap if needed.
#
# No registry image can be pulled here, so the compose test imports this tarball (`docker import`)
# as the stand-in for python:3.11-slim. Cached under
# ${XDG_CACHE_HOME:-~/.cache}/registrator/python-base/<suite>.tar. Build output goes to stderr.
set -euo pipefail

SUITE="${PYTHON_BASE_SUITE:-bookworm}"
MIRROR="${PYTHON_BASE_MIRROR:-http://deb.debian.org/debian}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/registrator/python-base"
TARBALL="$CACHE/$SUITE.tar"

if [[ ! -s "$TARBALL" ]]; then
  command -v debootstrap >/dev/null || { echo "python-base.sh: no 'debootstrap' on PATH" >&2; exit 1; }
  echo "python-base.sh: debootstrap $SUITE from $MIRROR into $TARBALL" >&2
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$root" "$MIRROR" >&2
  chroot "$root" python3 -m venv /opt/venv >&2
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mkdir -p "$CACHE"
  tar -C "$root" --numeric-owner -cf "$TARBALL.$$.tmp" .  # this process's own name, then an atomic rename
  mv "$TARBALL.$$.tmp" "$TARBALL"
fi
echo "$TARBALL"
