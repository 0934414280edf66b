"""Proof that the simulation hunts: put each fixed defect of the core back, one at a time, in a copy
of the tree, and run the default budget of schedules (500) there until one fails.

    .venv/bin/python -m tests.simulation.reintroduce [NAME ...]

prints, for each defect, the first seed (or Hypothesis example) that breaks an invariant. Each
defect is a few text substitutions on today's code; one that no longer applies fails loudly, so
this proof cannot silently go stale. The defects are the eleven of issue 20
(`../shared/repros/core`), and those the simulation found afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 500


@dataclass(frozen=True)
class Defect:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file, today's text, the defect's text)
    hunt: str = "schedules"  # or "view-machine"


CONTROLLER, RECONCILER, VIEW, QUEUE = ("registrator/reconcile/controller.py", "registrator/reconcile/reconciler.py",
                                       "registrator/reconcile/view.py", "registrator/reconcile/queue.py")

DEFECTS = (
    Defect("timed-out-register", "a registration Consul applied but whose answer was lost is not in the view", (
        (RECONCILER, "            if exc.transient:\n                self.view.maybe_registered(spec, sent)\n", "            "
                                                                                                                "pass\n"),
    )),
    Defect("cleanup-blocks-resync", "-cleanup: an entry Consul refuses to remove ends the resync before containers are queued", (
        (RECONCILER, "                else:\n                    with self._lock:\n                        "
                     "self._legacy_refused.add(service_id)\n"
                     "                    log.error(\"cleanup: %s; left in Consul\", exc)",
         "                else:\n                    raise"),
        (CONTROLLER, "        self.reconciler.forget_containers_except(set(running), mark)\n",
         "        self.reconciler.forget_containers_except(set(running), mark)\n"
         "        if self.settings.options.cleanup:\n            self.reconciler.sweep_legacy({listed.name for listed in "
         "running.values()})\n"),
    )),
    Defect("foreign-after-refresh", "who holds an ID is the view's belief from the last refresh, not Consul's answer", (
        (RECONCILER, "holder = looks[service_id] = self._ownership.of(service_id, self._consul.service(service_id))",
         "holder = looks[service_id] = OURS if self.view.owns(service_id) else FREE"),
        (VIEW, "if holder in (None, container_id, FOREIGN):", "if holder in (None, container_id):"),
    )),
    Defect("cleanup-race", "-cleanup: a container that adopts an entry while its removal is on its way is not looked at again", (
        (RECONCILER, "if adopter := self.view.container_of(service_id):", "if False and (adopter := "
                                                                          "self.view.container_of(service_id)):"),
    )),
    Defect("connect-during-first-look", "a network change while a container's first inspect is answered is dropped", (
        (CONTROLLER, "\n                    or self._queue.has(container_id))", ")"),
    )),
    Defect("leak-warned", "a stopped container's metadata warnings are remembered after it is removed", (
        (RECONCILER, "        if snapshot is None or not snapshot.running:\n            self._forget_container(container_id)",
         "        if snapshot is None:\n            self._forget_container(container_id)"),
        (RECONCILER, "            if self._warned.get(container_id, ()) == warnings:\n                return\n"
                     "            if warnings:\n                self._warned[container_id] = warnings\n            else:\n"
                     "                self._warned.pop(container_id, None)",
         "            if self._warned.get(container_id) == warnings:\n                return\n            "
         "self._warned[container_id] = warnings"),
        (RECONCILER, "for table in (self._fingerprints, self._verified, self._warned):\n                for container_id in "
                     "set(table) - running:",
         "for table in (self._fingerprints, self._verified):\n                for container_id in set(table) - running:"),
    )),
    Defect("leak-refused", "a container refused an ID is remembered after it stopped and was removed", (
        (RECONCILER, "        self.view.forget_refusals({container_id})\n", ""),
        (RECONCILER, "        self.view.forget_refusals({cid for cid in refused if self._kills.running(cid) is None})",
         "        pass"),
    )),
    Defect("retry-chains", "a key added while it waits for its retry keeps its timer too", (
        (QUEUE, "        self._timers.pop(key, None)\n        if urgent and", "        if urgent and"),
        (QUEUE, "        if self._shutdown or key in self._dirty:\n            return\n        due",
         "        if self._shutdown:\n            return\n        due"),
    )),
    Defect("probe-defeats-backoff", "while Consul fails keys, every probe brings the waiting keys forward", (
        (CONTROLLER, "        sentinel = self.reconciler.view.sentinel()\n        try:",
         "        if self._consul_failed:\n            self._queue.retry_all_now()\n        sentinel = "
         "self.reconciler.view.sentinel()\n        try:"),
    )),
    Defect("shutdown-pump", "a stop while the events stream opens leaves the events thread following it", (
        (CONTROLLER, "        if self.stop.is_set():  # `run` may have closed the streams before this one was known: close it "
                     "here\n"
                     "            self._docker.close_events()\n            return\n", ""),
        (CONTROLLER, "return lambda call: retrying(lambda: None if self.stop.is_set() else call())", "return lambda call: "
                                                                                                     "retrying(call)"),
    )),
    Defect("two-refreshes", "overlapping refreshes drop the writes journalled during both", (
        (VIEW, "            self._refreshes[refresh] = len(self._journal)\n", "            self._journal.clear()\n            "
                                                                              "self._refreshes[refresh] = 0\n"),
        (VIEW, "        del self._refreshes[refresh]\n        if not self._refreshes:\n            self._journal.clear()",
         "        self._refreshes.clear()\n        self._journal.clear()"),
        (VIEW, "for change in self._journal[self._refreshes[refresh]:]:", "for change in self._journal:"),
    ), hunt="view-machine"),
    Defect("one-service-holds-the-others", "a service Consul keeps failing ends its container's reconcile", (
        (RECONCILER, "            except ConsulError as exc:\n                writes.fail(service_id, exc)\n\n    def "
                     "_holder_now",
         "            except ConsulError as exc:\n                if exc.transient:\n                    raise\n                "
         "writes.fail(service_id, exc)\n\n"
         "    def _holder_now"),
    )),
    Defect("lost-maintenance-answer", "a maintenance write whose answer was lost leaves the view believing the opposite", (
        (RECONCILER, "                    if exc.transient:  # Consul may have applied it: the next reconcile writes it "
                     "whatever it wants\n"
                     "                        self.view.maintenance_set(service_id, None)\n", ""),
    )),
    Defect("sentinel-by-id", "the probe reads the service with the smallest ID, which a new registration can be", (
        (VIEW, "key=lambda sid: (tables.since[sid], sid), default=None)", "default=None)"),
    )),
    Defect("stream-ends-before-an-event", "a stream that ends before its first event is opened again from now, not from when it "
                                          "was", (
        (CONTROLLER, "        if self._since is None:  # should this stream end before its first event, the next resumes from "
                     "here\n"
                     "            self._since = _docker_time(int(asked_at * 10**9))\n", ""),
    )),
    Defect("gap-resync-trusts-listing", "after a stream opens again, the resync skips containers whose docker ps line is "
                                        "unchanged", (
        (CONTROLLER, "        self._full_resync_asked = True  # Docker replays only the events it still keeps: a gap may have "
                     "lost some\n", ""),
    )),
    Defect("look-under-way-at-resync", "a resync does not look again at a container whose look (and inspect) predates its "
                                       "listing", (
        (CONTROLLER, "containers = (owned - set(running)) | stale | under_way", "containers = (owned - set(running)) | stale"),
    )),
    Defect("sentinel-by-answer", "the probe's sentinel is the service answered first, not sent first", (
        (VIEW, "        self._change(lambda tables: tables.put(spec, sent))\n", "        since = next(self._versions)\n        "
                                                                                "self._change(lambda tables: tables.put(spec, "
                                                                                "since))\n"),
    )),
    Defect("refused-without-asking", "a container deregistering an ID another owner took waits for it, and is remembered", (
        (RECONCILER, "writes.container_id if isinstance(op, Register) else \"\"", "writes.container_id"),
    )),
    Defect("stale-foreign-belief", "a claim trusts the view's belief that another owner holds an ID", (
        (VIEW, "if holder in (None, container_id, FOREIGN):", "if holder in (None, container_id):"),
    )),
)


def hunt(defect: Defect) -> str:
    """The first seed (or example) that breaks an invariant with the defect back, within the budget."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch)
        for part in ("registrator", "tests", "cli.py", "pyproject.toml"):
            source = ROOT / part
            (shutil.copytree if source.is_dir() else shutil.copy)(source, tree / part)
        for file, today, defect_text in defect.edits:
            path = tree / file
            text = path.read_text()
            if text.count(today) != 1:
                raise SystemExit(f"{defect.name}: the text to change is not (once) in {file}; update this proof:\n{today}")
            path.write_text(text.replace(today, defect_text))
        if defect.hunt == "view-machine":
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                     "tests/simulation/test_view_machine.py"],
                                    cwd=tree, capture_output=True, text=True)
            return "found by the view machine" if result.returncode else "NOT FOUND"
        result = subprocess.run([sys.executable, "-m", "tests.simulation", "--first", "0", str(BUDGET)], cwd=tree,
                                capture_output=True, text=True)
        return result.stdout.strip()[:140] if result.returncode else "NOT FOUND"


def main() -> None:
    chosen = [d for d in DEFECTS if not sys.argv[1:] or d.name in sys.argv[1:]]
    for defect in chosen:
        started = time.monotonic()
        print(f"{defect.name:30} {hunt(defect)}  ({time.monotonic() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
