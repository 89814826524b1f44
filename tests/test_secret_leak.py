"""No stored secret value appears anywhere Prefect or the platform keeps or prints things.

The full end-to-end scenario (``tests/scenario.py``: client, Vault, credentials, activation, a run
on the real process worker, email, LLM) runs with secret values made fresh for this test, so a
value can only be found where this run put it. Then :func:`scan` searches, for each value:

- every flow run and task run the Prefect API returns (parameters, tags, current state and
  message), the full state history of those created during the run, every log line and event
  since the run began, every artifact, variable, deployment (job variables), work pool and block
  document (as an API reader sees it, secrets not requested);
- every file the Prefect server, the worker and the platform write under ``PREFECT_HOME`` and
  ``AGENCY_HOME`` as raw bytes: the server's SQLite database with its WAL (block documents there
  are Fernet-encrypted, so a plaintext hit is a real leak), its log, the result storage (each
  persisted result also decoded and re-pickled, so base64-wrapped pickles and ``SecretStr``
  fields are searched too), the platform DB file and local files; plus the worker's and
  Vault's logs;
- every row and column of every table of the platform DB;
- everything the CLI printed.

``test_scan_finds_planted_values`` plants fresh values in each of those places and checks the
scan reports each one where it was planted, so the leak test cannot pass by searching nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import cloudpickle
import httpx
import pytest
from prefect import Flow, flow, get_run_logger, task
from prefect._internal.result_records import ResultRecord
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp
from prefect.events import emit_event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.serializers import PickleSerializer
from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, get_current_settings
from prefect.variables import Variable
from pydantic import BaseModel, SecretStr
from sqlalchemy import MetaData, delete, make_url, select
from typer.testing import CliRunner

from agency.db import Base, LlmUsage, make_engine, record_llm_usage, session_scope, upgrade
from agency.settings import get_settings
from blocks import VaultConnection
from cli.main import app
from tests.fixtures.http_server import HttpServer, Reply
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.vault import VaultServer
from tests.fixtures.worker import Worker
from tests.scenario import cli, platform_on_vault, run_daily_digest

T = TypeVar("T")
PAGE = 200
EVENT_PAGE = 50  # /events/filter takes at most 50 per page in this Prefect version


@dataclass(frozen=True)
class Finding:
    """One secret value found: which secret, in which kind of place, and exactly where."""

    secret: str
    source: str
    where: str


@dataclass
class Haystack:
    """Searches each piece of data for every needle; counts what it searched per source."""

    needles: dict[str, bytes]
    findings: list[Finding] = field(default_factory=list)
    searched: Counter[str] = field(default_factory=Counter)

    def search(self, source: str, where: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.searched[source] += 1
        for name, needle in self.needles.items():
            if needle in raw:
                self.findings.append(Finding(name, source, where))


def _pages(read: Callable[[int], Sequence[T]]) -> Iterator[T]:
    offset = 0
    while True:
        batch = read(offset)
        yield from batch
        if len(batch) < PAGE:
            return
        offset += PAGE


def scan(values: dict[str, str], since: datetime, extra_files: Sequence[Path] = ()) -> Haystack:
    """Search Prefect, the platform DB and the platform's files for each of ``values``.

    Logs and events are read from ``since`` on: the values are made after it, so nothing older
    can hold them. Everything else is read whole.
    """
    hay = Haystack({name: value.encode() for name, value in values.items()})
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as api:
        _scan_prefect_api(hay, api, since)
    _scan_platform_db(hay)
    home = Path(PREFECT_HOME.value())
    storage = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    db_url = get_current_settings().server.database.connection_url
    prefect_db = Path(make_url(db_url.get_secret_value()).database or "")  # type: ignore[union-attr]
    for path in _files(storage):
        _scan_result(hay, path)
    for root in (home, get_settings().home):
        for path in _files(root):
            if not path.is_relative_to(storage):
                source = "prefect_db" if path.name.startswith(prefect_db.name) else "files"
                hay.search(source, str(path), _read(path))
    for path in extra_files:
        hay.search("files", str(path), _read(path))
    return hay


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # a transient file (SQLite journal) gone since the listing
        return b""


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _scan_prefect_api(hay: Haystack, api: SyncPrefectClient, since: datetime) -> None:
    for run in _pages(lambda o: api.read_flow_runs(limit=PAGE, offset=o)):
        hay.search("flow_runs", f"flow run {run.id}", run.model_dump_json())
        if run.created and run.created >= since:
            for state in api.read_flow_run_states(run.id):
                hay.search("states", f"flow run {run.id} state {state.id}", state.model_dump_json())
    for task_run in _pages(lambda o: api.read_task_runs(limit=PAGE, offset=o)):
        hay.search("task_runs", f"task run {task_run.id}", task_run.model_dump_json())
        if task_run.created and task_run.created >= since:
            for state in api.read_task_run_states(task_run.id):
                hay.search("states", f"task run {task_run.id} state", state.model_dump_json())
    recent = LogFilter(timestamp=LogFilterTimestamp(after_=since))
    for log in _pages(lambda o: api.read_logs(log_filter=recent, limit=PAGE, offset=o)):
        hay.search("logs", f"log {log.id} ({log.name})", log.model_dump_json())
    for artifact in _pages(lambda o: api.read_artifacts(limit=PAGE, offset=o)):
        hay.search("artifacts", f"artifact {artifact.id}", artifact.model_dump_json())
    variables = api.read_variables()
    assert len(variables) < PAGE, "more variables than one page: page through them"
    for variable in variables:
        hay.search("variables", f"variable {variable.name}", variable.model_dump_json())
    for deployment in _pages(lambda o: api.read_deployments(limit=PAGE, offset=o)):
        hay.search("deployments", f"deployment {deployment.name}", deployment.model_dump_json())
    for pool in _pages(lambda o: api.read_work_pools(limit=PAGE, offset=o)):
        hay.search("work_pools", f"work pool {pool.name}", pool.model_dump_json())
    for block in _pages(
        lambda o: api.read_block_documents(limit=PAGE, offset=o, include_secrets=False)
    ):
        hay.search("blocks", f"block {block.name}", block.model_dump_json())
    window = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=1))
    )
    page = api.read_events(filter=window, limit=EVENT_PAGE)
    while True:
        for event in page.events:
            hay.search("events", f"event {event.event} {event.id}", event.model_dump_json())
        if not page.next_page:
            break
        page = api.read_events_page(str(page.next_page))


def _scan_result(hay: Haystack, path: Path) -> None:
    data = _read(path)
    hay.search("results", str(path), data)
    try:
        # re-pickled, every string inside is plain again (base64 pickles, SecretStr fields)
        record = ResultRecord.deserialize(data, backup_serializer=PickleSerializer())
        decoded = cloudpickle.dumps(record.result)
    except Exception:  # not a result record (a lock file...): its raw bytes were searched
        return
    hay.search("results", f"{path} (decoded)", decoded)


def _scan_platform_db(hay: Haystack) -> None:
    engine = make_engine(get_settings().platform_database_url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        assert set(Base.metadata.tables) <= set(tables.tables), "platform DB not migrated"
        with engine.connect() as conn:
            for table in tables.sorted_tables:
                for number, row in enumerate(conn.execute(select(table))):
                    for column, value in row._mapping.items():
                        if value is not None:
                            raw = value if isinstance(value, bytes) else str(value)
                            hay.search("platform_db", f"{table.name}.{column} row {number}", raw)
    finally:
        engine.dispose()


def _vault_logs(vault: VaultServer) -> list[Path]:
    """The `bao server -dev` log of the session's Vault (the fixture keeps it in its temp home)."""
    if os.environ.get("VAULT_ADDR"):
        return []  # an external Vault: its logs are not ours to read
    listen = vault.addr.removeprefix("http://")
    logs = Path(tempfile.gettempdir()).glob("bao-*/bao.log")
    return [p for p in logs if listen in p.read_text(errors="replace")]


def _report(hay: Haystack) -> str:
    return "\n".join(f"{f.secret} in {f.source}: {f.where}" for f in hay.findings)


# ---- the leak test -----------------------------------------------------------------------------


def test_no_secret_value_leaks_anywhere(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    vault_server: VaultServer,
    prefect_worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    smtp_server: SmtpServer,
    client_slug: str,
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    # fresh values, so other tests of the session cannot have put them anywhere
    monkeypatch.setattr(llm_server, "api_key", f"sk-{secrets.token_hex(16)}")
    monkeypatch.setattr(smtp_server, "password", f"pw-{secrets.token_hex(12)}")
    platform_token = vault_server.client().auth.token.create(policies=["root"], ttl="1h")
    vault_token = platform_token["auth"]["client_token"]
    with platform_on_vault(vault_server, prefect_worker.pool, vault_token):
        done = run_daily_digest(
            tmp_path,
            vault_server,
            prefect_worker,
            http_server,
            llm_server,
            smtp_server,
            client_slug,
        )
        approle = VaultConnection.load(f"vault-{client_slug}")
    assert approle.secret_id is not None
    values = {
        "http_auth token": done.api_token,
        "openai api_key": llm_server.api_key,
        "smtp password": smtp_server.password,
        "platform Vault token": vault_token,
        "client AppRole secret_id": approle.secret_id.get_secret_value(),
    }
    _wait_for_event(f"prefect.flow-run.{done.run_id}", "prefect.flow-run.Completed")

    vault_logs = _vault_logs(vault_server)
    hay = scan(values, since, extra_files=[prefect_worker.log_path, *vault_logs])
    hay.search("cli", "agency output", done.output)

    assert not hay.findings, f"stored secret values leaked:\n{_report(hay)}"
    # the scan searched something in each place (the run's own records are among them)
    for source in (
        "flow_runs",
        "task_runs",
        "states",
        "logs",
        "events",
        "artifacts",
        "deployments",
        "work_pools",
        "blocks",
        "prefect_db",
        "files",
        "platform_db",
        "cli",
    ):
        assert hay.searched[source] > 0, f"nothing searched in {source}: {dict(hay.searched)}"
    if not os.environ.get("VAULT_ADDR"):
        assert len(vault_logs) == 1, vault_logs


def _wait_for_event(resource: str, name: str, timeout: float = 60) -> None:
    """Events are persisted asynchronously; wait until ``name`` about ``resource`` is stored."""
    wanted = EventFilter(
        resource=EventResourceFilter(id=[resource]), event=EventNameFilter(name=[name])
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as api:
        while api.read_events(filter=wanted, limit=EVENT_PAGE).total == 0:
            assert time.monotonic() < deadline, f"no {name} event for {resource}"
            time.sleep(0.5)


# ---- the scan finds what is there --------------------------------------------------------------


class Box(BaseModel):
    """A result holding a secret, as a careless flow might return it."""

    token: SecretStr


@task(name="leaky-task")
def leaky_task(marker: str) -> None:
    raise ValueError(f"upstream refused {marker}")


def _leaky_flow(values: dict[str, str]) -> Flow[[str], Box]:
    """A flow that puts ``values[...]`` where each name says; only ``param`` is a parameter."""

    @flow(name="leaky-flow", persist_result=True)
    def leaky(param: str) -> Box:
        get_run_logger().info("calling with %s", values["log"])
        create_markdown_artifact(f"# report\n{values['artifact']}", key="leak-canary")
        leaky_task(values["state"], return_state=True)
        emit_event(
            event="agency.leak-canary",
            resource={"prefect.resource.id": f"agency.canary.{secrets.token_hex(3)}"},
            payload={"value": values["event"]},
        )
        return Box(token=SecretStr(values["result"]))

    return leaky


def test_scan_finds_planted_values(prefect_server: str, tmp_path: Path) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    where = ["param", "log", "artifact", "state", "event", "result", "variable", "row", "file"]
    values = {name: f"canary-{name}-{secrets.token_hex(8)}" for name in where}
    variable = f"leak-canary-{secrets.token_hex(3)}"
    Variable.set(variable, values["variable"])
    url = get_settings().platform_database_url
    upgrade(url)
    record_llm_usage(
        url,
        client="leak-canary",
        workflow=None,
        flow_run_id=None,
        model=values["row"],
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
    )
    planted_file = get_settings().home / "logs" / f"canary-{secrets.token_hex(3)}.log"
    planted_file.parent.mkdir(parents=True, exist_ok=True)
    planted_file.write_text(f"INFO connecting with {values['file']}\n")
    try:
        _leaky_flow(values)(values["param"])
        _wait_for_event_named("agency.leak-canary", since)
        hay = scan(values, since)
    finally:
        Variable.unset(variable)
        with session_scope(url) as session:
            session.execute(delete(LlmUsage).where(LlmUsage.client == "leak-canary"))
        planted_file.unlink()

    found = {(f.secret, f.source) for f in hay.findings}
    expected = {
        ("param", "flow_runs"),
        ("param", "prefect_db"),
        ("log", "logs"),
        ("log", "prefect_db"),
        ("artifact", "artifacts"),
        ("state", "task_runs"),
        ("state", "states"),
        ("event", "events"),
        ("result", "results"),
        ("variable", "variables"),
        ("row", "platform_db"),
        ("file", "files"),
    }
    assert expected <= found, f"missed {expected - found}; found:\n{_report(hay)}"
    # a persisted result is base64 pickle: only the decoded form shows the SecretStr's value
    result_hits = [f.where for f in hay.findings if f.secret == "result"]
    assert result_hits and all(w.endswith("(decoded)") for w in result_hits), result_hits


def _wait_for_event_named(name: str, since: datetime, timeout: float = 60) -> None:
    wanted = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(hours=1)),
        event=EventNameFilter(name=[name]),
    )
    deadline = time.monotonic() + timeout
    EventsWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as api:
        while api.read_events(filter=wanted, limit=EVENT_PAGE).total == 0:
            assert time.monotonic() < deadline, f"no {name} event stored"
            time.sleep(0.5)


# ---- the same scan over a connected account -----------------------------------------------------


def test_no_oauth_token_leaks_anywhere(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    vault_server: VaultServer,
    prefect_worker: Worker,
    http_server: HttpServer,
    llm_server: LlmServer,
    oauth_server: OAuthServer,
    client_slug: str,
) -> None:
    """Connect a Google account through the gateway, let its access token run out, and send
    the daily digest through Gmail from a run on the worker (which refreshes the token). No app
    secret, code verifier or token (first or refreshed) may be anywhere afterwards."""
    from tests.fixtures.gateway import serve
    from tests.gateway.test_oauth_connect import _consent

    since = datetime.now(UTC) - timedelta(seconds=1)
    monkeypatch.setattr(llm_server, "api_key", f"sk-{secrets.token_hex(16)}")
    app_secret = f"app-{secrets.token_hex(16)}"
    api_token = f"tok-{secrets.token_hex(12)}"
    http_server.handle(
        "/oauth-digest",
        lambda req: (
            Reply(json={"items": ["one new lead"]})
            if req.headers.get("authorization") == f"Bearer {api_token}"
            else Reply(status=401)
        ),
    )
    llm_server.reply_next("One new lead today.")
    platform_token = vault_server.client().auth.token.create(policies=["root"], ttl="1h")
    vault_token = platform_token["auth"]["client_token"]
    outputs: list[str] = []
    with platform_on_vault(vault_server, prefect_worker.pool, vault_token):
        settings = get_settings()
        gateway = serve(settings, run_dispatcher=False)
        try:
            settings.public_base_url = gateway.url
            oauth_server.register_client(
                "agency-app", app_secret, [f"{gateway.url}/oauth/callback"],
                "openid email https://www.googleapis.com/auth/gmail.send "
                "https://www.googleapis.com/auth/spreadsheets",
            )  # fmt: skip
            outputs.append(cli("client", "add", client_slug, "--name", "Acme Corp"))
            secret_file = tmp_path / "app.secret"
            secret_file.write_text(app_secret)
            outputs.append(
                cli(
                    "connections",
                    "app",
                    "set",
                    "google",
                    "--client-id",
                    "agency-app",
                    "--client-secret-file",
                    str(secret_file),
                    "--authorize-url",
                    oauth_server.authorize_url,
                    "--token-url",
                    oauth_server.token_url,
                    "--revoke-url",
                    oauth_server.revoke_url,
                    "--userinfo-url",
                    oauth_server.userinfo_url,
                    "--api-base-url",
                    oauth_server.url,
                )  # fmt: skip
            )
            oauth_server.access_token_ttl = 30  # inside the 60 s leeway: the run must refresh
            link = cli(
                "connections", "connect-url", "--client", client_slug, "--provider", "google"
            )
            outputs.append(link)
            with httpx.Client(timeout=30) as browser:
                page = browser.get(_consent(browser, link.strip()))
            assert page.status_code == 200, (page.url, page.headers, page.text)
            outputs.append(page.text)
            llm = {"api_key": llm_server.api_key, "base_url": llm_server.base_url}
            for kind, name, data in (
                ("http_auth", "api", {"scheme": "bearer", "token": api_token}),
                ("openai", "default", llm),
            ):
                path = tmp_path / f"{kind}.json"
                path.write_text(json.dumps(data))
                outputs.append(
                    cli(
                        "credentials",
                        "set",
                        "--client",
                        client_slug,
                        "--kind",
                        kind,
                        "--name",
                        name,
                        "--from-file",
                        str(path),
                    )  # fmt: skip
                )
            digest = {
                "source_url": http_server.url("/oauth-digest"),
                "source_credential": "api",
                "recipients": ["team@acme.test"],
                "subject": "Acme digest",
                "smtp_credential": "google/default",
            }
            path = tmp_path / "settings.json"
            path.write_text(json.dumps(digest))
            outputs.append(
                cli(
                    "activate",
                    "daily_digest",
                    "--client",
                    client_slug,
                    "--settings-file",
                    str(path),
                )  # fmt: skip
            )
            result = CliRunner().invoke(
                app, ["run", "daily_digest", "--client", client_slug, "--timeout", "240"],
                catch_exceptions=False,
            )  # fmt: skip
            outputs.append(result.output)
            assert "finished: COMPLETED" in result.output, (
                f"{result.output}\n--- worker log ---\n{prefect_worker.log()[-4000:]}"
            )
        finally:
            gateway.stop()
    [sent] = [c for c in oauth_server.api_calls if c["path"].startswith("/gmail/")]
    assert sent["account"] == "boss@acme.com"
    assert sent["message"]["Subject"] == "Acme digest"
    assert oauth_server.refresh_count == 1  # the run renewed the expiring token, once
    values = {"OAuth app secret": app_secret, "http_auth token": api_token}
    for n, token in enumerate(oauth_server.tokens()):
        values[f"access token {n}"] = token.access_token
        if token.refresh_token:
            values[f"refresh token {n}"] = token.refresh_token
    assert len(values) >= 6  # two tokens of each kind, the app secret, the API token
    _wait_for_event(f"prefect.flow-run.{_run_id(result.output)}", "prefect.flow-run.Completed")
    hay = scan(values, since, extra_files=[prefect_worker.log_path, *_vault_logs(vault_server)])
    hay.search("cli", "agency output", "".join(outputs))
    assert not hay.findings, f"OAuth secrets leaked:\n{_report(hay)}"
    for source in ("flow_runs", "task_runs", "logs", "events", "blocks", "platform_db", "cli"):
        assert hay.searched[source] > 0, f"nothing searched in {source}: {dict(hay.searched)}"


def _run_id(output: str) -> str:
    first = output.splitlines()[0]  # "started flow run <name> (<id>)"
    return first.rsplit("(", 1)[1].rstrip(")")
