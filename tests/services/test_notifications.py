"""Notifications against real parts: the session's Prefect server (runs in real states, a real
deployment with a scheduled run in the past), aiosmtpd as the notice relay, a loopback HTTP
server as the agency's Slack incoming webhook, and a throwaway PostgreSQL platform DB (row-level
security on). Each incident is emailed once per person; more than five in an hour become a
digest; switched-off kinds are not sent; a client never hears about another client's runs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateDetails, StateType
from prefect.flows import Flow
from prefect.states import Scheduled
from sqlalchemy import select

from agency.db import Activation, Client, session_scope, upgrade, utcnow
from agency.db.models import NotificationIncident
from agency.settings import Settings, get_settings
from services import add_client, authenticate, create_user, set_credential
from services.health import check_credentials
from services.notifications import (
    KINDS,
    deliver_pending,
    detect,
    get_preferences,
    late_after,
    set_late_after,
    set_preferences,
    sweep,
)
from services.notifications.flow import notifications_sweep
from services.scoping import client_session
from tests.fixtures._net import free_port
from tests.fixtures.http_server import HttpServer
from tests.fixtures.smtp import ReceivedMail, SmtpServer

pytestmark = pytest.mark.usefixtures("prefect_server")
PASSWORD = "correct horse battery"


@dataclass
class World:
    settings: Settings
    a: str
    b: str
    alice: str
    carol: str  # a second user of A
    contact_a: str
    bob: str
    staff: str
    oncall: str


@pytest.fixture
def world(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    smtp_server: SmtpServer,
    http_server: HttpServer,
    postgresql_database_url: str,
) -> Iterator[World]:
    env = {
        "HOME": str(tmp_path / "home"),
        "DATABASE_URL": postgresql_database_url,
        "NOTIFY_SMTP_HOST": smtp_server.host,
        "NOTIFY_SMTP_PORT": str(smtp_server.port),
        "NOTIFY_SMTP_SECURITY": "none",
        "NOTIFY_SMTP_USERNAME": smtp_server.username,
        "NOTIFY_SMTP_PASSWORD": smtp_server.password,
        "NOTIFY_AGENCY_EMAILS": "oncall@agency.test",
        "NOTIFY_AGENCY_SLACK_WEBHOOK_URL": http_server.url("/slack/T000/B000/s3cretpath"),
        "PORTAL_URL": "https://portal.agency.test",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"AGENCY_{key}", value)
    http_server.respond("/slack/T000/B000/s3cretpath", 200)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.platform_database_url)
    tag = secrets.token_hex(3)
    a, b = f"na{tag}", f"nb{tag}"
    w = World(
        settings,
        a,
        b,
        f"alice@{a}.test",
        f"carol@{a}.test",
        f"owner@{a}.test",
        f"bob@{b}.test",
        f"ops-{tag}@agency.test",
        "oncall@agency.test",
    )
    add_client(settings, a, "Acme Corp", contact_emails=[w.contact_a])
    add_client(settings, b, "Beta Ltd")
    create_user(settings, w.alice, PASSWORD, "client", a)
    create_user(settings, w.carol, PASSWORD, "client", a)
    create_user(settings, w.bob, PASSWORD, "client", b)
    create_user(settings, w.staff, PASSWORD, "agency")
    yield w
    get_settings.cache_clear()


def _noop() -> None:
    """Stand-in flow body: the runs here never execute."""


def _run(client: str, state: State, workflow: str = "daily_digest") -> UUID:
    """A flow run tagged like a client's deployment run, moved to ``state``."""
    with get_client(sync_client=True) as api:
        run = api.create_flow_run(
            Flow(fn=_noop, name=workflow),
            tags=[f"client:{client}", f"workflow:{workflow}"],
            state=State(type=StateType.RUNNING),
        )
        api.set_flow_run_state(run.id, state, force=True)
    return run.id


def _failed(client: str) -> UUID:
    message = "Task run 'fetch' failed: http_request: https://api.acme.test answered 401: denied"
    return _run(client, State(type=StateType.FAILED, message=message))


def _to(mails: list[ReceivedMail], address: str) -> list[ReceivedMail]:
    return [m for m in mails if address in m.rcpt_tos]


def _text(mail: ReceivedMail) -> str:
    return mail.message.get_content()


def test_a_failed_run_is_emailed_once_to_its_client_and_the_agency_only(
    world: World, smtp_server: SmtpServer, http_server: HttpServer
) -> None:
    w = world
    run_a = _failed(w.a)
    report = sweep(w.settings)
    assert report.opened == {"run_failed": 1}
    mails = list(smtp_server.messages)
    assert len(mails) == 2, [m.message["Subject"] for m in mails]
    (to_client,) = _to(mails, w.alice)
    assert sorted(to_client.rcpt_tos) == sorted([w.alice, w.carol, w.contact_a])
    assert "failed" in to_client.message["Subject"]
    assert "401" in _text(to_client) and "https://portal.agency.test/client-runs" in _text(
        to_client
    )
    (to_agency,) = _to(mails, w.staff)
    assert sorted(to_agency.rcpt_tos) == sorted([w.staff, w.oncall])
    assert w.a in to_agency.message["Subject"] and str(run_a) in _text(to_agency)
    (slack,) = http_server.requests_to("/slack/T000/B000/s3cretpath")
    assert w.a in slack.json()["text"]

    # the next passes read the same run again: nothing more
    sweep(w.settings)
    sweep(w.settings)
    assert len(smtp_server.messages) == 2
    assert len(http_server.requests_to("/slack/T000/B000/s3cretpath")) == 1

    # isolation: B's failure reaches B's user and the agency, never A's people; B's user
    # never got A's
    smtp_server.reset()
    run_b = _failed(w.b)
    sweep(w.settings)
    mails = list(smtp_server.messages)
    assert {a for m in mails for a in m.rcpt_tos} == {w.bob, w.staff, w.oncall}
    assert all(str(run_a) not in _text(m) for m in mails)
    assert str(run_b) in _text(_to(mails, w.staff)[0])
    # and in the DB, a client-scoped transaction sees only its own incidents (row-level security)
    with client_session(w.settings, w.b) as session:
        subjects = session.scalars(select(NotificationIncident.subject)).all()
    assert subjects == [str(run_b)]


def test_a_relay_failure_is_retried_by_the_next_pass_without_repeats(
    world: World, smtp_server: SmtpServer
) -> None:
    w = world
    _failed(w.a)
    smtp_server.reject_next("451 4.3.0 Try again later", times=2)
    report = sweep(w.settings)
    assert report.opened == {"run_failed": 1} and len(report.delivery.errors) == 1
    assert smtp_server.messages == []
    report = sweep(w.settings)  # the relay still refuses the first message
    assert report.delivery.delivered == 0 and smtp_server.messages == []
    report = sweep(w.settings)
    assert report.delivery.delivered == 1 and len(smtp_server.messages) == 2
    sweep(w.settings)
    assert len(smtp_server.messages) == 2


def test_two_passes_at_once_send_each_incident_once(world: World, smtp_server: SmtpServer) -> None:
    w = world
    for _ in range(3):
        _failed(w.a)
    assert detect(w.settings) == {"run_failed": 3}
    with ThreadPoolExecutor(max_workers=3) as pool:
        reports = list(pool.map(lambda _: deliver_pending(w.settings), range(3)))
    assert sum(r.delivered for r in reports) == 3
    assert len(smtp_server.messages) == 3 * 2  # per incident: the client's and the agency's


def test_an_approval_waiting_links_to_the_approvals_page(
    world: World, smtp_server: SmtpServer
) -> None:
    w = world
    paused = State(
        type=StateType.PAUSED,
        name="Suspended",
        state_details=StateDetails(pause_key="approve-1", pause_reschedule=True),
    )
    _run(w.a, paused)
    assert sweep(w.settings).opened == {"approval_waiting": 1}
    sweep(w.settings)
    mails = list(smtp_server.messages)
    assert len(mails) == 2
    (to_client,) = _to(mails, w.alice)
    assert "https://portal.agency.test/client-approvals" in _text(to_client)
    assert "waiting" in to_client.message["Subject"]


def test_more_than_five_in_an_hour_become_one_digest(world: World, smtp_server: SmtpServer) -> None:
    w = world
    runs = [_failed(w.a) for _ in range(7)]
    start = utcnow()
    report = sweep(w.settings, now=start)
    assert report.opened == {"run_failed": 7}
    assert report.delivery.queued == 2 * 5  # two left over for each of A's 3 and the agency's 2
    assert len(_to(list(smtp_server.messages), w.alice)) == 5
    assert len(_to(list(smtp_server.messages), w.staff)) == 5

    # within the hour: still five each, the rest waits
    sweep(w.settings, now=start + timedelta(minutes=30))
    assert len(_to(list(smtp_server.messages), w.alice)) == 5

    # the hour is over: one digest per person with the two others
    smtp_server.reset()
    report = sweep(w.settings, now=start + timedelta(minutes=61))
    assert report.delivery.digests == 5  # alice, carol, the contact, staff, oncall
    digests = _to(list(smtp_server.messages), w.alice)
    assert len(digests) == 1 and digests[0].rcpt_tos == [w.alice]
    assert "2 more notifications" in digests[0].message["Subject"]
    assert _text(digests[0]).count("failed") >= 2
    assert all(str(r) not in _text(digests[0]) for r in runs)  # the client's wording
    (agency_digest,) = _to(list(smtp_server.messages), w.staff)
    assert sum(str(r) in _text(agency_digest) for r in runs) == 2
    sweep(w.settings, now=start + timedelta(minutes=62))
    assert len(smtp_server.messages) == 5


def test_a_kind_switched_off_is_not_sent_to_that_person(
    world: World, smtp_server: SmtpServer
) -> None:
    w = world
    alice = authenticate(w.settings, w.alice, PASSWORD)
    staff = authenticate(w.settings, w.staff, PASSWORD)
    assert get_preferences(w.settings, alice) == {k: True for k in KINDS}
    set_preferences(w.settings, alice, {"run_failed": False})
    set_preferences(w.settings, staff, {"run_failed": False, "run_late": False})
    assert get_preferences(w.settings, alice)["run_failed"] is False
    assert get_preferences(w.settings, alice)["approval_waiting"] is True
    # bob's switches are his own: alice's row is invisible to him (row-level security)
    assert get_preferences(w.settings, authenticate(w.settings, w.bob, PASSWORD))["run_failed"]

    _failed(w.a)
    sweep(w.settings)
    got = {a for m in smtp_server.messages for a in m.rcpt_tos}
    assert got == {w.carol, w.contact_a, w.oncall}

    with pytest.raises(Exception, match="Unknown notification kind: bogus"):
        set_preferences(w.settings, alice, {"bogus": False, "run_late": False})
    assert get_preferences(w.settings, alice)["run_late"] is True  # nothing saved


def test_a_broken_credential_goes_through_the_same_preferences(
    world: World, smtp_server: SmtpServer
) -> None:
    w = world
    alice = authenticate(w.settings, w.alice, PASSWORD)
    set_preferences(w.settings, alice, {"credential_broken": False})
    smtp = {"host": "127.0.0.1", "port": free_port(), "from_address": "a@acme.test"}
    set_credential(w.settings, w.a, "smtp", "mailer", {**smtp, "security": "none"})
    report = check_credentials(w.settings, w.a)
    assert report.notified == [w.a]
    mails = list(smtp_server.messages)
    assert len(mails) == 2
    (to_client,) = _to(mails, w.carol)
    assert sorted(to_client.rcpt_tos) == sorted([w.carol, w.contact_a])
    assert "SMTP credential 'mailer'" in _text(to_client)
    with session_scope(w.settings.platform_database_url) as session:
        kinds = session.scalars(select(NotificationIncident.kind)).all()
    assert kinds == ["credential_broken"]
    sweep(w.settings)  # the sweep delivers nothing twice
    check_credentials(w.settings, w.a)
    assert len(smtp_server.messages) == 2


def _deployment(client: str, workflow: str) -> UUID:
    with get_client(sync_client=True) as api:
        flow_id = api.create_flow(Flow(fn=_noop, name=workflow))
        return api.create_deployment(
            flow_id=flow_id,
            name=client,
            tags=[f"client:{client}", f"workflow:{workflow}"],
        )


def _activate(settings: Settings, client: str, workflow: str, deployment_id: UUID) -> None:
    with session_scope(settings.platform_database_url) as session:
        client_id = session.scalar(select(Client.id).where(Client.slug == client))
        session.add(
            Activation(
                client_id=client_id,
                workflow=workflow,
                status="active",
                deployment_id=str(deployment_id),
            )
        )


def _scheduled(deployment_id: UUID, at: datetime) -> UUID:
    with get_client(sync_client=True) as api:
        run = api.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=at))
        return run.id


def _completed(deployment_id: UUID) -> None:
    """A completed run of the deployment. (Prefect stamps states with the server's time, so
    its duration is about zero: a usual duration of minutes is covered by test_late_after.)"""
    with get_client(sync_client=True) as api:
        run = api.create_flow_run_from_deployment(deployment_id)
        api.set_flow_run_state(run.id, State(type=StateType.RUNNING), force=True)
        api.set_flow_run_state(run.id, State(type=StateType.COMPLETED), force=True)


def test_late_scheduled_runs_by_the_activation_sla(world: World, smtp_server: SmtpServer) -> None:
    w = world
    now = utcnow()
    fresh = _deployment(w.a, "lead_intake")  # no completed run yet: 15 min
    _activate(w.settings, w.a, "lead_intake", fresh)
    _scheduled(fresh, now - timedelta(minutes=20))
    _scheduled(fresh, now - timedelta(minutes=10))  # not late yet
    quick = _deployment(w.a, "daily_digest")  # usually done in a moment: 2x that, min 1 min
    _activate(w.settings, w.a, "daily_digest", quick)
    for _ in range(3):
        _completed(quick)
    _scheduled(quick, now - timedelta(minutes=10))
    _scheduled(quick, now + timedelta(minutes=10))  # in the future: never late
    other = _deployment(w.b, "lead_intake")  # client B's run, also late
    _activate(w.settings, w.b, "lead_intake", other)
    _scheduled(other, now - timedelta(minutes=25))

    report = sweep(w.settings)
    assert report.opened == {"run_late": 3}  # A's lead_intake 20 min, A's daily_digest, B's
    to_alice = _to(list(smtp_server.messages), w.alice)
    subjects = sorted(m.message["Subject"].lower() for m in to_alice)
    assert len(subjects) == 2 and "digest" in subjects[0] and "lead" in subjects[1]
    assert "after 20 min (limit 15 min)" in str(
        [_text(m) for m in _to(list(smtp_server.messages), w.staff)]
    )
    to_bob = _to(list(smtp_server.messages), w.bob)
    assert len(to_bob) == 1 and w.a not in _text(to_bob[0])

    # the activation's own limit: 5 minutes makes the 10-minute-late run late too
    set_late_after(w.settings, w.a, "lead_intake", 5)
    assert sweep(w.settings).opened == {"run_late": 1}
    assert sweep(w.settings).opened == {}
    with pytest.raises(Exception, match="between 1 minute and 7 days"):
        set_late_after(w.settings, w.a, "lead_intake", 0)


def test_the_cli_sets_the_lateness_limit_and_runs_a_pass(world: World) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    w = world
    _activate(w.settings, w.a, "daily_digest", uuid4())
    runner = CliRunner()
    result = runner.invoke(app, ["notifications", "late-after", w.a, "daily_digest", "45"])
    assert result.exit_code == 0, result.output
    assert _limit(w.settings, w.a) == 45
    result = runner.invoke(app, ["notifications", "late-after", w.a, "daily_digest", "0"])
    assert result.exit_code == 2 and "between 1 minute and 7 days" in result.output
    result = runner.invoke(app, ["notifications", "late-after", w.b, "daily_digest", "5"])
    assert result.exit_code == 2 and "not activated" in result.output  # another client's
    assert runner.invoke(app, ["notifications", "late-after", w.a, "daily_digest"]).exit_code == 2
    result = runner.invoke(app, ["notifications", "late-after", w.a, "daily_digest", "--clear"])
    assert result.exit_code == 0 and _limit(w.settings, w.a) is None
    _failed(w.a)
    result = runner.invoke(app, ["notifications", "sweep"])
    assert result.exit_code == 0, result.output
    assert '"opened": {"run_failed": 1}' in result.output


def _limit(settings: Settings, client: str) -> int | None:
    with session_scope(settings.platform_database_url) as session:
        return session.scalar(
            select(Activation.late_after_minutes).join(Client).where(Client.slug == client)
        )


def test_late_after_defaults() -> None:
    assert late_after(None, []) == timedelta(minutes=15)
    minutes = [timedelta(minutes=m) for m in (10, 20, 30)]
    assert late_after(None, minutes) == timedelta(minutes=40)
    assert late_after(7, minutes) == timedelta(minutes=7)
    assert late_after(None, [timedelta(seconds=3)]) == timedelta(minutes=1)  # the sweep's cadence


def test_the_flow_runs_a_sweep(world: World, smtp_server: SmtpServer) -> None:
    _failed(world.a)
    summary = notifications_sweep()
    assert summary["opened"] == {"run_failed": 1} and summary["sent"] == 5
    assert len(smtp_server.messages) == 2


def test_the_sweep_is_installed_every_minute(world: World) -> None:
    from cli.stack import install_notifications_sweep
    from deployments import ensure_work_pool

    settings = world.settings.model_copy(update={"work_pool": "agency-notify-install"})
    ensure_work_pool(settings.work_pool)
    first = install_notifications_sweep(settings)
    assert install_notifications_sweep(settings) == first
    with get_client(sync_client=True) as api:
        deployment = api.read_deployment(UUID(first))
    assert deployment.name == "every-minute"
    (schedule,) = deployment.schedules
    assert schedule.schedule.interval == timedelta(seconds=60)  # type: ignore[union-attr]
