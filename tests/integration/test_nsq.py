"""The motivating case, for real: nsqd finds every nsqlookupd through Consul DNS, and a consumer that
knows only Consul DNS finds nsqlookupd, through it nsqd, and reads the message published there."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from tests.integration.rig import ROOT, eventually, run_registrator


def resolve(consul, name: str) -> list[str]:
    result = run_registrator("resolve", name, "--dns", f"127.0.0.1:{consul.dns_port}")
    return result.stdout.split() if result.returncode == 0 else []


def test_nsqd_and_its_consumers_discover_everything_through_consul_dns(agent, workload, network, consul):
    net = network()
    agent.start("-internal", "-explicit")
    lookupd_env = {"SERVICE_4160_NAME": "nsqlookupd-tcp", "SERVICE_4161_NAME": "nsqlookupd-http"}
    for _ in range(2):
        workload("nsq", env=lookupd_env, network=net.name, command=["nsqlookupd"])
    lookupds = eventually(lambda: (found := resolve(consul, "nsqlookupd-tcp")) and len(found) == 2 and found,
                          timeout=10, what="two nsqlookupd in Consul DNS")

    # nsqd's entrypoint, played by the test: every lookupd from the SRV answer
    args = " ".join(f"--lookupd-tcp-address={address}" for address in lookupds)
    workload("nsq", env={"SERVICE_4150_NAME": "nsqd", "SERVICE_4151_NAME": "nsqd-http"}, network=net.name,
             command=["sh", "-c", f"exec nsqd {args} --broadcast-address=$(hostname -i)"])
    [nsqd_http] = eventually(lambda: resolve(consul, "nsqd-http"), timeout=10, what="nsqd in Consul DNS")

    urllib.request.urlopen(urllib.request.Request(f"http://{nsqd_http}/pub?topic=orders", data=b"order-42", method="POST"),
                           timeout=5)
    lookupd_http = eventually(lambda: resolve(consul, "nsqlookupd-http"), what="nsqlookupd HTTP in Consul DNS")
    for address in lookupd_http:
        eventually(lambda a=address: _producers(a, "orders"), timeout=10, what=f"nsqd registered with {address}")

    nsq_bin = Path(subprocess.run(["bash", str(ROOT / "scripts" / "nsq.sh")], capture_output=True, text=True,
                                  check=True).stdout.strip())
    consumer = subprocess.run(
        [str(nsq_bin / "nsq_tail"), "--topic=orders", "-n", "1", *[f"--lookupd-http-address={a}" for a in lookupd_http]],
        capture_output=True, text=True, timeout=30,
    )
    assert consumer.stdout.strip() == "order-42", consumer.stderr


def _producers(lookupd_http: str, topic: str) -> list:
    try:
        body = json.loads(urllib.request.urlopen(f"http://{lookupd_http}/lookup?topic={topic}", timeout=2).read())
    except OSError:
        return []
    return list(body.get("producers", []))
