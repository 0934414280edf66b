"""The simulation against the mutants the unit tests let survive: after `mutmut run`,

    .venv/bin/python -m tests.simulation.mutants [SCHEDULES]

runs each surviving mutant of `registrator/reconcile/` through SCHEDULES (default 40) seeded
schedules in mutmut's own tree (`mutants/`, where `MUTANT_UNDER_TEST` picks the mutant), each in a
process of its own with a time limit, and prints one line per mutant: killed (with the seed and the
broken invariant), or survived. The unit tests cannot reach `Controller.run`, its loops or their
interplay; the simulation drives exactly those.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 120  # seconds: a mutant that makes the core spin forever is killed by its hang

def survivors() -> list[str]:
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    names = [line.split(":")[0].strip() for line in listing.splitlines() if line.strip().endswith(": survived")]
    return [name for name in names if name.startswith("registrator.reconcile.")]


def hunt(name: str, schedules: int) -> str:
    env = {**os.environ, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(ROOT / "mutants")}
    try:
        result = subprocess.run([sys.executable, "-m", "tests.simulation", "--first", "0", str(schedules)], cwd=ROOT / "mutants",
                                env=env, capture_output=True, text=True, timeout=LIMIT)
    except subprocess.TimeoutExpired:
        return "killed: hangs"
    if result.returncode == 0:
        return "survived"
    found = result.stdout.strip().splitlines()[-1:] or (result.stderr.strip().splitlines() or ["crash"])[-1:]
    return f"killed: {found[0][:160]}"


def main() -> None:
    schedules = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    names = survivors()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for name, verdict in zip(names, pool.map(lambda n: hunt(n, schedules), names), strict=True):
            print(f"{name}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
