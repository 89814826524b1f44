"""Every outbound node behind the egress guard, on the real Prefect server, against real loopback
servers (HTTP, OpenAI-compatible, SMTP, PostgreSQL, moto S3).

The test session allow-lists loopback for the other tests; here it is cleared, so each node meets
the product's default: its loopback target is refused once (no retry), nothing reaches the
server, and the refusal is in the audit log with client and workflow. The same nodes reach the
same servers when allow-listed: that is what their own test modules do. Names that look public
are answered by a resolver override, never the network.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from sqlalchemy import select

from agency.db import AuditLog, session_scope, upgrade
from agency.egress import EgressRefused, set_resolver, system_resolve
from agency.settings import get_settings
from blocks import save_credential
from flows.daily_digest import DailyDigestSettings, daily_digest
from nodes import (
    DbQueryInput,
    HttpRequestInput,
    LlmInput,
    NotifyInput,
    ScrapeInput,
    SendEmailInput,
    StoreFileInput,
    db_query,
    http_request,
    llm,
    notify,
    scrape,
    send_email,
    store_file,
)
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.s3 import S3Server
from tests.fixtures.smtp import SmtpServer
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

PREFECT_API = os.environ["PREFECT_API_URL"]


@pytest.fixture(scope="module", autouse=True)
def platform_db() -> None:
    upgrade(get_settings().platform_database_url)


@pytest.fixture
def client() -> str:
    return f"egress-{secrets.token_hex(3)}"


def _allow(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AGENCY_EGRESS_ALLOW", value)
    get_settings.cache_clear()


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The product's default allow-list: empty."""
    _allow(monkeypatch, "")
    yield
    get_settings.cache_clear()


@pytest.fixture
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _allow(monkeypatch, "127.0.0.0/8")
    yield
    get_settings.cache_clear()


Case = Callable[[str], tuple[Any, BaseModel, Callable[[], bool]]]


def _http_request(http_server: HttpServer) -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        http_server.respond("/data", {"ok": True})
        params = HttpRequestInput(client=client, url=http_server.url("/data"))
        return http_request, params, lambda: bool(http_server.requests_to("/data"))

    return case


def _scrape(http_server: HttpServer) -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        page = Reply(text="<h1>x</h1>", headers={"content-type": "text/html"})
        http_server.respond("/page", page)
        fields = [{"name": "h", "selector": "h1"}]
        params = ScrapeInput(client=client, url=http_server.url("/page"), fields=fields)
        return scrape, params, lambda: bool(http_server.requests_to("/page"))

    return case


def _notify(http_server: HttpServer) -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        http_server.respond("/slack", Reply(text="ok"))
        save_credential(client, "slack_webhook", "alerts", {"url": http_server.url("/slack")})
        params = NotifyInput(client=client, credential="alerts", text="hi")
        return notify, params, lambda: bool(http_server.requests_to("/slack"))

    return case


def _llm(llm_server: LlmServer) -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        data = {"api_key": llm_server.api_key, "base_url": llm_server.base_url}
        save_credential(client, "openai", "default", data)
        params = LlmInput(client=client, credential="default", prompt="hello")
        return llm, params, lambda: bool(llm_server.chat_requests())

    return case


def _send_email(smtp_server: SmtpServer) -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        data = {
            "host": smtp_server.host,
            "port": smtp_server.port,
            "username": smtp_server.username,
            "password": smtp_server.password,
            "from_address": "robot@acme.test",
            "security": "none",
        }
        save_credential(client, "smtp", "default", data)
        params = SendEmailInput(
            client=client, credential="default", to=["a@acme.test"], subject="s", text="t"
        )
        return send_email, params, lambda: bool(smtp_server.messages)

    return case


def _db_query() -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        data = {"host": "127.0.0.1", "port": 5432, "database": "postgres", "username": "postgres"}
        save_credential(client, "postgres", "crm", data)
        params = DbQueryInput(client=client, credential="crm", sql="SELECT 1 AS one")
        return db_query, params, lambda: False  # nothing to observe on the server side

    return case


def _store_file(s3_server: S3Server) -> Case:
    def case(client: str) -> tuple[Any, BaseModel, Callable[[], bool]]:
        save_credential(client, "s3", "files", s3_server.credential())
        content = base64.b64encode(b"x").decode()
        params = StoreFileInput(
            client=client, credential="files", name="a.txt", content=content, encoding="base64"
        )

        def landed() -> bool:
            listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket)
            return bool(listing.get("KeyCount"))

        return store_file, params, landed

    return case


NODES = ["http_request", "scrape", "notify", "llm", "send_email", "db_query", "store_file"]


@pytest.fixture
def cases(
    http_server: HttpServer, llm_server: LlmServer, smtp_server: SmtpServer, s3_server: S3Server
) -> dict[str, Case]:
    return {
        "http_request": _http_request(http_server),
        "scrape": _scrape(http_server),
        "notify": _notify(http_server),
        "llm": _llm(llm_server),
        "send_email": _send_email(smtp_server),
        "db_query": _db_query(),
        "store_file": _store_file(s3_server),
    }


def _refusals(client: str) -> list[AuditLog]:
    with session_scope(get_settings().platform_database_url) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "egress.refused"))
        return [r for r in rows if r.detail.get("client") == client]


@pytest.mark.parametrize("kind", NODES)
def test_a_loopback_target_is_refused_by_default(
    kind: str, cases: dict[str, Case], client: str, closed: None
) -> None:
    node, params, reached = cases[kind](client)
    run = run_node(node, params)
    assert isinstance(run.error, EgressRefused), run.error
    assert "Refusing to connect to 127.0.0.1" in str(run.error)
    assert "loopback" in str(run.error)
    assert run.attempts() == 1  # permanent: never retried
    assert not reached()
    rows = _refusals(client)
    assert len(rows) == 1
    assert rows[0].target == "127.0.0.1" and rows[0].actor == f"workflow:node-test-{kind}"
    assert rows[0].detail["workflow"] == f"node-test-{kind}"
    assert rows[0].detail["flow_run_id"] == str(run.flow_run_id)


@pytest.mark.parametrize("kind", NODES)
def test_a_loopback_target_is_reached_when_allow_listed(
    kind: str, cases: dict[str, Case], client: str, loopback_allowed: None
) -> None:
    node, params, reached = cases[kind](client)
    run = run_node(node, params)
    assert run.error is None, run.error
    if kind != "db_query":
        assert reached()
    assert _refusals(client) == []


@pytest.fixture
def public_name_of_loopback() -> Iterator[str]:
    name = "service.acme.test"  # no such name outside this override

    def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == name else system_resolve(host, port)

    set_resolver(resolve)
    try:
        yield name
    finally:
        set_resolver(None)


def _renamed(url: str, name: str) -> str:
    return str(httpx.URL(url).copy_with(host=name))


def test_a_public_looking_name_of_loopback_is_refused(
    http_server: HttpServer, client: str, closed: None, public_name_of_loopback: str
) -> None:
    http_server.respond("/data", {"ok": True})
    url = _renamed(http_server.url("/data"), public_name_of_loopback)
    run = run_node(http_request, HttpRequestInput(client=client, url=url))
    assert isinstance(run.error, EgressRefused)
    assert f"Refusing to connect to {public_name_of_loopback}" in str(run.error)
    assert http_server.requests_to("/data") == []


def test_a_redirect_from_an_allowed_host_to_a_private_address_is_refused(
    http_server: HttpServer,
    client: str,
    monkeypatch: pytest.MonkeyPatch,
    public_name_of_loopback: str,
) -> None:
    _allow(monkeypatch, public_name_of_loopback)  # the name only, not the loopback range
    http_server.respond("/hop", Reply(302, headers={"location": http_server.url("/inside")}))
    http_server.respond("/inside", {"secret": True})
    url = _renamed(http_server.url("/hop"), public_name_of_loopback)
    for node, params in (
        (http_request, HttpRequestInput(client=client, url=url)),
        (scrape, ScrapeInput(client=client, url=url, fields=[{"name": "h", "selector": "h1"}])),
    ):
        run = run_node(node, params)
        assert isinstance(run.error, EgressRefused), run.error
        assert "Refusing to connect to 127.0.0.1" in str(run.error)
    assert len(http_server.requests_to("/hop")) == 2
    assert http_server.requests_to("/inside") == []
    get_settings.cache_clear()


def test_the_prefect_api_is_refused_with_loopback_allowed(
    client: str, loopback_allowed: None, llm_server: LlmServer
) -> None:
    save_credential(client, "openai", "api", {"api_key": "sk-x", "base_url": PREFECT_API})
    save_credential(client, "slack_webhook", "api", {"url": f"{PREFECT_API}/health"})
    runs = [
        run_node(http_request, HttpRequestInput(client=client, url=f"{PREFECT_API}/health")),
        run_node(llm, LlmInput(client=client, credential="api", prompt="x")),
        run_node(notify, NotifyInput(client=client, credential="api", text="x")),
    ]
    for run in runs:
        assert isinstance(run.error, EgressRefused), run.error
        assert "is one of the platform's own services" in str(run.error)
        assert run.attempts() == 1


def test_http_request_keeps_the_urls_query_and_merges_its_own(
    http_server: HttpServer, client: str
) -> None:
    http_server.respond("/today", {"ok": True})
    url = http_server.url("/today") + "?a=1&b=2"
    for query, expected in (
        ({}, {"a": ["1"], "b": ["2"]}),
        ({"c": "3", "a": "9"}, {"a": ["9"], "b": ["2"], "c": ["3"]}),
    ):
        run = run_node(http_request, HttpRequestInput(client=client, url=url, query=query))
        assert run.error is None, run.error
        assert http_server.requests_to("/today")[-1].query == expected


def _digest_credentials(client: str, llm_server: LlmServer, smtp_server: SmtpServer) -> None:
    llm = {"api_key": llm_server.api_key, "base_url": llm_server.base_url}
    save_credential(client, "openai", "default", llm)
    smtp = {
        "host": smtp_server.host,
        "port": smtp_server.port,
        "username": smtp_server.username,
        "password": smtp_server.password,
        "from_address": "digest@acme.test",
        "security": "none",
    }
    save_credential(client, "smtp", "default", smtp)


def test_daily_digest_pointed_at_the_prefect_api_fails_and_sends_nothing(
    client: str, llm_server: LlmServer, smtp_server: SmtpServer, loopback_allowed: None
) -> None:
    """The probe's attack: a client's source URL aimed at the platform's own Prefect API."""
    _digest_credentials(client, llm_server, smtp_server)
    source = (
        f"{PREFECT_API}/block_types/slug/agency-stored-secret/block_documents/name/"
        "secret-victim-openai-default?include_secrets=true"
    )
    settings = DailyDigestSettings(source_url=source, recipients=["boss@acme.test"])
    state = daily_digest(client, settings, return_state=True)  # type: ignore[call-arg]
    assert state.is_failed()
    with pytest.raises(EgressRefused, match="platform's own services"):
        state.result()
    assert smtp_server.messages == []
    assert llm_server.chat_requests() == []
    assert [r.detail["workflow"] for r in _refusals(client)] == ["daily_digest"]


UNGUARDED = {
    ("httpx", name)
    for name in ("Client", "AsyncClient", "get", "post", "put", "patch", "delete", "request")
} | {("smtplib", "SMTP"), ("smtplib", "SMTP_SSL"), ("openai", "OpenAI")}


def test_nodes_and_connection_tests_open_connections_only_through_the_guard() -> None:
    """A static check: no node calls a connection API directly (``openai.OpenAI`` is allowed
    only with a guarded ``http_client``)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [*sorted((root / "nodes").glob("*.py")), root / "services" / "connection_tests.py"]
    found = []
    for path in files:
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            owner = call.func.value
            if not isinstance(owner, ast.Name) or (owner.id, call.func.attr) not in UNGUARDED:
                continue
            if any(k.arg == "http_client" for k in call.keywords):
                continue
            found.append(f"{path.relative_to(root)}:{call.lineno} {owner.id}.{call.func.attr}")
    assert found == []


def test_with_the_guard_off_the_redirect_attack_still_reads_no_secret(
    client: str,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe's attack with the egress guard switched off (a policy that allows every
    address, the platform's own included): the second locks hold on their own. The Prefect API
    answers 401 to a caller without its auth string, so the victim's secrets stay out of the
    attacker's prompt, email, outputs and logs."""
    import ipaddress

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    import agency.egress.http as egress_http
    from agency.egress import EgressPolicy
    from deployments.webhooks.secrets import store_secret

    everything = EgressPolicy(
        allow_networks=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    )
    monkeypatch.setattr(egress_http, "egress_policy", lambda: everything)

    victim = f"victim-{secrets.token_hex(3)}"
    victim_key = f"sk-victim-{secrets.token_hex(12)}"
    victim_hook = f"whsec_{base64.b64encode(secrets.token_bytes(24)).decode()}"
    save_credential(victim, "openai", "default", {"api_key": victim_key})
    store_secret(get_settings(), victim, "lead_intake", victim_hook)

    _digest_credentials(client, llm_server, smtp_server)
    stolen: list[str] = []
    for name in (f"secret-{victim}-openai-default", f"webhook-secret-{victim}-webhook-lead-intake"):
        target = f"{PREFECT_API}/block_types/slug/agency-stored-secret/block_documents/name/{name}"
        path = f"/steal-{len(stolen)}"
        http_server.respond(
            path, Reply(302, headers={"location": f"{target}?include_secrets=true"})
        )
        settings = DailyDigestSettings(source_url=http_server.url(path), recipients=["a@acme.test"])
        state = daily_digest(client, settings, return_state=True)  # type: ignore[call-arg]
        assert state.is_failed()
        stolen.append(str(state.state_details.flow_run_id))
        with pytest.raises(Exception, match="401"):
            state.result()

    with get_client(sync_client=True) as api:
        logs = [
            log.message
            for run_id in stolen
            for log in api.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
        ]
    seen = "\n".join(
        [*logs, *(r.body.decode() for r in llm_server.requests), *map(str, smtp_server.messages)]
    )
    for secret in (victim_key, victim_hook):
        assert secret not in seen
