"""``agency/egress``: the policy on every spelling of a private address, the platform's own
endpoints, and connections pinned to the checked address, against real loopback servers.

Names that look public are answered by a resolver override (``set_resolver``), never the
network; addresses written as IP literals go through the system's real ``getaddrinfo``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator

import httpx
import pytest

from agency.egress import (
    EgressPolicy,
    EgressRefused,
    egress_policy,
    guarded_client,
    open_smtp,
    postgres_target,
    set_resolver,
)
from agency.errors import PermanentNodeError, TransientNodeError
from agency.settings import Settings, get_settings
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.smtp import SmtpServer

SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "0x7f000001",
    "localhost",
    "localhost.",  # trailing dot
    "LOCALHOST",
    "0.0.0.0",
    "0",
    "::1",
    "[::1]",
    "::",
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "::ffff:7f00:1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "169.254.169.254",  # cloud metadata
    "::ffff:169.254.169.254",
    "fe80::1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "fd00::1",  # unique-local
    "fc00::1",
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
]


@pytest.fixture
def closed() -> Iterator[EgressPolicy]:
    """The product's default: nothing allow-listed (the test session allows loopback)."""
    settings = Settings(egress_allow=[])
    yield egress_policy(settings)


@pytest.fixture
def resolver() -> Iterator[dict[str, list[str]]]:
    """Names answered from this mapping (IP literals still by the system)."""
    answers: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        if host in answers:
            return answers[host]
        from agency.egress import system_resolve

        return system_resolve(host, port)

    set_resolver(resolve)
    get_settings.cache_clear()
    try:
        yield answers
    finally:
        set_resolver(None)
        get_settings.cache_clear()


@pytest.mark.parametrize("host", SPELLINGS)
def test_every_spelling_of_a_non_public_address_is_refused(closed: EgressPolicy, host: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        closed.check(host, 80)
    assert isinstance(refused.value, PermanentNodeError)
    assert f"Refusing to connect to {host}" in str(refused.value)
    assert "AGENCY_EGRESS_ALLOW" in str(refused.value)


def test_a_public_address_passes(closed: EgressPolicy) -> None:
    assert [str(a) for a in closed.check("93.184.215.14", 443)] == ["93.184.215.14"]
    assert [str(a) for a in closed.check("2606:4700::6810:84e5", 443)] == ["2606:4700::6810:84e5"]


def test_reasons_are_plain(closed: EgressPolicy) -> None:
    reasons = {}
    for host in ("127.0.0.1", "169.254.169.254", "10.0.0.1", "::ffff:127.0.0.1"):
        with pytest.raises(EgressRefused) as refused:
            closed.check(host, 80)
        reasons[host] = refused.value.reason
    assert reasons["127.0.0.1"] == "it is a loopback address (127.0.0.1)"
    assert "link-local" in reasons["169.254.169.254"] and "metadata" in reasons["169.254.169.254"]
    assert reasons["10.0.0.1"] == "it is a private network address (10.0.0.1)"
    assert (
        reasons["::ffff:127.0.0.1"] == "it is a loopback address (127.0.0.1 inside ::ffff:7f00:1)"
    )


def test_allow_list_takes_hosts_ips_and_networks(resolver: dict[str, list[str]]) -> None:
    resolver["db.internal"] = ["10.1.2.3"]
    resolver["other.internal"] = ["10.9.9.9"]
    policy = egress_policy(Settings(egress_allow=["db.internal", "192.168.0.0/16", "fd00::5"]))
    assert [str(a) for a in policy.check("db.internal", 5432)] == ["10.1.2.3"]
    assert [str(a) for a in policy.check("192.168.7.7", 80)] == ["192.168.7.7"]
    assert [str(a) for a in policy.check("fd00::5", 80)] == ["fd00::5"]
    for refused in ("other.internal", "10.1.2.3", "fd00::6"):
        with pytest.raises(EgressRefused):
            policy.check(refused, 80)


def test_allow_list_reads_the_env_and_the_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENCY_EGRESS_ALLOW", raising=False)
    monkeypatch.setenv("AGENCY_SCRAPE_ALLOW_HOSTS", '["10.0.0.7"]')
    assert Settings().egress_allow == ["10.0.0.7"]
    monkeypatch.setenv("AGENCY_EGRESS_ALLOW", "10.0.0.0/8, db.internal")
    assert Settings().egress_allow == ["10.0.0.0/8", "db.internal"]


def test_a_public_looking_name_of_a_private_address_is_refused(
    closed: EgressPolicy, resolver: dict[str, list[str]]
) -> None:
    resolver["api.acme.test"] = ["127.0.0.1"]
    resolver["split.acme.test"] = ["93.184.215.14", "10.0.0.1"]  # one answer private
    policy = egress_policy(Settings(egress_allow=[]))
    for host in ("api.acme.test", "split.acme.test"):
        with pytest.raises(EgressRefused, match=f"Refusing to connect to {host}"):
            policy.check(host, 443)


def test_a_name_that_does_not_resolve_is_transient(resolver: dict[str, list[str]]) -> None:
    with pytest.raises(TransientNodeError, match="Cannot resolve nowhere.invalid"):
        egress_policy(Settings(egress_allow=[])).check("nowhere.invalid", 80)


def test_the_platform_services_are_refused_even_when_their_range_is_allowed() -> None:
    settings = Settings(
        egress_allow=["127.0.0.0/8"],
        database_url="postgresql+psycopg://agency@127.0.0.1:5432/agency",
        vault_addr="http://127.0.0.1:8200",
        egress_platform_endpoints=["127.0.0.1:9464"],
    )
    env = {
        **os.environ,
        "PREFECT_REDIS_MESSAGING_HOST": "localhost",
        "PREFECT_REDIS_MESSAGING_PORT": "6379",
        "PREFECT_SERVER_DOCKET_URL": "redis://127.0.0.1:6380/1",
    }
    policy = egress_policy(settings, env)
    api = httpx.URL(os.environ["PREFECT_API_URL"])
    services = [
        (api.host, api.port),  # Prefect API
        ("127.0.0.1", 5432),  # platform DB
        ("127.0.0.1", 8200),  # Vault
        ("127.0.0.1", 6379),  # Redis (named localhost)
        ("127.0.0.1", 6380),  # Redis of Prefect's docket
        ("127.0.0.1", settings.gateway_port),
        ("127.0.0.1", settings.portal_port),
        ("127.0.0.1", 9464),
        ("::ffff:127.0.0.1", 5432),
        ("localhost", 5432),
    ]
    for host, port in services:
        with pytest.raises(EgressRefused, match="is one of the platform's own services"):
            policy.check(host, port)
    assert policy.check("127.0.0.1", 5433)  # the allow-listed range, another port


def test_a_wildcard_bind_refuses_every_local_address_on_that_port() -> None:
    policy = egress_policy(Settings(egress_allow=["0.0.0.0/0", "::/0"], gateway_host="0.0.0.0"))
    for host in ("127.0.0.1", "10.0.0.3", "::1"):
        with pytest.raises(EgressRefused, match="platform's own services"):
            policy.check(host, 8080)
    assert policy.check("93.184.215.14", 8080)


def test_http_connects_to_the_checked_address_and_keeps_the_name(
    http_server: HttpServer, resolver: dict[str, list[str]]
) -> None:
    """``api.acme.test`` exists only in the override: a second resolution by httpx would fail,
    so an answer proves the connection went to the address that was checked."""
    resolver["api.acme.test"] = ["127.0.0.1"]
    http_server.respond("/today", {"day": "mon"})
    port = httpx.URL(http_server.url("/")).port
    policy = egress_policy(Settings(egress_allow=["api.acme.test"]))
    with guarded_client(policy) as http:
        answer = http.get(f"http://api.acme.test:{port}/today?day=mon")
    assert answer.json() == {"day": "mon"}
    assert str(answer.url) == f"http://api.acme.test:{port}/today?day=mon"
    seen = http_server.requests_to("/today")[-1]
    assert seen.headers["host"] == f"api.acme.test:{port}"


def test_a_redirect_to_a_private_address_is_refused(
    http_server: HttpServer, resolver: dict[str, list[str]]
) -> None:
    resolver["public.acme.test"] = ["127.0.0.1"]
    port = httpx.URL(http_server.url("/")).port
    http_server.respond("/hop", Reply(302, headers={"location": http_server.url("/secret")}))
    http_server.respond("/secret", {"secret": True})
    policy = egress_policy(Settings(egress_allow=["public.acme.test"]))  # the name, not 127/8
    with guarded_client(policy, follow_redirects=True) as http:
        with pytest.raises(EgressRefused, match="Refusing to connect to 127.0.0.1"):
            http.get(f"http://public.acme.test:{port}/hop")
    assert http_server.requests_to("/secret") == []


def test_a_redirect_to_the_prefect_api_is_refused_with_loopback_allowed(
    http_server: HttpServer,
) -> None:
    api = os.environ["PREFECT_API_URL"]
    http_server.respond("/hop", Reply(302, headers={"location": f"{api}/health"}))
    policy = egress_policy(Settings(egress_allow=["127.0.0.0/8"]))
    with guarded_client(policy, follow_redirects=True) as http:
        with pytest.raises(EgressRefused, match="platform's own services"):
            http.get(http_server.url("/hop"))


def test_smtp_connects_to_the_checked_address(
    smtp_tls_server: SmtpServer, resolver: dict[str, list[str]]
) -> None:
    resolver["mail.acme.test"] = ["127.0.0.1"]
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    allowed = egress_policy(Settings(egress_allow=["mail.acme.test"]))
    smtp = open_smtp(
        "mail.acme.test",
        smtp_tls_server.port,
        security="starttls",
        context=context,
        timeout=10,
        policy=allowed,
    )
    with smtp:
        assert smtp.sock is not None and smtp.sock.getpeername()[0] == "127.0.0.1"
        assert smtp.ehlo()[0] == 250
    closed = egress_policy(Settings(egress_allow=[]))
    with pytest.raises(EgressRefused, match="mail.acme.test"):
        open_smtp(
            "mail.acme.test",
            smtp_tls_server.port,
            security="none",
            context=context,
            timeout=10,
            policy=closed,
        )


def test_postgres_gets_the_checked_hostaddr_and_no_socket_path(
    resolver: dict[str, list[str]],
) -> None:
    resolver["db.acme.test"] = ["93.184.215.14"]
    policy = egress_policy(Settings(egress_allow=[]))
    assert postgres_target("db.acme.test", 5432, policy) == {
        "host": "db.acme.test",
        "hostaddr": "93.184.215.14",
        "port": 5432,
    }
    for host in ("/var/run/postgresql", "@abstract", "db.acme.test,127.0.0.1", ""):
        with pytest.raises(EgressRefused, match="not a socket"):
            postgres_target(host, 5432, policy)
