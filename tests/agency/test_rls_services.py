"""Every client-scoped service path runs its platform-DB work under row-level security.

On a real PostgreSQL with two clients' rows present, each service called for client alpha
returns (or changes) only alpha's rows, and every transaction it opens starts with ``SET LOCAL
ROLE agency_client`` and ``app.current_client`` set to alpha. The client API's ``GET
/api/v1/deliveries/<id>`` is checked the same way over real HTTP, and the policies themselves are
shown to hide another client's delivery from a query that has no client filter at all.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy import Connection, event, make_url, select, update

from agency.db import (
    Activation,
    ActivationVersion,
    ApiKey,
    AuditLog,
    Client,
    WebhookDelivery,
    WebhookEndpoint,
    session_factory,
    session_scope,
    upgrade,
)
from agency.errors import NotFound
from agency.settings import Settings
from deployments import ensure_work_pool
from services import (
    activations,
    api_keys,
    approvals,
    connection_tests,
    credentials,
    runs,
    webhooks,
    workspace,
)
from services.auth import Principal, authenticate, create_user
from services.clients import add_client
from services.rollback import rollback
from services.scoping import client_session, client_session_at
from tests.fixtures.gateway import IDLE_POOL, serve
from tests.fixtures.portal import make_run

pytestmark = pytest.mark.usefixtures("prefect_server", "echo_workflows")

PASSWORD = "correct horse battery"
TIMEZONES = ("Europe/Paris", "UTC")
SCOPE_ROLE = "SET LOCAL ROLE agency_client"
SET_CLIENT = "set_config('app.current_client'"


@dataclass
class World:
    """Settings on a fresh PostgreSQL platform DB and two clients with rows of each kind."""

    settings: Settings
    alpha: str
    beta: str
    principal: Principal  # alpha's portal user
    client_ids: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, str] = field(default_factory=dict)
    keys: dict[str, api_keys.CreatedApiKey] = field(default_factory=dict)
    artifact: str = ""  # an output of one of alpha's runs, when a case needs one

    @property
    def url(self) -> str:
        return self.settings.platform_database_url


@pytest.fixture
def world(postgresql_database_url: str, tmp_path: Path) -> World:
    settings = Settings(home=tmp_path, database_url=postgresql_database_url, work_pool=IDLE_POOL)
    upgrade(postgresql_database_url)
    ensure_work_pool(IDLE_POOL)
    tag = secrets.token_hex(3)  # the Prefect server (credential blocks) is shared by the session
    alpha, beta = f"alpha{tag}", f"beta{tag}"
    ids: dict[str, int] = {}
    deliveries: dict[str, str] = {}
    for slug, tz in zip((alpha, beta), TIMEZONES, strict=True):
        add_client(settings, slug, slug.title(), tz)
        create_user(settings, f"user@{slug}.test", PASSWORD, "client", slug)
        with session_scope(postgresql_database_url) as session:
            client = session.scalars(select(Client).where(Client.slug == slug)).one()
            act = Activation(client_id=client.id, workflow="echo", version=1, timezone=tz)
            session.add(act)
            session.flush()
            session.add(
                ActivationVersion(
                    activation_id=act.id, version=1, status="active", timezone=tz, created_by=slug
                )
            )
            session.add(WebhookEndpoint(activation_id=act.id))
            deliveries[slug] = str(uuid.uuid4())
            session.add(
                WebhookDelivery(
                    id=deliveries[slug], activation_id=act.id, client=slug, workflow="echo"
                )
            )
            ids[slug] = client.id
    w = World(settings, alpha, beta, authenticate(settings, f"user@{alpha}.test", PASSWORD))
    w.client_ids, w.deliveries = ids, deliveries
    w.keys = {c: api_keys.create_api_key(settings, c, "ci") for c in (alpha, beta)}
    return w


# ---- statement capture ---------------------------------------------------------------------


@dataclass
class Transaction:
    """The statements one platform-DB transaction executed, and the thread that ran it."""

    thread: int
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def reads_or_writes(self) -> bool:
        return any(not _is_scoping(s) for s, _ in self.statements)


def _is_scoping(statement: str) -> bool:
    return statement == SCOPE_ROLE or SET_CLIENT in statement


@contextmanager
def captured(url: str) -> Iterator[list[Transaction]]:
    """Record every transaction on the cached engine of ``url`` while the block runs."""
    engine = session_factory(url).kw["bind"]
    transactions: list[Transaction] = []
    open_by_connection: dict[int, Transaction] = {}

    def on_begin(conn: Connection) -> None:
        tx = Transaction(threading.get_ident())
        open_by_connection[id(conn)] = tx
        transactions.append(tx)

    def on_execute(conn: Connection, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        tx = open_by_connection.get(id(conn))
        if tx is not None:
            tx.statements.append((statement.strip(), params))

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield transactions
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)


def _is_session_check(tx: Transaction) -> bool:
    """``services.auth.check_session`` reading the signed-in user's own row: authentication,
    agency-level like sign-in itself, before any client data is touched."""
    if len(tx.statements) != 1:
        return False
    statement = tx.statements[0][0]
    return statement.lstrip().startswith("SELECT users.email") and "WHERE users.id" in statement


def assert_scoped(transactions: list[Transaction], client: str) -> None:
    """Each transaction that touched a table was scoped to ``client`` before anything else."""
    used = [t for t in transactions if t.reads_or_writes() and not _is_session_check(t)]
    assert used, "the call did not use the platform database"
    for tx in used:
        (role, _), (set_client, params), *_ = tx.statements
        assert role == SCOPE_ROLE, tx.statements[:3]
        assert SET_CLIENT in set_client and params == {"client": client}, tx.statements[:3]


# ---- the services, one case each -----------------------------------------------------------


def _audited(w: World, action: str) -> list[tuple[int | None, str]]:
    with session_scope(w.url) as session:
        rows = session.execute(
            select(AuditLog.client_id, AuditLog.target).where(AuditLog.action == action)
        ).all()
    return [(c, t) for c, t in rows]


def _endpoints(w: World) -> dict[str, WebhookEndpoint]:
    with session_scope(w.url) as session:
        rows = session.execute(
            select(Client.slug, WebhookEndpoint)
            .join(Activation, Activation.client_id == Client.id)
            .join(WebhookEndpoint, WebhookEndpoint.activation_id == Activation.id)
        ).all()
    return {slug: e for slug, e in rows}


def _activations(w: World) -> dict[str, Activation]:
    with session_scope(w.url) as session:
        rows = session.execute(
            select(Client.slug, Activation).join(Activation, Activation.client_id == Client.id)
        ).all()
    return {slug: a for slug, a in rows}


def _save_credentials(w: World) -> None:
    for c in (w.alpha, w.beta):
        credentials.set_credential(w.settings, c, "http_auth", c, {"scheme": "bearer", "token": c})


def _artifact_of_new_run(w: World) -> str:
    run_id = make_run(w.alpha)
    with get_client(sync_client=True) as api:
        found = api.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return str(found[0].id)


def _raises(call: Callable[[], object]) -> Exception:
    with pytest.raises(NotFound) as caught:
        call()
    return caught.value


def _check_set(w: World, _: object) -> None:
    assert _audited(w, "credential.set") == [(w.client_ids[w.alpha], "http_auth/main")]


def _check_list_credentials(w: World, got: list[credentials.CredentialView]) -> None:
    assert [c.name for c in got] == [w.alpha]


def _check_deleted(w: World, _: object) -> None:
    assert credentials.list_credentials(w.settings, w.alpha) == []
    assert [c.name for c in credentials.list_credentials(w.settings, w.beta)] == [w.beta]


def _check_created_key(w: World, got: api_keys.CreatedApiKey) -> None:
    assert api_keys.client_for_key(w.settings, got.key) == w.alpha


def _check_listed_keys(w: World, got: list[api_keys.ApiKeyView]) -> None:
    assert [(k.id, k.client) for k in got] == [(w.keys[w.alpha].id, w.alpha)]


def _check_revoked(w: World, _: object) -> None:
    assert api_keys.client_for_key(w.settings, w.keys[w.alpha].key) is None
    assert api_keys.client_for_key(w.settings, w.keys[w.beta].key) == w.beta
    # another client's key id is not found for alpha (filter and policy alike)
    _raises(lambda: api_keys.revoke_api_key(w.settings, w.alpha, w.keys[w.beta].id))


def _check_webhook(w: World, got: webhooks.WebhookView | None) -> None:
    assert got is not None and got.url.endswith(f"/hooks/{w.alpha}/echo")


def _check_deliveries(w: World, got: list[webhooks.DeliveryView]) -> None:
    assert [d.id for d in got] == [w.deliveries[w.alpha]]


def _check_enabled(w: World, _: object) -> None:
    limits = {c: e.rate_limit_per_hour for c, e in _endpoints(w).items()}
    assert limits == {w.alpha: 5, w.beta: None}


def _check_rotated(w: World, _: object) -> None:
    rotated = {c: e.rotated_at is not None for c, e in _endpoints(w).items()}
    assert rotated == {w.alpha: True, w.beta: False}


def _check_disabled(w: World, _: object) -> None:
    assert {c: e.active for c, e in _endpoints(w).items()} == {w.alpha: False, w.beta: True}


def _check_listed_activations(w: World, got: list[activations.ActivationView]) -> None:
    assert [(a.client, a.workflow) for a in got] == [(w.alpha, "echo")]


def _check_activated(w: World, got: activations.ActivationView) -> None:
    assert got.client == w.alpha
    assert {c: a.version for c, a in _activations(w).items()} == {w.alpha: 2, w.beta: 1}


def _check_paused(w: World, _: object) -> None:
    assert {c: a.status for c, a in _activations(w).items()} == {
        w.alpha: "paused",
        w.beta: "active",
    }


def _check_rolled_back(w: World, got: activations.ActivationView) -> None:
    assert got.version == 2
    assert [c for c, _ in _audited(w, "activation.rollback")] == [w.client_ids[w.alpha]]


def _check_timezone(w: World, got: str) -> None:
    assert got == TIMEZONES[0]


def _check_credential_entries(w: World, got: list[workspace.CredentialEntry]) -> None:
    assert [(c.name, c.set_on is not None) for c in got] == [(w.alpha, True)]


def _check_history(w: World, got: list[workspace.VersionEntry]) -> None:
    assert [v.created_by for v in got] == [w.alpha]


def _check_no_approvals(w: World, got: list[approvals.ApprovalView]) -> None:
    assert got == []


def _check_unknown_approval(w: World, got: Exception) -> None:
    assert w.alpha in str(got)


def _check_downloaded(w: World, _: object) -> None:
    assert [c for c, _ in _audited(w, "run.download")] == [w.client_ids[w.alpha]]


def _check_connection(w: World, got: connection_tests.ConnectionResult) -> None:
    assert got.ok
    assert [c for c, _ in _audited(w, "credential.test")] == [w.client_ids[w.alpha]]


def _prepare_artifact(w: World) -> None:
    w.artifact = _artifact_of_new_run(w)


@dataclass(frozen=True)
class Case:
    """Call one service for alpha (after ``prepare``), then check what it returned or did."""

    call: Callable[[World], Any]
    check: Callable[[World, Any], None]
    prepare: Callable[[World], object] = lambda w: None


def _platform_db_login(w: World) -> dict[str, object]:
    """The test's own PostgreSQL as a credential to test (a real, reachable server)."""
    url = make_url(w.url)
    return {
        "host": url.host,
        "port": url.port or 5432,
        "database": url.database,
        "username": url.username,
        "password": url.password,
        "sslmode": "disable",
    }


CASES: dict[str, Case] = {
    "credentials.set": Case(
        lambda w: credentials.set_credential(
            w.settings, w.alpha, "http_auth", "main", {"scheme": "bearer", "token": "t"}
        ),
        _check_set,
    ),
    "credentials.list": Case(
        lambda w: credentials.list_credentials(w.settings, w.alpha),
        _check_list_credentials,
        _save_credentials,
    ),
    "credentials.delete": Case(
        lambda w: credentials.delete_credential(w.settings, w.alpha, "http_auth", w.alpha),
        _check_deleted,
        _save_credentials,
    ),
    "api_keys.create": Case(
        lambda w: api_keys.create_api_key(w.settings, w.alpha, "deploy"), _check_created_key
    ),
    "api_keys.list": Case(
        lambda w: api_keys.list_api_keys(w.settings, w.alpha), _check_listed_keys
    ),
    "api_keys.revoke": Case(
        lambda w: api_keys.revoke_api_key(w.settings, w.alpha, w.keys[w.alpha].id), _check_revoked
    ),
    "webhooks.get": Case(
        lambda w: webhooks.get_webhook(w.settings, w.alpha, "echo"), _check_webhook
    ),
    "webhooks.list_deliveries": Case(
        lambda w: webhooks.list_deliveries(w.settings, w.alpha), _check_deliveries
    ),
    "webhooks.enable": Case(
        lambda w: webhooks.enable_webhook(w.settings, w.alpha, "echo", rate_limit_per_hour=5),
        _check_enabled,
    ),
    "webhooks.rotate": Case(
        lambda w: webhooks.rotate_webhook_secret(w.settings, w.alpha, "echo"),
        _check_rotated,
        lambda w: webhooks.enable_webhook(w.settings, w.alpha, "echo"),
    ),
    "webhooks.disable": Case(
        lambda w: webhooks.disable_webhook(w.settings, w.alpha, "echo"), _check_disabled
    ),
    "activations.list": Case(
        lambda w: activations.list_activations(w.settings, w.alpha), _check_listed_activations
    ),
    "activations.activate": Case(
        lambda w: activations.activate(w.settings, w.alpha, "echo", {}, None), _check_activated
    ),
    "activations.pause": Case(
        lambda w: activations.pause(w.settings, w.alpha, "echo"),
        _check_paused,
        lambda w: activations.activate(w.settings, w.alpha, "echo", {}, None),
    ),
    "rollback": Case(lambda w: rollback(w.settings, w.alpha, "echo", 1), _check_rolled_back),
    "workspace.client_timezone": Case(
        lambda w: workspace.client_timezone(w.settings, w.principal), _check_timezone
    ),
    "workspace.credentials": Case(
        lambda w: workspace.credentials(w.settings, w.principal),
        _check_credential_entries,
        _save_credentials,
    ),
    "workspace.history": Case(
        lambda w: workspace.history(w.settings, w.principal, "echo"), _check_history
    ),
    "approvals.list_pending": Case(
        lambda w: approvals.list_pending_approvals(w.settings, w.alpha), _check_no_approvals
    ),
    "approvals.answer": Case(
        lambda w: _raises(
            lambda: approvals.answer_approval(w.settings, w.alpha, str(uuid.uuid4()), approved=True)
        ),
        _check_unknown_approval,
    ),
    "runs.download_artifact": Case(
        lambda w: runs.download_artifact(w.settings, w.principal, w.artifact),
        _check_downloaded,
        _prepare_artifact,
    ),
    "connection_tests.check_connection": Case(
        lambda w: connection_tests.check_connection(
            w.settings, w.principal, "postgres", data=_platform_db_login(w)
        ),
        _check_connection,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_service_runs_scoped_to_its_client(world: World, name: str) -> None:
    case = CASES[name]
    case.prepare(world)
    with captured(world.url) as transactions:
        result = case.call(world)
    me = threading.get_ident()
    assert_scoped([t for t in transactions if t.thread == me], world.alpha)
    case.check(world, result)


def test_client_api_reads_a_delivery_in_a_scoped_transaction(world: World) -> None:
    running = serve(world.settings, run_dispatcher=False)
    try:
        auth = {"authorization": f"Bearer {world.keys[world.alpha].key}"}
        with captured(world.url) as transactions, running.client() as http:
            own = http.get(f"/api/v1/deliveries/{world.deliveries[world.alpha]}", headers=auth)
            other = http.get(f"/api/v1/deliveries/{world.deliveries[world.beta]}", headers=auth)
    finally:
        running.stop()
    assert own.status_code == 200 and own.json()["id"] == world.deliveries[world.alpha]
    assert other.status_code == 404
    reads = [
        t
        for t in transactions
        if any("FROM webhook_deliveries" in s for s, _ in t.statements)
        and any(
            world.deliveries[c] in str(p)
            for c in (world.alpha, world.beta)
            for _, p in t.statements
        )
    ]
    assert len(reads) == 2
    assert_scoped(reads, world.alpha)


def test_policies_hide_another_clients_delivery_without_any_filter(world: World) -> None:
    """What read_delivery and list_deliveries would see if their client filter were lost."""
    beta_delivery = world.deliveries[world.beta]
    with client_session(world.settings, world.alpha) as session:
        assert session.scalars(select(WebhookDelivery.client)).all() == [world.alpha]
        assert (
            session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == beta_delivery))
            is None
        )
        changed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == beta_delivery)
            .values(status="failed", last_error="tampered")
        )
        assert changed.rowcount == 0
        assert session.scalars(select(ApiKey.client_id)).all() == [world.client_ids[world.alpha]]
    with client_session_at(world.url, world.beta) as session:
        assert session.scalars(select(WebhookDelivery.id)).all() == [beta_delivery]
    # the agency level still sees both rows, and beta's is untouched
    with session_scope(world.url) as session:
        rows = session.execute(select(WebhookDelivery.client, WebhookDelivery.status)).all()
    assert sorted(rows) == sorted([(world.alpha, "pending"), (world.beta, "pending")])
