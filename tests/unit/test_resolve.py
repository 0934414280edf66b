from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rrset
import pytest

from registrator.ops.resolve import ResolveError, resolve_service


@pytest.fixture
def dns_server() -> Iterator[int]:
    """A UDP DNS responder on 127.0.0.1 answering any SRV question with web at 10.0.0.7:8080."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                data, peer = server.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.answer.append(dns.rrset.from_text(query.question[0].name, 0, "IN", "SRV", "1 1 8080 node.node.dc1.consul."))
            response.additional.append(dns.rrset.from_text("node.node.dc1.consul.", 0, "IN", "A", "10.0.0.7"))
            server.sendto(response.to_wire(), peer)

    threading.Thread(target=answer, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_dns_server_may_be_named_by_address_or_by_name(dns_server, host):
    assert resolve_service("web", "", f"{host}:{dns_server}", timeout=2) == [("10.0.0.7", 8080)]


@pytest.mark.parametrize("server", ["no-such-host.invalid:8600", "8600", "127.0.0.1:dns", "127.0.0.1:70000", "localhost:99999",
                                    "127.0.0.1:0"])
def test_a_dns_server_that_cannot_be_used_is_one_clear_error(server):
    with pytest.raises(ResolveError, match="--dns"):
        resolve_service("web", "", server, timeout=0.5)


@pytest.mark.parametrize(("name", "tag", "domain", "message"), [
    ("a" * 64, "", "consul", f"NAME {'a' * 64!r}: not a DNS name: A DNS label is > 63 octets long."),
    ("", "", "consul", "NAME '': not a DNS label"),
    ("a.b", "", "consul", "NAME 'a.b': not a DNS label"),
    ("web", "t" * 64, "consul", f"--tag {'t' * 64!r}: not a DNS name: A DNS label is > 63 octets long."),
    ("web", "", "..", "--domain '..': not a DNS name: A DNS label is empty."),
    ("web", "", "", "--domain '': not a DNS name"),
], ids=["long-name", "empty-name", "dotted-name", "long-tag", "empty-labels", "empty-domain"])
def test_a_question_that_is_no_dns_name_is_one_line_naming_the_part(name, tag, domain, message):
    with pytest.raises(ResolveError) as refused:
        resolve_service(name, tag, "127.0.0.1:1", domain)
    assert str(refused.value) == message
