"""Drop-in parity with registrator: its documented examples, flags and metadata, against real
Docker, Consul and dig. Each test asserts the exact registration the Consul agent holds."""

from __future__ import annotations

import uuid

from tests.integration.rig import eventually, run_registrator, srv_ports


def registration(consul, service_id: str) -> dict[str, object]:
    """The fields registrator sets, as the Consul agent holds them (ownership Meta left out)."""
    service = eventually(lambda: consul.services().get(service_id), what=f"service {service_id}")
    return {
        "ID": service["ID"], "Name": service["Service"], "Address": service["Address"], "Port": service["Port"],
        "Tags": service["Tags"], "Meta": {k: v for k, v in service["Meta"].items() if not k.startswith("registrator-")},
    }


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:6]}"


def host_port(container, port: int) -> int:
    return int(container.get_exposed_port(port))


def container_of(workload):
    return workload.get_wrapped_container()


# ---- registrator's documented examples (docs/user/services.md) ----

def test_redis_example(agent, workload, image_as, consul):
    agent.start()
    name = unique("redis")
    redis = workload(image_as("tcp", "redis"), name=name, ports={6379: None})

    assert registration(consul, f"{agent.hostname}:{name}:6379") == {
        "ID": f"{agent.hostname}:{name}:6379", "Name": "redis", "Address": agent.ip,
        "Port": host_port(redis, 6379), "Tags": [], "Meta": {},
    }
    assert srv_ports(consul.dns_port, "redis.service.consul") == {host_port(redis, 6379)}


def test_nginx_example_two_published_ports_become_two_suffixed_services(agent, workload, image_as, consul):
    agent.start()
    nginx = workload(image_as("http", "nginx"), ports={80: None, 443: None})
    name = container_of(nginx).name

    assert registration(consul, f"{agent.hostname}:{name}:443")["Name"] == "nginx-443"
    assert registration(consul, f"{agent.hostname}:{name}:80")["Name"] == "nginx-80"
    assert srv_ports(consul.dns_port, "nginx-443.service.consul") == {host_port(nginx, 443)}
    assert srv_ports(consul.dns_port, "nginx-80.service.consul") == {host_port(nginx, 80)}


def test_port_specific_name_id_and_attribute_example(agent, workload, image_as, consul):
    agent.start()
    env = {"SERVICE_443_NAME": "https", "SERVICE_443_ID": "https.12345", "SERVICE_443_SNI": "enabled"}
    nginx = workload(image_as("http", "nginx"), env=env, ports={80: None, 443: None})

    assert registration(consul, "https.12345") == {
        "ID": "https.12345", "Name": "https", "Address": agent.ip, "Port": host_port(nginx, 443),
        "Tags": [], "Meta": {"sni": "enabled"},
    }
    assert registration(consul, f"{agent.hostname}:{container_of(nginx).name}:80")["Name"] == "nginx-80"
    assert srv_ports(consul.dns_port, "https.service.consul") == {host_port(nginx, 443)}


def test_tags_in_order_and_resolvable_by_tag(agent, workload, consul, resolve):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_TAGS": r"v2,prod,a\,b"}, ports={80: None})

    assert registration(consul, f"{agent.hostname}:{container_of(web).name}:80")["Tags"] == ["v2", "prod", "a,b"]
    assert srv_ports(consul.dns_port, "prod.web.service.consul") == {host_port(web, 80)}
    assert resolve("v1.web.service.consul") == []


def test_only_truthy_ignore_values_ignore(agent, workload, consul):
    agent.start()
    workload("http", env={"SERVICE_NAME": "ignored", "SERVICE_IGNORE": "true"}, ports={80: None})
    kept = workload("http", env={"SERVICE_NAME": "kept", "SERVICE_IGNORE": "false"}, ports={80: None})

    registration(consul, f"{agent.hostname}:{container_of(kept).name}:80")
    assert {s["Service"] for s in consul.services().values()} == {"kept"}


def test_attributes_become_meta_without_check_settings(agent, workload, consul):
    agent.start()
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_REGION": "eu", "SERVICE_CHECK_HTTP": "/health"},
                   labels={"SERVICE_80_ZONE": "a"}, ports={80: None})

    assert registration(consul, f"{agent.hostname}:{container_of(web).name}:80")["Meta"] == {"region": "eu", "zone": "a"}


def test_udp_ports_are_registered_with_udp_id_and_tag(agent, workload, consul):
    agent.start()
    dns = workload("multiport", env={"SERVICE_NAME": "dns"}, ports={"53/udp": None})

    found = registration(consul, f"{agent.hostname}:{container_of(dns).name}:53:udp")
    assert (found["Name"], found["Tags"]) == ("dns", ["udp"])


# ---- the command line ----

def test_a_registrator_command_line_runs_unchanged(agent, workload, consul):
    argv = ["-ip", "10.0.0.5", "-internal", "-explicit", "-tags", 'prod,{{mIndex "team" .Config.Labels}}', "-resync", "30",
            "-cleanup", "-deregister", "on-success", "-retry-attempts", "-1", "-retry-interval", "2000",
            "-useIpFromLabel", "my.ip", consul.uri]
    agent.launch(argv, env={"REGISTRATOR_HOSTNAME": agent.hostname})
    named = workload("http", env={"SERVICE_NAME": "web"}, labels={"my.ip": "127.0.0.20/24", "team": "core"})
    workload("http")  # no name: skipped by -explicit

    assert registration(consul, f"{agent.hostname}:{container_of(named).name}:80") == {
        "ID": f"{agent.hostname}:{container_of(named).name}:80", "Name": "web", "Address": "127.0.0.20",
        "Port": 80, "Tags": ["prod", "core"], "Meta": {},
    }
    assert len(consul.services()) == 1


def test_go_boolean_spelling_and_environment_variables(agent, workload, consul):
    env = {"REGISTRATOR_HOSTNAME": agent.hostname, "REGISTRATOR_IP": "127.0.0.30", "REGISTRATOR_TAGS": "from-env"}
    agent.launch(["-internal=false", "--explicit=0", consul.uri], env=env)
    web = workload("http", ports={80: None})

    found = registration(consul, f"{agent.hostname}:{container_of(web).name}:80")
    assert (found["Address"], found["Port"], found["Tags"]) == ("127.0.0.30", host_port(web, 80), ["from-env"])


def test_internal_registers_container_address_and_exposed_port(agent, workload, consul, resolve, docker_client):
    agent.start("-internal")
    web = workload("http", env={"SERVICE_NAME": "inside"})  # nothing published
    container_ip = docker_client.api.inspect_container(container_of(web).id)["NetworkSettings"]["IPAddress"]

    assert registration(consul, f"{agent.hostname}:{container_of(web).name}:80")["Address"] == container_ip
    assert srv_ports(consul.dns_port, "inside.service.consul") == {80}
    assert resolve("inside.service.consul", "A") == [container_ip]


def test_port_suffix_flag(agent, workload, consul):
    agent.start("--port-suffix", "never")
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None, 443: None})

    eventually(lambda: len(consul.services()) == 2, what="two services")
    assert {s["Service"] for s in consul.services().values()} == {"web"}


def test_global_meta(agent, workload, consul):
    agent.start("--meta", "team=core", "--meta", "env=prod")
    web = workload("http", env={"SERVICE_NAME": "web", "SERVICE_ENV": "staging"}, ports={80: None})

    assert registration(consul, f"{agent.hostname}:{container_of(web).name}:80")["Meta"] == {"team": "core", "env": "staging"}


def test_host_identity_defaults_to_the_docker_daemon_name(agent, workload, consul, docker_client):
    agent.launch(["run", "--ip", agent.ip, consul.uri])
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    service_id = f"{docker_client.info()['Name']}:{container_of(web).name}:80"
    assert registration(consul, service_id)["ID"] == service_id


def test_consul_tls_scheme_with_client_certificate(agent, workload, consul):
    env = {"CONSUL_CACERT": consul.tls_file("ca"), "CONSUL_CLIENT_CERT": consul.tls_file("client-cert"),
           "CONSUL_CLIENT_KEY": consul.tls_file("client-key")}
    agent.launch(["-ip", agent.ip, "--hostname", agent.hostname, f"consul-tls://127.0.0.1:{consul.https_port}"], env=env)
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    registration(consul, f"{agent.hostname}:{container_of(web).name}:80")
    listed = run_registrator("list", "--hostname", agent.hostname, f"consul-tls://127.0.0.1:{consul.https_port}", env=env)
    assert "web" in listed.stdout, listed.stderr


def test_consul_tls_without_the_client_certificate_fails_clearly(agent, consul):
    result = run_registrator("list", "--hostname", "h", f"consul-tls://127.0.0.1:{consul.https_port}",
                             env={"CONSUL_CACERT": consul.tls_file("ca")})
    assert result.returncode == 1
    assert f"https://127.0.0.1:{consul.https_port}" in result.stderr


def test_consul_unix_scheme(agent, workload, consul):
    agent.launch(["-ip", agent.ip, "--hostname", agent.hostname, f"consul-unix://{consul.socket}"])
    web = workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})

    registration(consul, f"{agent.hostname}:{container_of(web).name}:80")


def test_startup_errors_are_one_clear_line(consul):
    cases = {
        ("etcd://127.0.0.1:2379",): "the etcd backend is not supported",
        ("-tags", '{{httpGet "http://x"}}', consul.uri): "httpGet is not supported",
        ("-deregister", "sometimes", consul.uri): "'sometimes' is not one of",
        ("--meta", "a.b=1", consul.uri): "--meta 'a.b=1'",
        (consul.uri.replace("://", "://user:s3cret@"),): "registry URI: credentials in the Consul address are not supported",
        ("-tags", "{{toUpper}}", consul.uri): "template '{{toUpper}}': toUpper takes 1 argument, 0 given",
    }
    for argv, message in cases.items():
        result = run_registrator(*argv, "-ip", "127.0.0.1")
        assert result.returncode == 2, result
        assert message in result.stderr and "s3cret" not in result.stderr, result.stderr


def test_a_host_address_that_names_no_single_host_is_one_line_and_nothing_is_written(consul, workload):
    """A second agent started with `-ip 999.1.1.1` rewrote every service of the host (issue 21)."""
    workload("http", env={"SERVICE_NAME": "web"}, ports={80: None})
    before = (consul.services(), consul.writes())
    cases = {
        ("-ip", "999.1.1.1"): "-ip '999.1.1.1': is neither an IP address nor a host name",
        ("-ip", "0.0.0.0"): "-ip '0.0.0.0': is the unspecified address, which names no host",
        ("-ip", "224.0.0.1"): "-ip '224.0.0.1': is a multicast address",
        ("-ip", "127.0.0.1 ; x"): "-ip '127.0.0.1 ; x': is neither an IP address nor a host name",
        ("-ip", "127.0.0.1", "--ip6", "nope"): "--ip6 'nope': is not an IPv6 address",
    }
    for flags, message in cases.items():
        result = run_registrator("--hostname", "h", *flags, consul.uri)
        assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (2, f"Error: {message}"), result
    assert (consul.services(), consul.writes()) == before


def test_retry_attempts_gives_up_on_an_unreachable_consul(agent):
    result = run_registrator("-retry-attempts", "1", "-retry-interval", "100", "--hostname", "h", "-ip", "127.0.0.1",
                             "consul://127.0.0.1:1")
    assert result.returncode == 1
    assert "Consul at http://127.0.0.1:1 not reachable after 2 attempts" in result.stderr


# ---- bad metadata never stops the rest ----

def test_bad_metadata_is_warned_about_and_everything_else_registered(agent, workload, consul):
    agent.start()
    labels = {"SERVICE_80x_NAME": "a", "SERVICE_CHECK_BOGUS": "1", "SERVICE_A.B": "x", "SERVICE_NAME": "",
              "SERVICE_ÜBER": "ü", "SERVICE_REGION": "eu", "SERVICE_TAGS": "ünï,ok"}
    bad = workload("tcp", labels=labels, ports={9000: None})
    good = workload("http", env={"SERVICE_NAME": "good"}, ports={80: None})

    assert registration(consul, f"{agent.hostname}:{container_of(bad).name}:9000") == {
        "ID": f"{agent.hostname}:{container_of(bad).name}:9000", "Name": "tcp", "Address": agent.ip,
        "Port": host_port(bad, 9000), "Tags": ["ünï", "ok"], "Meta": {"region": "eu"},
    }
    registration(consul, f"{agent.hostname}:{container_of(good).name}:80")
    log = agent.log()
    for key in ("SERVICE_80x_NAME", "SERVICE_CHECK_BOGUS", "SERVICE_A.B", "SERVICE_ÜBER"):
        assert f"container {container_of(bad).name}: label {key}" in log, key
