"""The rig's build scripts: what they cache must be safe to build from several processes at once
(the fleet builds its images into three engines side by side, on a cold cache in CI)."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_GO = """#!/usr/bin/env bash
# Stands in for go: the module is a folder, a build writes big binaries (so copies take a while).
case "$1" in
  env) echo "https://proxy.example" ;;
  mod) mkdir -p "$FAKE_MODULE"; echo "{\\"Dir\\": \\"$FAKE_MODULE\\"}" ;;
  build) out=""; while [[ $# -gt 0 ]]; do [[ "$1" == -o ]] && out="$2"; shift; done
         for name in one two three; do head -c 8000000 /dev/zero > "$out/$name"; chmod +x "$out/$name"; done ;;
esac
"""


def test_builds_of_one_module_into_one_folder_side_by_side_all_succeed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_MODULE": str(tmp_path / "module")}
    out = tmp_path / "cache"
    script = f"set -euo pipefail; source {ROOT / 'scripts' / 'go-module-build.sh'}; build_go_module example.com/m v1 {out} ./a"

    def build(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(build, range(24)))
    assert [r.stderr for r in results if r.returncode != 0] == []
    assert sorted(p.name for p in out.iterdir()) == ["one", "three", "two"]
    assert all(p.stat().st_size == 8000000 for p in out.iterdir())


def test_the_rig_copies_only_finished_binaries_while_other_processes_build_into_the_cache(tmp_path):
    """Three fleet hosts built the NSQ image at once on a cold cache: one copied the cache folder
    while another's temporary binary was in it, and lost it to the rename (FileNotFoundError)."""
    from tests.integration.rig import copy_prebuilt

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_MODULE": str(tmp_path / "module")}
    out = tmp_path / "cache"
    out.mkdir()
    script = f"set -euo pipefail; source {ROOT / 'scripts' / 'go-module-build.sh'}; build_go_module example.com/m v1 {out} ./a"
    copied: list[list[str]] = []

    def build(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)

    def copy(n: int) -> None:
        context = tmp_path / f"context-{n}"
        context.mkdir()
        copied.append(copy_prebuilt(out, context))

    with ThreadPoolExecutor(12) as pool:
        builds = [pool.submit(build, n) for n in range(16)]
        copies = [pool.submit(copy, n) for n in range(40)]
        assert [b.result().returncode for b in builds] == [0] * 16
        for c in copies:
            c.result()
    assert all(set(names) <= {"one", "two", "three"} for names in copied)
