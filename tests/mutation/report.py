"""The kill rate of the last `mutmut run`, the mutants judged equivalent left out (issue 20's measure).

    .venv/bin/python -m tests.mutation.report [SIMULATION_RESULTS]

reads mutmut's verdicts (`mutants/**/*.meta`), the judged-equivalent mutants
(`tests/mutation/equivalent.txt`: a name, then why no input can tell it from the code) and, when
given, the output of `python -m tests.simulation.mutants` (a survivor it killed counts as killed).
It prints a table by module, the rate, and every survivor not judged equivalent with its change. An
equivalent listed for a mutant that is no longer a survivor is an error: the code or the numbering
changed, and the judgement must be made again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.txt")
KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}


def verdicts() -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.meta")):
        found.update(json.loads(meta.read_text())["exit_code_by_key"])
    return found


def equivalents() -> dict[str, str]:
    judged = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(" ")
            judged[name] = why.strip()
    return judged


def simulation_kills(path: str | None) -> set[str]:
    if path is None:
        return set()
    return {line.split()[0] for line in Path(path).read_text().splitlines() if "  killed" in line}


def change(name: str) -> str:
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [line.strip() for line in shown.splitlines() if line[:1] in "+-" and not line.startswith(("---", "+++"))]
    return " | ".join(lines)


def module(name: str) -> str:
    return name.split(".x")[0].rstrip(".")


def main() -> int:
    codes, judged, by_simulation = verdicts(), equivalents(), simulation_kills(sys.argv[1] if len(sys.argv) > 1 else None)
    stale = sorted(name for name in judged if codes.get(name) != 0)
    table: dict[str, Counter[str]] = defaultdict(Counter)
    survivors = []
    for name, code in sorted(codes.items()):
        kind = ("killed" if code in KILLED else "timeout" if code in TIMEOUT else "killed by the simulation"
                if name in by_simulation
                else "equivalent" if name in judged and code == 0 else "survived" if code == 0 else f"not run ({code})")
        table[module(name)][kind] += 1
        if kind == "survived":
            survivors.append(name)
    kinds = ["killed", "timeout", "killed by the simulation", "survived", "equivalent"]
    print(f"{'module':<40}" + "".join(f"{k:>26}" for k in kinds))
    for name, counts in sorted(table.items()):
        print(f"{name:<40}" + "".join(f"{counts[k]:>26}" for k in kinds))
    total = Counter()
    for counts in table.values():
        total.update(counts)
    print(f"{'all':<40}" + "".join(f"{total[k]:>26}" for k in kinds))
    others = {k: v for k, v in total.items() if k not in kinds}
    killed = total["killed"] + total["timeout"] + total["killed by the simulation"]
    candidates = sum(total.values()) - total["equivalent"]
    print(f"\n{sum(total.values())} mutants, {total['equivalent']} judged equivalent: {killed}/{candidates} of the others killed "
          f"({100 * killed / candidates:.1f} %){'; ' + str(others) if others else ''}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        changes = list(pool.map(change, survivors))
    print(f"\nThe {len(survivors)} survivors not judged equivalent, with their change:")
    for name, diff in zip(survivors, changes, strict=True):
        print(f"{name}: {diff}")
    for name in stale:
        print(f"STALE: {name} is judged equivalent but is not a survivor ({codes.get(name)!r})", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
