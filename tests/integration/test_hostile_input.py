"""What a container supplies is hostile (issue 21): refused or left out in one line naming the
container and the key, never registered in a form Consul cannot serve or address again."""

from __future__ import annotations

import json
import re
import uuid

from tests.integration.rig import Agent, eventually


def test_an_id_with_a_format_character_is_refused_and_the_other_containers_are_registered(agent, workload, consul):
    """Consul took SERVICE_ID=web<U+202E>evil, then answered 400 to every URL with it: never removable,
    and the loss probe took Consul for unreachable for ever."""
    agent.start()
    hostile = workload("http", env={"SERVICE_NAME": "hostile", "SERVICE_ID": "web\u202eevil", "SERVICE_TAGS": "ok,b\u200bad"},
                       ports={80: None})
    workload("http", env={"SERVICE_NAME": "fine"}, ports={80: None})
    eventually(lambda: [s["Service"] for s in consul.services().values()] == ["fine"], timeout=10, what="only the fine one")
    name = hostile.get_wrapped_container().name
    expected = (f"container {name}: env SERVICE_ID: service ID 'web\\u202eevil' contains an invisible character (U+202E); "
                "not registered")
    eventually(lambda: expected in agent.log(), what="one line naming the container and the key")
    assert "\u202e" not in agent.log()


def test_a_template_that_cannot_take_a_containers_data_says_so_in_gos_words(agent, workload, consul):
    agent.start("-tags", '{{mIndex "a" .Name}}')
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: [s["Tags"] for s in consul.services().values() if s["Service"] == "web"] == [[]],
               what="registered without tags")
    expected = (f"container {web.get_wrapped_container().name}: -tags template '{{{{mIndex \"a\" .Name}}}}': "
                "mIndex: wrong type of argument (string, string); its tags are left out")
    eventually(lambda: expected in agent.log(), what="one line in Go's words")
    assert "AttributeError" not in agent.log()


def test_a_check_that_can_never_pass_is_left_out_and_the_service_registered(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_CHECK_HTTP": "/health%zz"}, ports={80: None})
    found = eventually(lambda: [sid for sid, s in consul.services().items() if s["Service"] == "web"], timeout=10,
                       what="registered")
    checks = json.loads(consul.get("/v1/agent/checks")).values()
    assert [c["CheckID"] for c in checks if c["ServiceID"] in found and c["Type"] == "http"] == []
    expected = (f"container {web.get_wrapped_container().name}: env SERVICE_CHECK_HTTP: '/health%zz' is no URL path Consul takes "
                "(an invalid %-escape); check left out")
    eventually(lambda: expected in agent.log(), what="one line naming the key")
    assert len(found) == 1


def test_a_container_name_too_long_for_the_default_id_is_registered_under_a_cut_id(agent, workload, consul):
    """A 253-character container name made the default ID too long, and the container was not registered."""
    agent.start()
    name = "n" * 245 + uuid.uuid4().hex[:8]
    workload("http", env={"SERVICE_NAME": "long"}, ports={80: None}, name=name)
    [service_id] = eventually(lambda: [sid for sid, s in consul.services().items() if s["Service"] == "long"], timeout=10,
                              what="registered")
    assert len(service_id) == 256 and service_id.startswith(f"{agent.hostname}:nnnn") and service_id.endswith(":80")


def test_two_agents_with_one_host_identity_each_say_so_naming_the_other(agent, workload, consul, tmp_path):
    """A cloned machine's name, or a second agent started by hand with other flags: each rewrites the
    other's services at every resync, and (on two hosts) removes them. Each one says so, loudly."""
    twin = Agent(hostname=agent.hostname, ip=agent.ip, consul=consul, log_path=tmp_path / "twin.log")
    agent.start("--resync", "1")
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: [s["Service"] for s in consul.services().values()] == ["web"], timeout=10, what="registered")
    try:
        twin.start("--resync", "1", "--meta", "release=2")
        instances = [eventually(lambda a=a: re.search(r"this agent: (\S+)\)", a.log()), what="its instance").group(1)
                     for a in (agent, twin)]
        for this, other, log in ((instances[0], instances[1], agent.log), (instances[1], instances[0], twin.log)):
            expected = f"another agent ({other}) wrote 1 of this host's services since this agent ({this}) last looked"
            eventually(lambda expected=expected, log=log: expected in log(), timeout=10, what=f"{this} names {other}")
    finally:
        twin.stop()
        print(f"--- twin log ---\n{twin.log()}")
