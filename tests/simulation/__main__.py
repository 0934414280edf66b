"""Replay or hunt: `python -m tests.simulation [--log|--first] SEED [SEED_END]` runs those schedules
and prints every failing one (one seed: its whole trace; `--log` adds what the agent logged, where it
did; `--first` stops at the first failing seed, prints `seed N: <broken invariant>` and exits 1)."""

from __future__ import annotations

import logging
import sys
import time

from tests.simulation.scenario import simulate


def main() -> None:
    args = sys.argv[1:]
    log, first_only = "--log" in args, "--first" in args
    args = [arg for arg in args if arg not in ("--log", "--first")]
    if not log:
        logging.disable(logging.CRITICAL)
    first = int(args[0])
    last = int(args[1]) if len(args) > 1 else first + 1
    started, failed, steps = time.monotonic(), 0, 0
    for seed in range(first, last):
        outcome = simulate(seed, log=log)
        steps += outcome.steps
        failed += bool(outcome.violations)
        if first_only and outcome.violations:
            print(f"seed {seed}: {outcome.violations[0]}"[:160])
            sys.exit(1)
        if outcome.violations or last - first == 1:  # one seed: its trace, failing or not
            print(f"seed {seed} {outcome.config}")
            if last - first == 1:
                print("\n".join(outcome.trace))
            for violation in outcome.violations:
                print(f"  {violation}")
    print(f"{last - first} schedules, {failed} failed, {steps} steps, {time.monotonic() - started:.1f}s")


main()
