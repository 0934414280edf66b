"""Which code a results file measured."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The checkout's commit, marked when the package differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--", "registrator", "cli.py"], cwd=ROOT, capture_output=True,
                             text=True).stdout
    return f"{head or 'unknown'}{' with uncommitted changes' if changed.strip() else ''}"
