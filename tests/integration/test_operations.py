"""The operator's tools against real Docker, Consul and DNS: explain, sync, resolve, list, /metrics, /healthz, JSON logs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.rig import eventually, free_port, run_registrator


def explain(agent, container, *flags: str) -> dict:
    result = run_registrator("explain", "--json", "--hostname", agent.hostname, "-ip", agent.ip, *flags,
                             container.get_wrapped_container().name, agent.consul.uri)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_explain_names_the_key_or_rule_behind_each_field(agent, workload):
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_REGION": "eu", "SERVICE_CHECK_HTTP": "/"},
                   labels={"SERVICE_TAGS": "a,b", "SERVICE_A.B": "bad"}, ports={80: None})

    found = explain(agent, web)

    [service] = found["services"]
    assert (service["name"], service["address"], service["port"]) == ("web", agent.ip, int(web.get_exposed_port(80)))
    assert service["why"]["name"] == "env SERVICE_NAME"
    assert service["why"]["address"] == "rule 7: published port, -ip"
    assert service["why"]["tags"] == "label SERVICE_TAGS"
    assert "env SERVICE_REGION" in service["why"]["meta"]
    assert service["checks"][0]["HTTP"].endswith(f":{web.get_exposed_port(80)}/")
    assert any("label SERVICE_A.B" in w for w in found["warnings"])


def test_explain_on_each_kind_of_container(agent, workload, network, docker_client):
    net = network()
    internal = workload("http", env={"SERVICE_NAME": "inside"}, network=net.name)
    owner = workload("tcp", env={"SERVICE_IGNORE": "true"}, ports={80: None})
    sidecar = workload("http", env={"SERVICE_NAME": "sidecar"}, network_mode=f"container:{owner.get_wrapped_container().id}")
    ecs = workload("tcp",
                   labels={"com.amazonaws.ecs.task-arn": "arn:aws:ecs:r:1:task/c/t",
                           "com.amazonaws.ecs.container-name": "lookupd"},
                   ports={9000: None})
    unpublished = workload("http", env={"SERVICE_NAME": "hidden"})

    assert explain(agent, internal, "-internal")["services"][0]["why"]["address"] == "rule 6: -internal, the container's address"
    assert explain(agent, internal, "--network", net.name)["services"][0]["why"]["address"] == f"rule 4: --network {net.name}"
    assert explain(agent, sidecar)["services"][0]["port"] == int(owner.get_exposed_port(80))
    assert explain(agent, ecs)["services"][0]["why"]["name"] == "ECS container label (--ecs-name container)"
    hidden = explain(agent, unpublished)
    assert hidden["services"] == [] and "no reachable port" in hidden["not_registered"][0]
    text = run_registrator("explain", "--hostname", "h", "-ip", "10.0.0.5", internal.get_wrapped_container().name)
    assert "not registered: port 80/tcp: no reachable port" in text.stdout


def test_explain_of_a_missing_container_is_one_clear_error(agent):
    result = run_registrator("explain", "--hostname", "h", "-ip", "10.0.0.5", "no-such-container")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: no container 'no-such-container'"


def test_sync_once_dry_run_prints_the_diff_and_writes_nothing(agent, workload, consul):
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    writes = consul.writes()
    args = ("sync", "--once", "--hostname", agent.hostname, "-ip", agent.ip, consul.uri)

    dry = run_registrator(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"register    {agent.hostname}:{web.get_wrapped_container().name}:80 (web at {agent.ip}:" in dry.stdout
    assert dry.stdout.strip().endswith("1 services would change")
    assert consul.writes() == writes and consul.services() == {}

    assert run_registrator(*args).stdout.strip().endswith("1 services changed")
    assert set(consul.services()) == {f"{agent.hostname}:{web.get_wrapped_container().name}:80"}
    assert run_registrator(*args, "--dry-run").stdout.strip() == "in sync: nothing to change"


def test_resolve_prints_what_a_consumer_sees(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_TAGS": "blue"}, ports={80: None})
    other = workload("http", env={"SERVICE_NAME": "web", "SERVICE_TAGS": "green"}, ports={80: None})
    eventually(lambda: len(consul.services()) == 2, what="registered")
    dns = f"127.0.0.1:{consul.dns_port}"

    everything = run_registrator("resolve", "web", "--dns", dns)
    assert everything.returncode == 0, everything.stderr
    assert sorted(everything.stdout.split()) == sorted(f"{agent.ip}:{c.get_exposed_port(80)}" for c in (web, other))
    assert run_registrator("resolve", "web", "--tag", "blue", "--dns",
                           dns).stdout.split() == [f"{agent.ip}:{web.get_exposed_port(80)}"]
    missing = run_registrator("resolve", "nothing", "--dns", dns)
    assert missing.returncode == 1 and "no healthy instances" in missing.stderr
    for argv, message in (([("a" * 64)], f"NAME {'a' * 64!r}: not a DNS name: A DNS label is > 63 octets long."),
                          (["web", "--domain", ".."], "--domain '..': not a DNS name: A DNS label is empty.")):
        bad = run_registrator("resolve", *argv, "--dns", dns)
        assert (bad.returncode, bad.stderr.strip().splitlines()[-1]) == (1, f"Error: {message}"), bad.stderr


def test_list_all_and_service_filter_with_check_status(agent, workload, consul):
    agent.start()
    workload("http", env={"SERVICE_NAME": "web", "SERVICE_CHECK_TTL": "1m"}, ports={80: None})
    workload("http", env={"SERVICE_NAME": "api"}, ports={80: None})
    consul.put("/v1/agent/service/register", b'{"ID": "foreign", "Name": "foreign", "Port": 1}')
    eventually(lambda: len(consul.services()) == 3, what="registered")

    mine = json.loads(agent.cli("list", "--json").stdout)
    assert {(r["name"], r["checks"]) for r in mine} == {("web", "critical"), ("api", "none")}
    everything = json.loads(run_registrator("list", "--all", "--json", consul.uri).stdout)
    assert {r["name"] for r in everything} >= {"web", "api", "foreign", "consul"}
    only = json.loads(run_registrator("list", "--all", "--service", "foreign", "--json", consul.uri).stdout)
    assert [r["id"] for r in only] == ["foreign"]


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_move_as_containers_start_and_stop(agent, workload):
    port = free_port()
    agent.start("--listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    before = scrape(url)
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: scrape(url)[("registrator_services_owned", ())] == 1, what="one service owned")

    web.get_wrapped_container().stop(timeout=1)
    eventually(lambda: scrape(url)[("registrator_services_owned", ())] == 0, what="none owned")
    after = scrape(url)
    assert after[("registrator_registrations_total", ())] == before[("registrator_registrations_total", ())] + 1
    assert after[("registrator_deregistrations_total", ())] == before[("registrator_deregistrations_total", ())] + 1
    assert after[("registrator_events_total", (("action", "start"),))] >= 1
    assert after[("registrator_events_total", (("action", "die"),))] >= 1
    assert after[("registrator_consul_requests_total", (("call", "agent/service/register"), ("outcome", "ok")))] >= 1
    assert after[("registrator_reconcile_duration_seconds_count",
                  ())] > before.get(("registrator_reconcile_duration_seconds_count", ()), 0)


def test_healthz_flips_when_consul_stops(make_agent, private_consul):
    consul = private_consul()
    agent = make_agent(consul)
    port = free_port()
    agent.start("--listen", f"127.0.0.1:{port}", "--consul-timeout", "1")

    def healthz() -> tuple[int, dict]:
        try:
            response = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = healthz()
    assert status == 200 and body["docker"] == "ok" and body["consul"] == "ok"
    consul.stop()
    status, body = healthz()
    assert status == 503 and "ConnectionError" in body["consul"]
    consul.start()
    eventually(lambda: healthz()[0] == 200, timeout=5, what="healthy again")


def test_json_logs_name_the_container(agent, workload):
    agent.start("--log-format", "json")
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    name = web.get_wrapped_container().name
    eventually(lambda: f'"container": "{name}"' in agent.log(), what="a JSON line about the container")

    lines = [json.loads(line) for line in agent.log().splitlines() if line.startswith("{")]
    registered = [line for line in lines if line.get("container") == name]
    assert registered[0]["level"] == "info" and "registered" in registered[0]["message"]


def test_help_everywhere_and_one_line_errors():
    for command in ([], ["run"], ["list"], ["explain"], ["sync"], ["resolve"]):
        result = run_registrator(*command, "--help")
        assert result.returncode == 0 and "Examples:" in result.stdout, command
    bad = run_registrator("run", "--listen", "nonsense")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "Error: --listen 'nonsense': expected HOST:PORT"
    assert run_registrator("--version").stdout.startswith("registrator, version ")


def test_explain_asks_consul_about_script_checks_like_run_and_says_when_it_cannot(agent, workload):
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_CHECK_SCRIPT": "true"}, ports={80: None})
    found = explain(agent, web, "--allow-script-checks")
    assert found["services"][0]["checks"][0]["Args"] == ["true"]

    unreachable = run_registrator("explain", "--hostname", "h", "-ip", "10.0.0.5", "--allow-script-checks",
                                  web.get_wrapped_container().name, f"consul://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 0, unreachable.stderr
    assert "note: Consul" in unreachable.stderr and "shown as a Consul agent that runs them would get them" in unreachable.stderr


def test_explain_of_what_is_no_container_name_says_so_in_one_line(agent):
    """`explain ''` was "HTTP 301", and `explain ../version` asked the engine another path (issue 21)."""
    for reference in ("", "../version", "/web"):
        result = run_registrator("explain", "--hostname", "h", "-ip", "10.0.0.5", reference, agent.consul.uri)
        assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (1, f"Error: no container {reference!r}"), result


def test_something_else_on_the_consul_port_is_one_line_and_never_a_traceback(fake_endpoint):
    """A web server where Consul should be answers 200 with HTML, 404 to the rest (issue 21: JSONDecodeError exits)."""
    other = fake_endpoint(lambda method, path, headers: (200, "<html>It works!</html>") if path == "/v1/status/leader"
                          else (404, "<html>no</html>"))
    uri = other.url.replace("http://", "consul://")
    listed = run_registrator("list", uri)
    started = run_registrator("-retry-attempts", "1", "-retry-interval", "100", "--hostname", "h", "-ip", "127.0.0.1", uri)
    assert (listed.returncode, listed.stderr.strip().splitlines()[-1]) == (1, "Error: Consul agent/checks: unexpected answer "
                                                                              "'(None, None)'")
    synced = run_registrator("sync", "--once", "--dry-run", "--hostname", "h", "-ip", "127.0.0.1", uri)
    assert started.returncode == 1 and "Traceback" not in started.stderr, started.stderr
    not_json = f"Consul status/leader at {other.url}: the answer is not JSON: Expecting value: line 1 column 1 (char 0)"
    assert started.stderr.strip().splitlines()[-1] == f"Error: Consul at {other.url} not reachable after 2 attempts: {not_json}"
    assert (synced.returncode, synced.stderr.strip().splitlines()[-1]) == (1, f"Error: Consul at {other.url} not reachable "
                                                                              f"after 1 attempt: {not_json}")


def test_a_docker_host_that_is_a_regular_file_is_named(agent, tmp_path):
    regular = tmp_path / "hostname"
    regular.write_text("not a socket\n")
    result = run_registrator("explain", "--hostname", "h", "-ip", "10.0.0.5", "web", agent.consul.uri,
                             env={"DOCKER_HOST": f"unix://{regular}"})
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (
        1, f"Error: cannot connect to Docker at unix://{regular}: {regular} is not a socket"), result.stderr
