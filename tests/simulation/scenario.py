"""One seeded schedule: the real core over the simulated world, with faults, then the invariants.

A seed chooses an option set, what runs and what Consul holds before the agent starts, and every
step after: which thread proceeds, when Docker and Consul answer (or fail, before or after applying
a write), what happens to containers, Docker, Consul and the agent, and when time passes. Then
every fault heals, time runs on until nothing is left to do, and the invariants are checked:

(a) Consul holds exactly the services Docker's truth asks for (the newest state of each container:
    (g)), with Docker's health, out of maintenance, one holder per ID (c);
(b) no write touched a service another owner holds (checked at every write, `SimConsul._guard`);
(d) every table of the core is bounded by the containers that exist or hold services;
(e) a key waits at most once (checked after every step);
(f) a stop returns within its bound, with the events thread ended and no write after it;
(h) an agent never tells of another agent with its host identity (each restart is a new instance).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from registrator.config import Options, Settings
from registrator.consul.endpoint import ConsulEndpoint
from registrator.consul.sink import ConsulError
from registrator.mapping.checks import mirror_check_id, mirror_status
from registrator.mapping.services import META_CONTAINER, desired_services
from registrator.mapping.settings import DeregisterPolicy, HostFacts, MappingPolicy, MappingSettings
from registrator.metrics import Metrics
from registrator.model import ContainerPort, NetworkAttachment, PortBinding, ServiceSpec
from registrator.reconcile.controller import Controller
from registrator.reconcile.diff import same
from registrator.reconcile.queue import WorkQueue
from tests.simulation.scheduler import Call, Green, Scheduler
from tests.simulation.world import Box, SimConsul, SimDocker

HOST = "h"
HOST_IP = "10.0.0.5"
NAMES = ("web", "api", "db", "job")
SHARED_IDS = ("shared", "db-primary")  # SERVICE_IDs containers (and foreign owners) collide on
DENIED_NAME = "secret"  # a service name this host's token may not write
SETTLE = 400.0  # simulated seconds after every fault healed: every backoff, drain and retry is over by then
SIGKILL, SIGTERM, SIGHUP, SIGQUIT = 9, 15, 1, 3


@dataclass(frozen=True)
class Config:
    cleanup: bool
    deregister: str
    drain: str
    resync: float
    internal: bool
    workers: int
    deregister_on_exit: bool
    drain_timeout: float
    docker_timeout: float = 10.0
    consul_timeout: float = 5.0

    @staticmethod
    def pick(rng: random.Random) -> Config:
        return Config(cleanup=rng.random() < 0.4, deregister=rng.choice(["always", "always", "on-success", "never"]),
                      drain=rng.choice(["deregister", "maintenance"]), resync=rng.choice([0.0,
                                                                                          60.0]), internal=rng.random() < 0.25,
                      workers=rng.choice([1, 2, 3]), deregister_on_exit=rng.random() < 0.5, drain_timeout=rng.choice([5.0, 30.0]))

    def settings(self, agent: int = 1) -> Settings:
        """The settings of the `agent`th agent process: every second one is an upgrade whose
        `--meta` differs from its predecessor's, so that it rewrites every service it finds."""
        meta = MappingProxyType({"release": f"r{agent}"} if agent % 2 == 0 else {})
        policy = MappingPolicy(internal=self.internal, drain=self.drain, deregister=DeregisterPolicy(self.deregister), meta=meta)
        options = Options(consul=ConsulEndpoint(timeout=self.consul_timeout), mapping=policy, hostname=HOST, ip=HOST_IP,
                          resync_seconds=self.resync, docker_timeout=self.docker_timeout, cleanup=self.cleanup,
                          drain_timeout=self.drain_timeout, deregister_on_exit=self.deregister_on_exit, workers=self.workers)
        return Settings(options, MappingSettings.of(policy, HostFacts(HOST, HOST_IP, agent=f"sim:{agent}")))


@dataclass(frozen=True)
class Swarm:
    """What one schedule is made of (swarm testing: each schedule leaves some kinds of steps out and
    weighs faults its own way, which reaches combinations an even mix hardly does)."""

    fail: float  # a call fails before the world handles it
    hang: float  # a call hangs until its timeout
    lose: float  # a call's answer is lost (it times out after the world handled it)
    slow: float  # a call is handled only a while later (within its timeout)
    faulty: frozenset[str]  # the calls those faults hit (a probe that never fails never resyncs: what a resync hides shows)
    left_out: frozenset[str]  # kinds of action this schedule never takes

    @staticmethod
    def pick(rng: random.Random, kinds: list[str]) -> Swarm:
        """A quarter of the schedules are calm: nothing in them makes the agent resync (no reconnect,
        no outage the probe sees, no SIGHUP, no restart), so what a resync would repair must not
        need repairing."""
        calls = ["register", "deregister", "maintenance", "update-check", "service", "services", "checks", "has-service",
                 "leader",
                 "inspect", "ps", "events"]
        calm = rng.random() < 0.25
        quiet = {"has-service", "leader", "services", "checks", "ps", "events"} if calm else set()
        return Swarm(fail=rng.choice([0.0, 0.03, 0.08]), hang=rng.choice([0.0, 0.02, 0.05]), lose=rng.choice([0.0, 0.04, 0.12]),
                     slow=rng.choice([0.0, 0.1, 0.3]),
                     faulty=frozenset(call for call in calls if call not in quiet and rng.random() < 0.5),
                     left_out=frozenset(kind for kind in kinds if (calm and kind in RESYNCING) or rng.random() < 0.3))


ACTIONS = {  # what can happen next, and how often (a `_<kind>` method of Simulation each)
    "run_container": 6, "create_container": 2, "stop_begin": 3, "stop_end": 4, "kill": 2, "crash": 2, "remove": 2, "restart": 2,
    "rename": 1, "pause": 1, "health": 2, "network": 1, "run_and_connect": 1, "signal": 1, "docker_restart": 0.4,
    "docker_outage": 0.4, "stream_breaks": 0.6, "consul_outage": 0.6, "no_leader": 0.6, "consul_wipe": 0.3, "foreign": 0.8,
    "foreign_leaves": 0.3, "sighup": 0.6, "agent_restart": 0.3, "registrator_entry": 0.4,
}


RESYNCING = {"sighup", "stream_breaks", "docker_restart", "docker_outage", "consul_outage", "no_leader", "agent_restart"}


class Violated(Exception):
    """Ends a schedule at its first broken invariant."""


class StampingQueue(WorkQueue):
    """The production queue; it notes when a thread took its key, for the ownership invariant."""

    def __init__(self, sched: Scheduler, note: Callable[[str], None]) -> None:
        super().__init__(runtime=sched.runtime())
        self._sched = sched
        self._note = note

    def get(self, urgent_only: bool = False) -> str | None:
        key = super().get(urgent_only)
        if key is not None:
            self._sched.running().handling_since = self._sched.steps
            self._note(f"{self._sched.running().name} takes {key}")
        return key


@dataclass
class Agent:
    controller: Controller
    main: Green
    queues: tuple[WorkQueue, WorkQueue]
    metrics: Metrics


@dataclass
class Outcome:
    seed: int
    config: Config
    violations: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    steps: int = 0


class Simulation:
    def __init__(self, seed: int, actions: int | None = None) -> None:
        self.rng = random.Random(seed)
        random.seed(seed)  # the core's jitter (tenacity's waits, the resync period) draws from the module's generator
        self.config = Config.pick(self.rng)
        self.settings = self.config.settings()
        self.sched = Scheduler()
        self.docker = SimDocker(self.sched, self.config.docker_timeout)
        self.consul = SimConsul(self.sched, self.config.consul_timeout, HOST)
        self.consul.note = self.note
        self.docker.note = self.note
        self.outcome = Outcome(seed, self.config)
        self.swarm = Swarm.pick(self.rng, sorted(ACTIONS))
        self.actions = actions if actions is not None else self.rng.randint(10, 60)
        self.serial = 0
        self.legacy: dict[str, str] = {}  # legacy ID → the container name it was for
        self.legacy_late: set[str] = set()  # those that appeared while the agent ran (with -resync 0 no sweep sees them)
        self.ran_names: set[str] = set()  # names any container ran under while the agent ran
        self.foreign: dict[str, ServiceSpec] = {}
        self.stopping: set[str] = set()  # containers sent their stop signal, not dead yet
        self.follow_ups: list[Callable[[], None]] = []  # actions that come next, whatever the dice say
        self.slowed: set[str] = set()  # service IDs whose next deregistration is slow
        self.agent: Agent | None = None
        self.started = 0  # agent processes started

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            self._setup()
            self.agent = self._start_agent()
            while self.actions > 0 and not self.consul.violations and not self.sched.crashes:
                self._step()
            for _ in range(self.rng.randint(0, 600)):  # the work the last actions caused, under the same faults
                if self.consul.violations or self.sched.crashes or not self._step(acting=False):
                    break
            self._heal()
            healed = self.sched.now
            self._settle(SETTLE)
            self._check_backoff(healed)
            self._check_quiet()
            self._stop_agent()
        except Violated:
            pass
        finally:
            self.outcome.violations += self.consul.violations
            self.outcome.violations += [f"thread {name} died: {type(exc).__name__}: {exc}" for name, exc in self.sched.crashes]
            self.outcome.steps = self.sched.steps
            self.sched.teardown()
        return self.outcome

    def note(self, text: str) -> None:
        self.outcome.trace.append(f"{self.sched.steps:5d} t={self.sched.now:8.3f} {text}")

    def violation(self, text: str) -> None:
        """Record a broken invariant; the schedule ends at the first."""
        self.note(f"VIOLATION {text}")
        self.outcome.violations.append(text)
        raise Violated()

    # -- set-up -----------------------------------------------------------------------------------

    def _setup(self) -> None:
        """Containers running before the agent starts; what Consul holds then (a previous run's
        services, gliderlabs/registrator's, another owner's)."""
        self.consul.denied.add(DENIED_NAME)
        if self.rng.random() < 0.35:
            self.consul.poisoned.add(f"{HOST}:{self.rng.choice(NAMES)}:80")
        for _ in range(self.rng.randint(0, 3)):
            box = self._new_box()
            self.docker.create(box)
            self.docker.start(box)
            self.ran_names.add(box.name)
            self.note(f"running before the agent: {box.id} ({box.name} {dict(box.env)})")
        for name in self.rng.sample([*NAMES, DENIED_NAME], self.rng.randint(0, 2)):
            self._legacy(name)
        if self.rng.random() < 0.3:
            self._foreign()

    def _legacy(self, name: str) -> None:
        """An entry gliderlabs/registrator made for this host (no Meta); `secret`'s the token may not remove."""
        service_id = f"{HOST}:{name}:80"
        if service_id in self.consul.services_:
            return
        self.legacy[service_id] = name
        if self.agent is not None:
            self.legacy_late.add(service_id)
        self.consul.foreign(ServiceSpec(service_id, name, HOST_IP, 31000), "legacy")
        self.note(f"gliderlabs/registrator left {service_id}")

    def _new_box(self) -> Box:
        self.serial += 1
        n = self.serial
        free = [name for name in NAMES if self.docker.free_name(name)]
        name = self.rng.choice(free) if free else f"app{n}"
        ports: tuple[ContainerPort, ...] = (ContainerPort(80, "tcp", (PortBinding("0.0.0.0", 30000 + n),)),)
        if self.rng.random() < 0.3:
            ports += (ContainerPort(443, "tcp", (PortBinding("0.0.0.0", 40000 + n),)),)
        env: dict[str, str] = {}
        roll = self.rng.random()
        if roll < 0.25:
            env["SERVICE_ID"] = self.rng.choice(SHARED_IDS)
        elif roll < 0.32:
            env["SERVICE_NAME"] = DENIED_NAME
        elif roll < 0.5:
            env["SERVICE_NETWORK"] = "backend"
        if self.rng.random() < 0.2:
            env["SERVICE_BAD.KEY"] = "x"  # a metadata warning the agent logs once
        ip = f"172.17.0.{n % 250 + 2}"
        return Box(id=f"c{n:02d}", name=name, ports=ports, env=env, ip=ip, networks=(NetworkAttachment("bridge", ip),),
                   stop_signal=SIGQUIT if self.rng.random() < 0.1 else SIGTERM, has_healthcheck=self.rng.random() < 0.4,
                   restart_always=self.rng.random() < 0.3, auto_remove=self.rng.random() < 0.3)

    def _start_agent(self) -> Agent:
        """Each agent process is another instance (Meta `registrator-agent`), as a restart makes one."""
        self.started += 1
        self.settings = self.config.settings(self.started)
        queues = (StampingQueue(self.sched, self.note), StampingQueue(self.sched, self.note))
        metrics = Metrics()
        # type: ignore[arg-type]
        controller = Controller(self.settings, self.docker, self.consul, metrics, queue=queues[0], background=queues[1],
                                runtime=self.sched.runtime())
        main = self.sched.runtime().thread(controller.run, "main")
        main.start()
        self.note(f"agent {self.started} starts")
        return Agent(controller, main, queues, metrics)  # type: ignore[arg-type]

    # -- steps ------------------------------------------------------------------------------------

    def _step(self, acting: bool = True) -> bool:
        """A thread runs, a call is answered (or fails), something happens (when `acting`), or time
        passes. False when nothing is left to do within a minute."""
        ready = self.sched.ready()
        calls = self._answerable()
        roll = self.rng.random()
        if self.follow_ups and roll < 0.3:
            self.sched.steps += 1
            self.follow_ups.pop(0)()
        elif (ready or calls) and (roll < 0.78 or not acting):
            choice = self.rng.randrange(len(ready) + len(calls))
            if choice < len(ready):
                self.sched.run(ready[choice])
            else:
                self._answer(calls[choice - len(ready)])
        elif acting and (roll < 0.95 or not (ready or calls)):
            self.actions -= 1
            self._act()
        elif acting:
            self._tick()
        else:
            deadline = self.sched.next_deadline()
            if deadline is None or deadline > self.sched.now + 60:
                return False
            self.sched.advance(max(0.0, deadline - self.sched.now))
        self._check_queues()
        return True

    def _answerable(self) -> list[Call]:
        return [c for c in self.sched.calls if not c.lost and (c.served or (c.ready() and c.not_before <= self.sched.now))]

    def _answer(self, call: Call) -> None:
        roll = self.rng.random()
        if not call.served:
            faulty = call.name in self.swarm.faulty
            if call.name == "next-event":
                self.sched.serve(call)
                self.sched.answer(call)
            elif call.name == "deregister" and call.key in self.slowed:
                self.slowed.discard(call.key)
                call.not_before = self.sched.now + self.rng.choice([0.5, 2.0])
                self.note(f"{call} is slow")
            elif faulty and not call.not_before and self.rng.random() < self.swarm.slow:
                call.not_before = self.sched.now + self.rng.choice([0.2, 1.0, 3.0])
                self.note(f"{call} is slow")
            elif faulty and roll < self.swarm.fail:
                self.note(f"{call} fails before it is served")
                self.sched.answer(call, call.timeout())
            elif faulty and roll < self.swarm.fail + self.swarm.hang:
                self.note(f"{call} hangs until its timeout")
                call.lost = True
            else:
                self.sched.serve(call)
                if self.rng.random() < 0.5:
                    self._deliver(call)
                elif (call.name == "inspect" and call.key in self.docker.boxes
                      and "SERVICE_NETWORK" in self.docker.boxes[call.key].env):
                    if self.rng.random() < 0.7:  # Docker's answer is on its way: the container changes meanwhile
                        self._connects(call.key)()
                elif call.name == "service" and call.key in self.legacy and self.rng.random() < 0.7:
                    self._runs_named(self.legacy[call.key])()  # -cleanup is about to remove an entry a new container wants,
                    self.slowed.add(call.key)  # and the removal takes its time
        else:
            self._deliver(call)

    def _deliver(self, call: Call) -> None:
        if call.name == "inspect" and (box := self.docker.boxes.get(call.key)) is not None and box.doomed:
            box.doomed = False
            self.follow_ups.append(self._ends(box))
        if call.name in self.swarm.faulty and self.rng.random() < self.swarm.lose * (2 if call.write else 1):
            self.note(f"{call} served; its answer is lost")
            call.lost = True
            if call.name in ("register", "deregister"):  # the container stops before the agent knows what Consul did
                self._follow(self._ends(self._holder_of(call.key)))
            elif call.name == "maintenance":  # the container turns out not to stop
                self._follow(self._keeps_running(self._holder_of(call.key)))
        else:
            self.sched.answer(call)

    def _tick(self) -> None:
        seconds = self.rng.choice([0.001, 0.05, 0.5, 2.0, 5.0, 15.0, 40.0])
        self.sched.advance(seconds)

    def _act(self) -> None:
        self.sched.steps += 1
        kinds = [kind for kind in sorted(ACTIONS) if kind not in self.swarm.left_out]
        if kinds:
            kind = self.rng.choices(kinds, [ACTIONS[kind] for kind in kinds])[0]
            getattr(self, f"_{kind}")()

    def _died(self, box: Box, exit_code: int) -> None:
        """The container exits; `docker run --rm` removes it right after (a step later: its destroy comes after its die)."""
        self.docker.die(box, exit_code)
        if box.auto_remove:
            self.follow_ups.append(self._removes(box))

    def _removes(self, box: Box) -> Callable[[], None]:
        def remove() -> None:
            if box.id in self.docker.boxes and not box.running:
                self.docker.destroy(box)
                self.note(f"{box.id} is removed (--rm)")
        return remove

    def _follow(self, action: Callable[[], None]) -> None:
        """Something that happens next, because of what just happened (half the time): the faults
        that matter most hit at the worst moment, which an even mix of steps hardly reaches."""
        if self.rng.random() < 0.7:
            self.follow_ups.append(action)

    def _holder_of(self, service_id: str) -> Box | None:
        spec = self.consul.services_.get(service_id)
        return self.docker.boxes.get(spec.meta.get(META_CONTAINER, "")) if spec is not None else None

    def _ends(self, box: Box | None) -> Callable[[], None]:
        def end() -> None:
            if box is not None and box.running:
                self._died(box, self.rng.choice([0, 1, 143]))
                self.stopping.discard(box.id)
                self.note(f"{box.id} exits ({box.exit_code}) right after")
        return end

    def _keeps_running(self, box: Box | None) -> Callable[[], None]:
        def keep() -> None:
            if box is not None and box.id in self.stopping:
                self.stopping.discard(box.id)
                self.note(f"{box.id} ignores its stop signal and keeps running")
        return keep

    def _connects(self, container_id: str) -> Callable[[], None]:
        def connect() -> None:
            box = self.docker.boxes.get(container_id)
            if box is not None and box.running and not any(n.name == "backend" for n in box.networks):
                self.docker.connect(box, NetworkAttachment("backend", f"172.20.0.{int(box.id[1:]) % 250 + 2}"))
                self.note(f"docker network connect backend {box.id} while its inspect is answered")
        return connect

    def _runs_named(self, name: str, env: dict[str, str] | None = None) -> Callable[[], None]:
        def run() -> None:
            if self.docker.free_name(name):
                box = self._new_box()
                box.name, box.env = name, env if env is not None else box.env
                self.docker.create(box)
                self.docker.start(box)
                self.ran_names.add(name)
                self.note(f"docker run {box.id} ({box.name} {dict(box.env)}) right after")
        return run

    def _registrator_entry(self) -> None:
        self._legacy(self.rng.choice([*NAMES, DENIED_NAME]))

    def _run_and_connect(self) -> None:
        """`docker run … && docker network connect backend …`: the connect comes right after the start."""
        self._run_container()
        box = self.docker.boxes[f"c{self.serial:02d}"]
        self.docker.connect(box, NetworkAttachment("backend", f"172.20.0.{self.serial % 250 + 2}"))
        self.note(f"docker network connect backend {box.id}")

    def _box(self, which: Callable[[Box], bool]) -> Box | None:
        boxes = [b for _, b in sorted(self.docker.boxes.items()) if which(b)]
        return self.rng.choice(boxes) if boxes else None

    def _run_container(self) -> None:
        box = self._new_box()
        self.docker.create(box)
        self.docker.start(box)
        self.ran_names.add(box.name)
        self.note(f"docker run {box.id} ({box.name} {dict(box.env)})")
        asked = box.env.get("SERVICE_ID")
        if asked and any(b.running and b.env.get("SERVICE_ID") == asked for b in self.docker.boxes.values() if b is not box):
            box.auto_remove = box.doomed = True  # a job asking for an ID another container asks for too: it fails once looked at

    def _create_container(self) -> None:
        if (box := self._box(lambda b: not b.running)) is not None and self.rng.random() < 0.6:
            self.docker.start(box)
            self.ran_names.add(box.name)
            self.note(f"docker start {box.id}")
        else:
            box = self._new_box()
            self.docker.create(box)
            self.note(f"docker create {box.id}")

    def _stop_begin(self) -> None:
        if (box := self._box(lambda b: b.running and b.id not in self.stopping)) is not None:
            self.docker.kill(box, box.stop_signal)
            self.stopping.add(box.id)
            self.note(f"docker stop {box.id}: signal {box.stop_signal}")

    def _stop_end(self) -> None:
        if (box := self._box(lambda b: b.id in self.stopping)) is None:
            return
        self.stopping.discard(box.id)
        if not box.running:
            return
        if self.rng.random() < 0.3:
            self.docker.kill(box, SIGKILL)
            self._died(box, 137)
            self.note(f"{box.id} killed after its stop timeout")
        elif self.rng.random() < 0.2:
            self.note(f"{box.id} ignores its stop signal and keeps running")
        else:
            self._died(box, self.rng.choice([0, 143, 1]))
            self.note(f"{box.id} exits ({box.exit_code})")

    def _kill(self) -> None:
        if (box := self._box(lambda b: b.running)) is not None:
            self.docker.kill(box, SIGKILL)
            self._died(box, 137)
            self.stopping.discard(box.id)
            self.note(f"docker kill {box.id}")

    def _crash(self) -> None:
        if (box := self._box(lambda b: b.running)) is not None:
            self._died(box, self.rng.choice([0, 1, 2]))
            self.stopping.discard(box.id)
            self.note(f"{box.id} exits by itself ({box.exit_code})")

    def _remove(self) -> None:
        if (box := self._box(lambda b: True)) is not None:
            if box.running:
                self.docker.kill(box, SIGKILL)
                self._died(box, 137)
            self.docker.destroy(box)
            self.stopping.discard(box.id)
            self.note(f"docker rm -f {box.id}")

    def _restart(self) -> None:
        if (box := self._box(lambda b: b.running)) is not None:
            self.docker.kill(box, box.stop_signal)
            self.docker.die(box, 143)
            self.docker.start(box)
            self.stopping.discard(box.id)
            self.note(f"docker restart {box.id}")

    def _rename(self) -> None:
        free = [name for name in NAMES if self.docker.free_name(name)]
        if (box := self._box(lambda b: True)) is not None and free:
            name = self.rng.choice(free)
            self.docker.rename(box, name)
            if box.running:
                self.ran_names.add(name)
            self.note(f"docker rename {box.id} {name}")

    def _pause(self) -> None:
        if (box := self._box(lambda b: b.running)) is not None:
            self.docker.pause(box, not box.paused)
            self.note(f"docker {'pause' if box.paused else 'unpause'} {box.id}")

    def _health(self) -> None:
        if (box := self._box(lambda b: b.running and b.has_healthcheck)) is not None:
            status = self.rng.choice(["healthy", "unhealthy"])
            self.docker.health(box, status)
            self.note(f"{box.id} is {status}")

    def _network(self) -> None:
        if (box := self._box(lambda b: b.running)) is None:
            return
        if any(n.name == "backend" for n in box.networks):
            self.docker.disconnect(box, "backend")
            self.note(f"docker network disconnect backend {box.id}")
        else:
            self.docker.connect(box, NetworkAttachment("backend", f"172.20.0.{int(box.id[1:]) % 250 + 2}"))
            self.note(f"docker network connect backend {box.id}")

    def _signal(self) -> None:
        if (box := self._box(lambda b: b.running)) is not None:
            self.docker.kill(box, SIGHUP)
            self.note(f"docker kill -s HUP {box.id}")

    def _docker_restart(self) -> None:
        self.ran_names |= {box.name for box in self.docker.restart_daemon()}
        self.stopping.clear()
        self.note("dockerd restarts")

    def _docker_outage(self) -> None:
        self.docker.down = not self.docker.down
        if self.docker.down:
            self.docker.drop_streams(None)
        self.note("dockerd " + ("stops answering" if self.docker.down else "answers again"))

    def _stream_breaks(self) -> None:
        from registrator.docker.engine import DockerUnavailable
        self.docker.drop_streams(DockerUnavailable("events: connection reset by peer") if self.rng.random() < 0.5 else None)
        self.note("the events stream ends")

    def _consul_outage(self) -> None:
        self.consul.down = not self.consul.down
        self.note("Consul " + ("is unreachable" if self.consul.down else "answers again"))

    def _no_leader(self) -> None:
        self.consul.leaderless = not self.consul.leaderless
        self.note("Consul " + ("lost its leader" if self.consul.leaderless else "has a leader again"))

    def _consul_wipe(self) -> None:
        if not self.consul.ours():  # nothing of this host's to lose: a start is more use
            self._run_container()
            return
        self.consul.lose_everything()
        self.foreign.clear()
        self.legacy.clear()
        self.note("Consul restarts and loses every registration")
        for call in [c for c in self.sched.calls if c.side == "consul" and not c.served and not c.lost]:
            self.sched.answer(call, ConsulError(f"Consul {call.name} {call.key}: connection reset by peer", transient=True))
            self.note(f"{call} fails: the restart reset its connection")  # the new agent takes requests sent from now on
        # registered before the probe looks
        self._follow(self._runs_named(self.rng.choice(NAMES), {"SERVICE_ID": self.rng.choice(SHARED_IDS)}))

    def _foreign(self) -> None:
        """Another owner registers a service: another host's agent, or an operator by hand."""
        taken = set(self.consul.services_)
        candidates = [sid for sid in (*SHARED_IDS, "manual-1", "manual-2") if sid not in taken]
        if not candidates:
            return
        service_id = self.rng.choice(candidates)
        if self.rng.random() < 0.5:
            meta = MappingProxyType({"registrator-host": "h2", META_CONTAINER: "x9"})
            who = "host h2"
        else:
            meta, who = MappingProxyType({}), "an operator"
        spec = ServiceSpec(service_id, "other", "10.0.0.9", 5000 + self.sched.steps % 1000, meta=meta)
        self.consul.foreign(spec, who)
        self.foreign[service_id] = spec
        self.note(f"{who} registers {service_id}")

    def _foreign_leaves(self) -> None:
        """The other owner deregisters its service. With -resync 0 nothing tells the agent, so every
        container that asks for the ID gets an event after (a reload signal); its look must take it."""
        if self.foreign:
            service_id = self.rng.choice(sorted(self.foreign))
            del self.foreign[service_id]
            if self.consul.owners.get(service_id) and self.consul.owners[service_id].who not in ("us", "legacy"):
                self.consul._drop(service_id)
            self.note(f"the other owner deregisters {service_id}")
            if not self.config.resync:
                for box in sorted(self.docker.boxes.values(), key=lambda b: b.id):
                    if box.running and box.env.get("SERVICE_ID") == service_id:
                        self.follow_ups.append(self._signals(box))

    def _signals(self, box: Box) -> Callable[[], None]:
        def signal() -> None:
            if box.id in self.docker.boxes and box.running:
                self.docker.kill(box, SIGHUP)
                self.note(f"docker kill -s HUP {box.id} (it asks for an ID that was freed)")
        return signal

    def _sighup(self) -> None:
        assert self.agent is not None
        resync_now = getattr(self.agent.controller, "resync_now", None)
        if resync_now is not None:
            resync_now()
            self.note("SIGHUP: resync now")

    def _agent_restart(self) -> None:
        self._stop_agent()
        self.agent = self._start_agent()

    # -- stop -------------------------------------------------------------------------------------

    def _stop_agent(self) -> None:
        """SIGTERM: (f) `run` returns within its bound, the events thread has ended, no write follows."""
        assert self.agent is not None
        agent, options = self.agent, self.settings.options
        owned = len(self.consul.ours())
        bound = options.docker_timeout + 3 * options.consul_timeout + (owned + 1) * options.consul_timeout + 1
        agent.main.handling_since = self.sched.steps
        agent.controller.stop.set()
        stopped_at = self.sched.now
        self.note("SIGTERM")
        while agent.main.state != "done" and self.sched.now <= stopped_at + bound:
            self._progress(stopped_at + bound + 1)
        if agent.main.state != "done":
            self.violation(f"(f) run() still running {bound:.0f}s after stop")
            return
        took = self.sched.now - stopped_at
        while self._progress(self.sched.now):  # what is about to end (a call that just timed out) ends
            pass
        events = [g for g in self.sched.greens if g.name == "events" and g.state != "done" and g.order > agent.main.order]
        if events:
            self.violation(f"(f) run() returned after {took:.1f}s with the events thread still following a stream")
        writes = len(self.consul.writes)
        for _ in range(200):
            if not self._progress(self.sched.now + 60):
                break
        if len(self.consul.writes) > writes:
            self.violation(f"(f) writes after run() returned: {self.consul.writes[writes:]}")
        if options.deregister_on_exit and not (self.consul.down or self.consul.leaderless):
            left = sorted(sid for sid, spec in self.consul.ours().items() if spec.name != DENIED_NAME)
            if left:
                self.violation(f"(f) --deregister-on-exit left {left}")
        if agent.metrics.value("registrator_other_agent_writes_total"):
            self.violation("(h) the agent told of another agent with this host identity, and there was none")
        self.note(f"stopped after {took:.1f}s")

    def _progress(self, until: float) -> bool:
        """One step of a run with no new faults: a ready thread, a call answered, or time to the next timer."""
        ready = self.sched.ready()
        if ready:
            self.sched.run(ready[0])
            return True
        calls = self._answerable()
        if calls:
            call = calls[0]
            if not call.served:
                self.sched.serve(call)
            self.sched.answer(call)
            return True
        deadline = self.sched.next_deadline()
        if deadline is None or deadline > until:
            return False
        self.sched.advance(max(0.0, deadline - self.sched.now))
        return True

    # -- quiet ------------------------------------------------------------------------------------

    def _check_backoff(self, since: float) -> None:
        """(e) a key Consul keeps failing is tried as its backoff says (at most a minute apart, a
        random part of it: about 13 tries in 400 s once it waits the longest), not at every probe."""
        for service_id in sorted(self.consul.poisoned):
            tries = sum(1 for sid, at in self.consul.poison_tries if sid == service_id and at >= since)
            if tries > 40:
                self.violation(f"(e) {service_id}, which Consul always fails, was tried {tries} times in {SETTLE:.0f}s")

    def _heal(self) -> None:
        while self.follow_ups:
            self.follow_ups.pop(0)()
        self.docker.down = False
        self.consul.down = False
        self.consul.leaderless = False
        for call in self.sched.calls:
            call.lost = False
        self.note("every fault heals")

    def _settle(self, seconds: float) -> None:
        end = self.sched.now + seconds
        while self._progress(end):
            self._check_queues()
        self.sched.advance(max(0.0, end - self.sched.now))
        while self._progress(end):
            self._check_queues()

    def _check_queues(self) -> None:
        """(e) a key waits at most once."""
        if self.agent is None:
            return
        for queue in self.agent.queues:
            waiting = queue.waiting()
            for key in sorted(set(waiting)):
                if waiting.count(key) > 1:
                    self.violation(f"(e) key {key} waits {waiting.count(key)} times")
                    return

    def _check_quiet(self) -> None:
        assert self.agent is not None
        mapping = self.settings.mapping
        wanted: dict[str, list[tuple[str, ServiceSpec]]] = {}
        retained: set[str] = set()
        for cid, box in sorted(self.docker.boxes.items()):
            if box.running:
                for sid, spec in desired_services(box.snapshot(), mapping).services.items():
                    wanted.setdefault(sid, []).append((cid, spec))
            elif self.config.deregister == "never" or (self.config.deregister == "on-success"
                                                       and box.exit_code not in (0, 137, 143)):
                retained.add(cid)
        ours = self.consul.ours()
        for sid, candidates in sorted(wanted.items()):
            owner = self.consul.owners.get(sid)
            if owner is not None and owner.who not in ("us", "legacy"):
                continue  # another owner holds it: the containers wait
            if sid in self.consul.poisoned or candidates[0][1].name == DENIED_NAME:
                continue
            got = ours.get(sid)
            if got is None:
                self.violation(f"(a) {sid} is missing (wanted by {[c for c, _ in candidates]})")
                continue
            holder = got.meta.get(META_CONTAINER, "")
            spec = dict(candidates).get(holder)
            if spec is None and holder in retained:
                continue  # an exited container whose services the deregister policy keeps holds it still
            if spec is None:
                self.violation(f"(a) {sid} is held by {holder}, which does not want it (wanted by {[c for c, _ in candidates]})")
            elif not same(spec, got):
                self.violation(f"(g) {sid} is registered as {got}, {holder} asks for {spec}")
            else:
                self._check_health(sid, self.docker.boxes[holder])
        for sid, spec in sorted(ours.items()):
            holder = spec.meta.get(META_CONTAINER, "")
            if sid not in wanted and holder not in retained:
                self.violation(f"(a) {sid} of {holder} is left in Consul ({_why_unwanted(self.docker.boxes.get(holder))})")
        for sid, spec in sorted(self.foreign.items()):
            if self.consul.services_.get(sid) != spec and sid not in self.consul.clobbered:
                self.violation(f"(b) the other owner's {sid} was changed: {self.consul.services_.get(sid)}")
        for sid, name in sorted(self.legacy.items()):
            present = self.consul.owners.get(sid) is not None and self.consul.owners[sid].who == "legacy"
            swept = self.config.cleanup and (self.config.resync or sid not in self.legacy_late)
            if swept and present and name not in self.ran_names and self.consul.services_[sid].name != DENIED_NAME:
                self.violation(f"(a) -cleanup left registrator's {sid}")
            if not self.config.cleanup and not present and name not in self.ran_names:
                self.violation(f"(b) registrator's {sid} was removed without -cleanup")
        self._check_memory(set(wanted), retained)

    def _check_health(self, service_id: str, box: Box) -> None:
        check = self.consul.checks.get(mirror_check_id(service_id))
        if box.has_healthcheck and check is not None:
            status = mirror_status(box.snapshot(), self.settings.mapping.checks)[0]
            if check[1] != status:
                self.violation(f"(a) {service_id}'s Docker health shows {check[1]}, Docker says {box.health} ({status})")
        if f"_service_maintenance:{service_id}" in self.consul.checks:
            self.violation(f"(a) {service_id} is left in maintenance mode")

    def _check_memory(self, wanted: set[str], retained: set[str]) -> None:
        """(d) once quiet, no table remembers a container that is gone."""
        assert self.agent is not None
        live = set(self.docker.boxes) | {spec.meta.get(META_CONTAINER, "") for spec in self.consul.ours().values()}
        tables: dict[str, set[str]] = dict(self.agent.controller.reconciler.remembered())
        for name, queue in zip(("queue", "background"), self.agent.queues, strict=True):
            tables.update({f"{name}.{table}": keys for table, keys in queue.remembered().items()})
        for table, keys in sorted(tables.items()):
            gone = sorted(k for k in keys if k not in live and not k.startswith("*"))
            if gone:
                self.violation(f"(d) {table} remembers containers that are gone: {gone}")


def _why_unwanted(box: Box | None) -> str:
    return "gone" if box is None else "running, but asks for it no more" if box.running else "not running"


def simulate(seed: int, actions: int | None = None, log: bool = False) -> Outcome:
    """One schedule; with `log`, what the agent logs joins the trace where it happened."""
    simulation = Simulation(seed, actions)
    if not log:
        return simulation.run()
    handler = _TraceHandler(simulation)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        return simulation.run()
    finally:
        root.removeHandler(handler)


class _TraceHandler(logging.Handler):
    def __init__(self, simulation: Simulation) -> None:
        super().__init__()
        self._simulation = simulation

    def emit(self, record: logging.LogRecord) -> None:
        self._simulation.note(f"  agent {record.threadName}: {record.getMessage()}")
