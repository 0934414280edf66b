"""ACLs (default deny) and TLS against a real Consul: a scoped token works, bad credentials fail with
a clear message, and the token never appears in any output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
import uuid

import pytest

from tests.integration.rig import eventually, registrator_command, run_registrator

ROOT_TOKEN = "11111111-2222-3333-4444-555555555555"
ACL = (f'acl {{ enabled = true default_policy = "deny" '
       f'tokens {{ initial_management = "{ROOT_TOKEN}" agent = "{ROOT_TOKEN}" }} }}\n')
WRITE_RULES = 'service_prefix "" { policy = "write" } node_prefix "" { policy = "read" } agent_prefix "" { policy = "read" }'
READ_RULES = 'service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }'


@pytest.fixture
def secured(private_consul):
    consul = private_consul(ACL)
    consul.token = ROOT_TOKEN
    return consul


def make_token(consul, name: str, rules: str) -> dict:
    consul.put("/v1/acl/policy", json.dumps({"Name": name, "Rules": rules}).encode())
    return json.loads(consul.put("/v1/acl/token", json.dumps({"Description": name, "Policies": [{"Name": name}]}).encode()))


def tls_env(consul, **extra: str) -> dict[str, str]:
    return {"CONSUL_CACERT": consul.tls_file("ca"), "CONSUL_CLIENT_CERT": consul.tls_file("client-cert"),
            "CONSUL_CLIENT_KEY": consul.tls_file("client-key"), **extra}


def test_a_scoped_token_over_tls_works_and_is_never_printed(make_agent, secured, workload, tmp_path):
    token = make_token(secured, "registrator", WRITE_RULES)
    token_file = tmp_path / "token"
    token_file.write_text(token["SecretID"])
    agent = make_agent(secured)
    uri = f"consul-tls://127.0.0.1:{secured.https_port}"
    env = tls_env(secured, CONSUL_HTTP_TOKEN_FILE=str(token_file))
    agent.launch(["run", "--hostname", agent.hostname, "-ip", agent.ip, "--log-level", "debug", uri], env=env)
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_CHECK_TCP": "true"}, ports={80: None})

    eventually(lambda: f"{agent.hostname}:{web.get_wrapped_container().name}:80" in secured.services(), what="registered")
    listed = run_registrator("list", "--json", "--hostname", agent.hostname, uri, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == ["web"]
    for output in (agent.log(), listed.stdout, listed.stderr):
        assert token["SecretID"] not in output


def test_a_token_without_write_permission_names_the_call_and_the_accessor_not_the_secret(make_agent, secured, workload):
    token = make_token(secured, "reader", READ_RULES)
    agent = make_agent(secured)
    agent.launch(["run", "--hostname", agent.hostname, "-ip", agent.ip, "--log-level", "debug", secured.uri],
                 env={"CONSUL_HTTP_TOKEN": token["SecretID"]})
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    eventually(lambda: "agent/service/register" in agent.log() and "permission denied" in agent.log(), timeout=10,
               what="a clear permission error")
    assert token["AccessorID"] in agent.log()
    assert token["SecretID"] not in agent.log()
    assert agent.process.poll() is None, "the agent keeps running"


def test_an_unknown_token_fails_clearly(secured):
    result = run_registrator("list", "--hostname", "h", secured.uri,
                             env={"CONSUL_HTTP_TOKEN": "00000000-dead-beef-0000-000000000000"})
    assert result.returncode == 1
    assert "the ACL token is not known to Consul (yet): ACL not found" in result.stderr
    assert "dead-beef" not in result.stderr


def test_a_token_consul_does_not_know_yet_is_waited_for_and_a_rotated_one_is_read_again(make_agent, secured, workload, tmp_path):
    """Written to its file after boot, or not replicated yet: the agent exited at once with a traceback (issue 21)."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    token_file = tmp_path / "token"
    token_file.write_text(first)
    agent = make_agent(secured)
    agent.process = subprocess.Popen([*registrator_command(), "run", "--hostname", agent.hostname, "-ip", agent.ip,
                                      "-retry-interval", "200",
                                      secured.uri], stderr=open(agent.log_path, "ab"),
                                     env={**os.environ, "CONSUL_HTTP_TOKEN_FILE": str(token_file)})
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: agent.log().count("the ACL token is not known to Consul (yet)") >= 2, timeout=10, what="a clear line per "
                                                                                                              "attempt")
    assert agent.process.poll() is None and "agent:read" not in agent.log()

    secured.put("/v1/acl/policy", json.dumps({"Name": "registrator", "Rules": WRITE_RULES}).encode())
    known = json.loads(secured.put("/v1/acl/token",
                                   json.dumps({"SecretID": first, "Policies": [{"Name": "registrator"}]}).encode()))
    eventually(lambda: f"{agent.hostname}:{web.get_wrapped_container().name}:80" in secured.services(), timeout=15,
               what="registered")

    secured.put("/v1/acl/token", json.dumps({"SecretID": second, "Policies": [{"Name": "registrator"}]}).encode())
    token_file.write_text(second)  # a secrets agent rotates the token
    delete = urllib.request.Request(f"http://{secured.http_addr}/v1/acl/token/{known['AccessorID']}", method="DELETE",
                                    headers={"X-Consul-Token": ROOT_TOKEN})
    urllib.request.urlopen(delete, timeout=5).close()
    other = workload("http", env={"SERVICE_NAME": "other"}, ports={80: None})
    eventually(lambda: f"{agent.hostname}:{other.get_wrapped_container().name}:80" in secured.services(), timeout=15,
               what="registered with the rotated token")
    assert first not in agent.log() and second not in agent.log()


def test_a_wrong_certificate_authority_fails_clearly(secured, private_consul, tmp_path):
    other_ca = tmp_path / "other"
    other_ca.mkdir()
    subprocess.run([secured.binary, "tls", "ca", "create"], cwd=other_ca, check=True, capture_output=True)
    env = tls_env(secured, CONSUL_CACERT=str(other_ca / "consul-agent-ca.pem"), CONSUL_HTTP_TOKEN=ROOT_TOKEN)
    result = run_registrator("list", "--hostname", "h", f"consul-tls://127.0.0.1:{secured.https_port}", env=env)
    assert result.returncode == 1
    assert "TLS failed" in result.stderr and "certificate verify failed" in result.stderr


def test_the_tls_server_name_is_verified(secured):
    uri = f"consul-tls://127.0.0.1:{secured.https_port}"
    good = run_registrator("list", "--hostname", "h", uri, env=tls_env(secured, CONSUL_TLS_SERVER_NAME="server.dc1.consul",
                                                                         CONSUL_HTTP_TOKEN=ROOT_TOKEN))
    bad = run_registrator("list", "--hostname", "h", uri, env=tls_env(secured, CONSUL_TLS_SERVER_NAME="wrong.example",
                                                                        CONSUL_HTTP_TOKEN=ROOT_TOKEN))
    assert good.returncode == 0, good.stderr
    assert bad.returncode == 1 and "wrong.example" in bad.stderr


def test_sighup_reads_a_rotated_token_file_so_revoking_the_old_token_costs_no_failed_call(make_agent, secured, workload,
                                                                                          tmp_path):
    old = make_token(secured, "registrator", WRITE_RULES)
    token_file = tmp_path / "token"
    token_file.write_text(old["SecretID"])
    agent = make_agent(secured)
    agent.launch(["run", "--hostname", agent.hostname, "-ip", agent.ip, secured.uri],
                 env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})

    new = json.loads(secured.put("/v1/acl/token", json.dumps({"Policies": [{"Name": "registrator"}]}).encode()))
    token_file.write_text(new["SecretID"])
    agent.process.send_signal(signal.SIGHUP)
    eventually(lambda: "Consul ACL token read again from its file" in agent.log(), timeout=10, what="the file read again")
    revoke = urllib.request.Request(f"http://{secured.http_addr}/v1/acl/token/{old['AccessorID']}", method="DELETE",
                                    headers={"X-Consul-Token": ROOT_TOKEN})
    urllib.request.urlopen(revoke, timeout=5).close()

    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    eventually(lambda: f"{agent.hostname}:{web.get_wrapped_container().name}:80" in secured.services(), timeout=10,
               what="registered")
    assert "not known to Consul" not in agent.log()
    assert old["SecretID"] not in agent.log() and new["SecretID"] not in agent.log()
