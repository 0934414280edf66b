"""Restarts and outages of everything around the agent, against real Docker and Consul: the agent
survives, loses nothing and converges to `docker ps`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import docker

from tests.integration.rig import ConsulAgent, eventually, registrator_command, unavailable

SLOW_STOP = ["sh", "-c", "trap 'sleep 3; exit 0' TERM; httpd -p 80 -h /www; while true; do sleep 0.1; done"]


def names(consul) -> set[str]:
    return {s["Service"] for s in consul.services().values()}


def stop_in_background(container, timeout: int = 10) -> threading.Thread:
    thread = threading.Thread(target=lambda: container.get_wrapped_container().stop(timeout=timeout))
    thread.start()
    return thread


def running(container) -> bool:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return bool(wrapped.attrs["State"]["Running"])


# ---- graceful stop ----

def test_a_stopping_container_leaves_dns_at_the_stop_signal_not_at_exit(agent, workload, consul, resolve):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None}, command=SLOW_STOP)
    eventually(lambda: resolve("web.service.consul"), what="registered")

    stopping = stop_in_background(web)
    eventually(lambda: resolve("web.service.consul") == [], timeout=1, what="out of DNS within 1 s of docker stop")
    assert running(web), "the container is still shutting down"
    stopping.join()


def test_maintenance_mode_on_kill(agent, workload, consul, resolve):
    agent.start("--on-kill", "maintenance")
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None}, command=SLOW_STOP)
    sid = f"{agent.hostname}:{web.get_wrapped_container().name}:80"
    eventually(lambda: resolve("web.service.consul"), what="registered")

    stopping = stop_in_background(web)
    eventually(lambda: resolve("web.service.consul") == [], timeout=1, what="out of DNS")
    assert running(web) and sid in consul.services(), "still registered, in maintenance"
    assert f"_service_maintenance:{sid}" in consul.get("/v1/agent/checks").decode()
    stopping.join()
    eventually(lambda: consul.services() == {}, what="deregistered once it exited")


def test_other_signals_do_not_take_the_service_out(agent, workload, consul, resolve):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None}, command=SLOW_STOP)
    eventually(lambda: resolve("web.service.consul"), what="registered")

    web.get_wrapped_container().kill(signal="SIGHUP")  # the shell ignores HUP: a reload, not a stop
    time.sleep(1)
    assert resolve("web.service.consul")


# ---- the agent's own exit ----

def test_sigterm_leaves_registrations_in_place_by_default(agent, workload, consul):
    agent.start()
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: names(consul) == {"web"}, what="registered")

    agent.stop()
    assert agent.process.returncode == 0
    assert names(consul) == {"web"}


def test_sighup_brings_back_a_service_removed_behind_the_agents_back_without_waiting_for_a_resync(agent, workload, consul):
    agent.start("-resync", "0", "--consul-probe", "3600")
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: names(consul) == {"web"}, what="registered")
    consul.deregister_all()  # an operator's mistake; nothing the agent notices by itself for an hour

    agent.process.send_signal(signal.SIGHUP)
    eventually(lambda: names(consul) == {"web"}, what="registered again")
    assert agent.process.poll() is None


def test_deregister_on_exit(agent, workload, consul):
    agent.start("--deregister-on-exit")
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    consul.put("/v1/agent/service/register", b'{"ID": "foreign", "Name": "foreign", "Port": 1}')
    eventually(lambda: names(consul) == {"web", "foreign"}, what="registered")

    agent.stop()
    assert names(consul) == {"foreign"}


def test_after_sigkill_stale_services_go_new_ones_come_and_unchanged_ones_are_not_rewritten(agent, workload, consul):
    agent.start()
    gone = workload("http", env={"SERVICE_NAME": "gone"}, ports={80: None})
    workload("http", env={"SERVICE_NAME": "kept-1"}, ports={80: None})
    workload("http", env={"SERVICE_NAME": "kept-2"}, ports={80: None})
    eventually(lambda: names(consul) == {"gone", "kept-1", "kept-2"}, what="registered")
    os.kill(agent.process.pid, signal.SIGKILL)
    agent.process.wait()

    gone.get_wrapped_container().stop(timeout=0)
    workload("http", env={"SERVICE_NAME": "new"}, ports={80: None})
    writes = consul.writes()
    agent.start()

    eventually(lambda: names(consul) == {"kept-1", "kept-2", "new"}, what="converged")
    time.sleep(0.5)
    assert consul.writes() - writes == 2  # one deregistration, one registration


# ---- Consul outages ----

def test_consul_down_for_30s_then_back_empty_converges_within_one_resync(make_agent, private_consul, workload):
    consul = private_consul()
    agent = make_agent(consul)
    agent.start("--resync", "10", "--consul-timeout", "1")
    before = workload("http", env={"SERVICE_NAME": "before"}, ports={80: None})
    eventually(lambda: names(consul) == {"before"}, what="registered")

    consul.stop()
    deadline = time.monotonic() + 30
    before.get_wrapped_container().stop(timeout=0)
    workload("http", env={"SERVICE_NAME": "during-1"}, ports={80: None})
    workload("http", env={"SERVICE_NAME": "during-2"}, ports={80: None})
    time.sleep(max(0.0, deadline - time.monotonic()))
    assert agent.process.poll() is None, "the agent survives the outage"
    consul.start()  # a dev agent: everything registered before is lost

    eventually(lambda: names(consul) == {"during-1", "during-2"}, timeout=10, what="converged within one resync period")


def test_a_restarted_dev_consul_is_repopulated_before_the_next_resync(make_agent, private_consul, workload):
    consul = private_consul()
    agent = make_agent(consul)
    agent.start("--resync", "600", "--consul-probe", "1")
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: names(consul) == {"web"}, what="registered")

    consul.stop()
    consul.start()

    eventually(lambda: names(consul) == {"web"}, timeout=5, what="repopulated (the probe noticed, not the resync)")


def test_a_frozen_consul_only_delays_registration(make_agent, private_consul, workload):
    consul = private_consul()
    agent = make_agent(consul)
    agent.start("--consul-timeout", "1")
    consul.process.send_signal(signal.SIGSTOP)
    try:
        workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
        eventually(lambda: "ReadTimeout" in agent.log() or "timed out" in agent.log(), timeout=10, what="a timeout is logged")
    finally:
        consul.process.send_signal(signal.SIGCONT)
    eventually(lambda: names(consul) == {"web"}, timeout=15, what="registered once Consul answers")


# ---- Docker restarts ----

def restart_dockerd(log_path: Path) -> None:
    pid = int(subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True, check=True).stdout.split()[0])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, signal.SIGTERM)
    eventually(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, interval=0.2, what="dockerd stopped")
    subprocess.Popen([a.decode() for a in argv], stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def test_the_agent_survives_a_docker_restart_and_ends_equal_to_docker_ps(agent, workload, consul, docker_client, tmp_path):
    if os.geteuid() != 0:
        unavailable("restarting dockerd needs root")
    agent.start("--resync", "5")
    workload("http", env={"SERVICE_NAME": "always"}, ports={80: None}, restart_policy={"Name": "always"})
    workload("http", env={"SERVICE_NAME": "once"}, ports={80: None})
    eventually(lambda: names(consul) == {"always", "once"}, what="registered")

    restart_dockerd(tmp_path / "dockerd.log")
    eventually(lambda: _pings(docker_client), timeout=60, interval=0.5, what="dockerd back")
    workload("http", env={"SERVICE_NAME": "after"}, ports={80: None})

    assert agent.process.poll() is None, "the agent survived"
    eventually(lambda: names(consul) == {"always", "after"}, timeout=15, what="Consul equals docker ps")
    running_ports = {int(c.ports["80/tcp"][0]["HostPort"])
                     for c in docker_client.containers.list(filters={"label": "registrator-test"})}
    assert {s["Port"] for s in consul.services().values()} == running_ports


def _pings(client: docker.DockerClient) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # any failure means "not yet"
        return False


# ---- churn ----

def test_churn_with_agent_and_consul_restarts_ends_with_nothing_stale_or_missing(make_agent, private_consul, workload,
                                                                                 docker_client):
    consul = private_consul()
    agent = make_agent(consul)
    agent.start("--resync", "5", "--consul-probe", "1")
    rng = random.Random(20261126)
    live: list = []
    for step in range(150):
        if step == 50:
            os.kill(agent.process.pid, signal.SIGKILL)
            agent.process.wait()
            agent.start("--resync", "5", "--consul-probe", "1")
        if step == 100:
            consul.stop()
            consul.start()
        action = rng.random()
        if action < 0.5 or len(live) < 2:
            live.append(workload("http", env={"SERVICE_NAME": f"churn-{step % 7}"}, ports={80: None}))
        elif action < 0.7:
            live.pop(rng.randrange(len(live))).get_wrapped_container().stop(timeout=0)
        elif action < 0.85:
            live.pop(rng.randrange(len(live))).get_wrapped_container().kill()
        else:
            live.pop(rng.randrange(len(live))).get_wrapped_container().remove(force=True)
        time.sleep(rng.uniform(0, 0.05))

    def expected() -> set[str]:
        return {f"{agent.hostname}:{c.name}:80" for c in docker_client.containers.list(filters={"label": "registrator-test"})}

    eventually(lambda: set(consul.services()) == expected(), timeout=20, interval=0.5, what="0 stale, 0 missing")


def test_the_agent_waits_for_consul_with_a_clear_log_line(make_agent, consul_server, workload, tmp_path):
    late = ConsulAgent(binary=consul_server.binary, workdir=tmp_path)
    agent = make_agent(late)
    process = subprocess.Popen([*registrator_command(), "run",
                                "--hostname", agent.hostname, "-ip", agent.ip, "-retry-interval", "200", late.uri],
                               stderr=open(agent.log_path, "wb"))
    agent.process = process
    try:
        eventually(lambda: f"Consul at http://{late.http_addr}" in agent.log() and "retrying" in agent.log(), timeout=10,
                   what="a clear waiting line")
        workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
        late.start()
        eventually(lambda: names(late) == {"web"}, timeout=10, what="registered once Consul is up")
    finally:
        late.stop()
