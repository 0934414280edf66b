"""Container lifecycle against real Docker and Consul: every event is only a hint to look again."""

from __future__ import annotations

import time

from tests.integration.rig import eventually, srv_ports

# Runs until told how to exit: `echo CODE > /exit` inside the container.
EXIT_ON_REQUEST = ["sh", "-c", "while [ ! -f /exit ]; do sleep 0.1; done; exit $(cat /exit)"]


def exit_with(container, code: int) -> None:
    container.get_wrapped_container().exec_run(["sh", "-c", f"echo {code} > /exit"])
    eventually(lambda: _status(container) == "exited", timeout=5, what="container exited")


def _status(container) -> str:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    return str(wrapped.status)


def test_deregister_on_success_keeps_services_of_failed_containers(agent, workload, consul, resolve):
    agent.start("-deregister", "on-success")
    failed = workload("http", env={"SERVICE_NAME": "failed"}, ports={80: None}, command=EXIT_ON_REQUEST)
    succeeded = workload("http", env={"SERVICE_NAME": "succeeded"}, ports={80: None}, command=EXIT_ON_REQUEST)
    eventually(lambda: len(consul.services()) == 2, what="both registered")

    exit_with(failed, 3)
    exit_with(succeeded, 0)

    eventually(lambda: not resolve("succeeded.service.consul"), what="exit 0 deregistered")
    time.sleep(1)
    assert resolve("failed.service.consul"), "a non-zero exit keeps the service"
    failed.get_wrapped_container().remove()
    eventually(lambda: not resolve("failed.service.consul"), what="removed container deregistered")


def test_deregister_on_success_treats_signals_as_success(agent, workload, consul, resolve):
    agent.start("-deregister", "on-success")
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: resolve("web.service.consul"), what="registered")

    web.get_wrapped_container().kill(signal="SIGKILL")  # exit code 137

    eventually(lambda: not resolve("web.service.consul"), what="killed container deregistered")


def test_deregister_never_keeps_services_until_the_container_is_removed(agent, workload, consul, resolve):
    agent.start("-deregister", "never")
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: resolve("web.service.consul"), what="registered")

    sid = f"{agent.hostname}:{web.get_wrapped_container().name}:80"
    web.get_wrapped_container().stop(timeout=1)
    eventually(lambda: not resolve("web.service.consul"), what="out of DNS while stopping (maintenance mode)")
    time.sleep(1)
    assert sid in consul.services(), "still registered after the container stopped"
    web.get_wrapped_container().start()
    eventually(lambda: resolve("web.service.consul"), what="back in DNS after a restart")
    web.get_wrapped_container().remove(force=True)
    eventually(lambda: consul.services() == {}, what="removed container deregistered")


def test_paused_containers_leave_dns_until_unpaused(agent, workload, consul, resolve):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: resolve("web.service.consul"), what="registered")

    web.get_wrapped_container().pause()
    eventually(lambda: not resolve("web.service.consul"), what="paused container out of DNS")
    web.get_wrapped_container().unpause()
    eventually(lambda: resolve("web.service.consul"), what="unpaused container back in DNS")


def test_rename_moves_the_service_to_the_new_id(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    old = f"{agent.hostname}:{web.get_wrapped_container().name}:80"
    eventually(lambda: old in consul.services(), what="registered")

    web.get_wrapped_container().rename(f"renamed-{web.get_wrapped_container().id[:6]}")

    new = f"{agent.hostname}:renamed-{web.get_wrapped_container().id[:6]}:80"
    eventually(lambda: set(consul.services()) == {new}, what=f"only {new}")


def test_restart_with_a_new_published_port_updates_the_service(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    container = web.get_wrapped_container()
    eventually(lambda: srv_ports(consul.dns_port, "web.service.consul"), what="registered")

    container.restart(timeout=1)
    container.reload()
    new_port = int(container.ports["80/tcp"][0]["HostPort"])

    eventually(lambda: srv_ports(consul.dns_port, "web.service.consul") == {new_port}, what=f"port {new_port}")


def test_a_container_that_dies_at_once_is_not_left_registered(agent, workload, consul):
    agent.start()
    short = workload("http", env={"SERVICE_NAME": "short"}, ports={80: None}, command=["sh", "-c", "sleep 0.2"])
    eventually(lambda: _status(short) == "exited", timeout=5, what="container exited")

    eventually(lambda: consul.services() == {}, what="nothing registered")
    time.sleep(0.5)
    assert consul.services() == {}
