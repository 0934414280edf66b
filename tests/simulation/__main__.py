"""Replay or hunt: `python -m tests.simulation SEED [SEED_END]` runs those schedules and prints
every failing one with its trace."""

from __future__ import annotations

import logging
import sys
import time

from tests.simulation.scenario import simulate


def main() -> None:
    logging.disable(logging.CRITICAL)
    first = int(sys.argv[1])
    last = int(sys.argv[2]) if len(sys.argv) > 2 else first + 1
    started, failed, steps = time.monotonic(), 0, 0
    for seed in range(first, last):
        outcome = simulate(seed)
        steps += outcome.steps
        if outcome.violations:
            failed += 1
            print(f"seed {seed} {outcome.config}")
            if last - first == 1:
                print("\n".join(outcome.trace))
            for violation in outcome.violations:
                print(f"  {violation}")
    print(f"{last - first} schedules, {failed} failed, {steps} steps, {time.monotonic() - started:.1f}s")


main()
