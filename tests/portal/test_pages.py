"""Each portal page driven with ``streamlit.testing.v1.AppTest`` through the real router
(``portal/app.py``), against the real platform DB and the session's Prefect test server."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from agency.db import AuditLog, Client, record_llm_usage, session_scope, utcnow
from agency.errors import AuthFailed, NotFound
from agency.settings import get_settings
from services import authenticate, runs, workspace
from services.auth import invite_user
from tests.fixtures.llm_server import LlmServer
from tests.fixtures.portal import PASSWORD, PendingApproval, PortalWorld, make_run

PORTAL = Path(__file__).resolve().parents[2] / "portal"
APP = str(PORTAL / "app.py")
DIGEST = {"source_url": "https://api.example.test/today", "recipients": ["team@example.test"]}


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalWorld]:
    """The portal process reads the world's settings from the environment, as in production."""
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def _app(principal: object = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if principal is not None:
        at.session_state["principal"] = principal
    at.run()
    if page is not None:
        at.switch_page(f"pages/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "success", "warning"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(e.value) for e in at.error] + [str(e.value) for e in at.code]
    for frame in at.dataframe:
        parts.append(frame.value.to_csv())
    return "\n".join(parts)


def test_sign_in_wrong_password_then_right_then_sign_out(world: PortalWorld) -> None:
    at = _app()
    assert [t.value for t in at.title] == ["Sign in"]
    at.text_input(key="sign_in.email").input(world.email_a)
    at.text_input(key="sign_in.password").input("wrong password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong email or password."]
    assert "principal" not in at.session_state

    at.text_input(key="sign_in.password").input(PASSWORD)
    at.button[0].click().run()
    assert at.session_state["principal"].client == world.client_a
    assert [t.value for t in at.title] == ["Catalog"]
    at.switch_page("pages/account/sign_out.py").run()
    assert "principal" not in at.session_state
    assert [t.value for t in at.title] == ["Sign in"]
    assert "You are signed out." in _texts(at)


def test_expired_session_goes_back_to_sign_in(world: PortalWorld) -> None:
    expired = replace(world.a, expires_at=utcnow() - timedelta(seconds=1))
    at = _app(expired)
    assert [t.value for t in at.title] == ["Sign in"]
    assert "expired" in _texts(at)


def test_client_navigation_has_no_agency_pages_and_agency_pages_refuse_clients(
    world: PortalWorld,
) -> None:
    at = _app(world.a, "client/catalog.py")
    with pytest.raises(Exception):  # noqa: B017 - AppTest refuses pages outside the navigation
        at.switch_page("pages/agency/clients.py").run()
    direct = AppTest.from_file(str(PORTAL / "pages/agency/clients.py"), default_timeout=30)
    direct.session_state["principal"] = world.a
    direct.run()
    assert "Only agency staff can do this." in [e.value for e in direct.error]
    assert direct.dataframe.len == 0


def test_catalog_lists_workflows_with_needs_and_status(world: PortalWorld) -> None:
    text = _texts(_app(world.a, "client/catalog.py"))
    assert "Daily digest" in text and "Not active" in text
    assert (
        "Add these under Credentials before activating: AI model (OpenAI-compatible), "
        "Email account (SMTP)." in text
    )
    workspace.activate_workflow(world.settings, world.a, "daily_digest", DIGEST, None)
    assert "Active" in _texts(_app(world.a, "client/catalog.py"))


def test_credentials_save_test_and_delete_never_show_the_secret(
    world: PortalWorld, llm_server: LlmServer
) -> None:
    at = _app(world.a, "client/credentials.py")
    at.selectbox(key="credential.kind").set_value("openai").run()
    at.text_input(key="credential.openai.0.api_key").input(llm_server.api_key)
    at.text_input(key="credential.openai.0.base_url").input(llm_server.base_url)
    test = next(b for b in at.button if b.label == "Test connection")
    test.click().run()
    assert any("model(s) available" in s.value for s in at.success), _texts(at)

    at.text_input(key="credential.openai.0.api_key").input("sk-wrong")
    next(b for b in at.button if b.label == "Test connection").click().run()
    assert any("refused the API key" in e.value for e in at.error)

    at.text_input(key="credential.openai.0.api_key").input(llm_server.api_key)
    next(b for b in at.button if b.label == "Save").click().run()
    text = _texts(at)
    assert "Saved AI model (OpenAI-compatible) 'default'" in text and "set on" in text
    assert llm_server.api_key not in text
    assert all(llm_server.api_key != t.value for t in at.text_input)

    at.button(key="test.openai.default").click().run()
    assert any("model(s) available" in s.value for s in at.success)
    at.button(key="delete.openai.default").click().run()
    assert "Deleted AI model (OpenAI-compatible) 'default'." in _texts(at)
    assert workspace.credentials(world.settings, world.a) == []


def test_credentials_bad_input_is_a_plain_sentence(world: PortalWorld) -> None:
    at = _app(world.a, "client/credentials.py")
    at.selectbox(key="credential.kind").set_value("smtp").run()
    at.text_input(key="credential.smtp.0.port").input("not a port")
    next(b for b in at.button if b.label == "Save").click().run()
    assert at.error and "Traceback" not in _texts(at)
    assert workspace.credentials(world.settings, world.a) == []


def test_workflows_activate_pause_and_roll_back(world: PortalWorld) -> None:
    at = _app(world.a, "client/workflows.py")
    assert "Status:** not active" in _texts(at)
    at.text_input(key="wf.daily_digest.source_url").input(DIGEST["source_url"])
    at.text_area(key="wf.daily_digest.recipients").input("team@example.test")
    at.selectbox(key="wf.preset").set_value("Weekdays at 09:00").run()
    assert at.text_input(key="wf.timezone").value == "Europe/Paris"
    assert "Next runs:" in _texts(at)
    at.button(key="wf.activate").click().run()
    assert "Daily digest is active (version 1)." in _texts(at)
    (act,) = workspace.activations(world.settings, world.a)
    assert (act.cron, act.timezone, act.status) == ("0 9 * * 1-5", "Europe/Paris", "active")

    at.selectbox(key="wf.preset").set_value("Custom cron").run()
    at.text_input(key="wf.cron").input("61 * * * *").run()
    assert any("Invalid cron expression" in w.value for w in at.warning)
    at.text_input(key="wf.cron").input("30 6 * * *")
    at.button(key="wf.activate").click().run()
    at.button(key="wf.pause").click().run()
    assert "Status:** paused" in _texts(at)
    at.selectbox(key="wf.rollback_to").set_value(1)
    at.button(key="wf.rollback").click().run()
    assert "Rolled back to version 1 (now version 3)." in _texts(at)
    (act,) = workspace.activations(world.settings, world.a)
    assert (act.cron, act.version, act.status) == ("0 9 * * 1-5", 3, "active")
    assert workspace.activations(world.settings, world.b) == []


def test_runs_show_only_own_runs_with_outputs_logs_and_retry(world: PortalWorld) -> None:
    mine = make_run(world.client_a, StateType.FAILED, secret_marker="alpha")
    theirs = make_run(world.client_b, secret_marker="bravo")
    at = _app(world.a, "client/runs.py")
    text = _texts(at)
    assert "output of" in text and "alpha" in text and "bravo" not in text
    their_name = runs.get_run(world.settings, world.b, theirs).name
    options = at.selectbox(key="runs.detail").options
    assert len(options) == 1 and their_name not in options[0]
    assert at.selectbox(key="runs.detail").value == str(mine)
    assert "Activate a workflow to run it." in text

    workspace.activate_workflow(world.settings, world.a, "daily_digest", DIGEST, None)
    mine_deployed = runs.run_now(world.settings, world.a, "daily_digest")
    from prefect.client.orchestration import get_client
    from prefect.states import Failed

    with get_client(sync_client=True) as api:
        api.set_flow_run_state(mine_deployed.id, Failed(), force=True)
    at = _app(world.a, "client/runs.py")
    at.selectbox(key="runs.detail").set_value(mine_deployed.id).run()
    at.button(key=f"runs.retry.{mine_deployed.id}").click().run()
    assert runs.get_run(world.settings, world.a, mine_deployed.id).state_name == "AwaitingRetry"

    at.button(key="runs.run_now").click().run()
    listed = runs.list_runs(world.settings, world.a)
    assert [r.trigger for r in listed if r.id != str(mine)] == ["manual", "manual"]
    assert str(mine) in [r.id for r in listed]


def test_approvals_page_without_requests(world: PortalWorld) -> None:
    at = _app(world.a, "client/approvals.py")
    if workspace.pending_approvals(world.settings, world.a):
        pytest.fail("a fresh client has no approval requests")
    assert "No approval requests." in _texts(at)


def test_usage_chart_and_table_for_own_client(world: PortalWorld) -> None:
    for client, tokens in ((world.client_a, 321), (world.client_b, 777)):
        record_llm_usage(
            world.settings.platform_database_url,
            client=client,
            workflow="daily_digest",
            flow_run_id=None,
            model="m",
            prompt_tokens=tokens,
            completion_tokens=0,
            total_tokens=tokens,
        )
    at = _app(world.a, "client/usage.py")
    table = at.dataframe[0].value
    assert list(table["LLM tokens"]) == [321] and "777" not in _texts(at)


def test_agency_clients_create_invite_runs_and_costs(world: PortalWorld) -> None:
    at = _app(world.agency)
    assert [t.value for t in at.title] == ["Clients"]
    assert {world.client_a, world.client_b} <= set(at.dataframe[0].value["client"])
    new_slug = f"{world.client_a}n"
    at.text_input[0].input(new_slug)
    at.text_input[1].input("New Co")
    next(b for b in at.button if b.label == "Create client").click().run()
    assert f"Client {new_slug} created." in _texts(at)
    next(b for b in at.selectbox if b.label == "Client").set_value(new_slug)
    next(t for t in at.text_input if t.label == "Email").input("new.user@newco.test")
    next(b for b in at.button if b.label == "Invite").click().run()
    temporary = at.code[-1].value
    from services import authenticate

    assert authenticate(world.settings, "new.user@newco.test", temporary).client == new_slug

    bad = make_run(world.client_b, StateType.FAILED)
    ok = make_run(world.client_a)
    at.switch_page("pages/agency/runs.py").run()
    ids = list(at.dataframe[0].value["id"])
    assert ids.index(str(bad)) < ids.index(str(ok))

    record_llm_usage(
        world.settings.platform_database_url,
        client=world.client_b,
        workflow="daily_digest",
        flow_run_id=None,
        model="m",
        prompt_tokens=5,
        completion_tokens=5,
        total_tokens=10,
    )
    at.switch_page("pages/agency/costs.py").run()
    assert world.client_b in set(at.dataframe[0].value["client"])

    # the workspace pages act for the client picked in the sidebar
    at.sidebar.selectbox[0].set_value(world.client_b).run()
    at.switch_page("pages/client/runs.py").run()
    assert at.selectbox(key="runs.detail").value == str(bad)  # B's only run


def test_approvals_answered_from_the_page_resume_the_run(world: PortalWorld) -> None:
    pending = PendingApproval(world.client_a, "Send the offer to Globex?")
    run_id = pending.wait_listed(world.settings, world.a)
    assert workspace.pending_approvals(world.settings, world.b) == []
    with pytest.raises(NotFound):
        workspace.answer_approval(world.settings, world.b, run_id, approved=False)

    at = _app(world.a, "client/approvals.py")
    assert "Send the offer to Globex?" in _texts(at)
    at.text_input(key=f"approvals.{run_id}.comment").input("go ahead")
    at.button(key=f"approvals.{run_id}.approve").click().run()
    assert "Approved: the run continues." in _texts(at)
    answer = pending.result()
    assert (answer.approved, answer.comment, answer.reviewer) == (True, "go ahead", world.email_a)


def _set_client_status(world: PortalWorld, slug: str, status: str) -> None:
    with session_scope(world.settings.platform_database_url) as session:
        client = session.scalar(select(Client).where(Client.slug == slug))
        assert client is not None
        client.status = status  # type: ignore[assignment]


def _fill_password(at: AppTest, current: str, new: str, again: str | None = None) -> None:
    at.text_input(key="password.current").input(current)
    at.text_input(key="password.new").input(new)
    at.text_input(key="password.again").input(new if again is None else again)
    at.button[0].click().run()


def test_an_invited_user_sees_only_set_your_password_until_done(world: PortalWorld) -> None:
    temporary = invite_user(world.settings, world.agency, world.client_a, "new@a.test")
    invited = authenticate(world.settings, "new@a.test", temporary.temporary_password)
    at = _app(invited)
    assert [t.value for t in at.title] == ["Set your password"]
    assert "temporary password" in _texts(at)
    with pytest.raises(Exception):  # noqa: B017 - the workspace is not in the navigation
        at.switch_page("pages/client/catalog.py").run()
    direct = AppTest.from_file(str(PORTAL / "pages/client/catalog.py"), default_timeout=30)
    direct.session_state["principal"] = invited
    direct.run()
    assert any("Choose your own password first" in e.value for e in direct.error)

    at = _app(invited)
    _fill_password(at, "not the temporary one", "my own passphrase")
    assert [e.value for e in at.error] == ["The current password is wrong."]
    _fill_password(at, temporary.temporary_password, "my own passphrase")
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Catalog"]
    assert [t.value for t in at.toast] == ["Your password is set."]
    assert not at.session_state["principal"].must_change_password
    assert authenticate(world.settings, "new@a.test", "my own passphrase").client == world.client_a


def test_change_password_page_keeps_this_session_and_ends_the_others(world: PortalWorld) -> None:
    other = authenticate(world.settings, world.email_a, PASSWORD)
    at = _app(world.a, "account/password.py")
    assert [t.value for t in at.title] == ["Change password"]
    _fill_password(at, PASSWORD, "a new passphrase", "another one")
    assert [e.value for e in at.error] == ["The two new passwords differ."]
    _fill_password(at, PASSWORD, "a new passphrase")
    assert "Your password is changed." in _texts(at)
    assert "a new passphrase" not in _texts(at) and PASSWORD not in _texts(at)
    at.switch_page("pages/client/catalog.py").run()
    assert [t.value for t in at.title] == ["Catalog"]

    elsewhere = _app(other)
    assert [t.value for t in elsewhere.title] == ["Sign in"]
    assert "password or role changed" in _texts(elsewhere)


def test_a_suspended_clients_open_session_ends_at_its_next_interaction(
    world: PortalWorld,
) -> None:
    at = _app(world.a, "client/catalog.py")
    staff = _app(world.agency)
    _set_client_status(world, world.client_a, "suspended")
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    assert "This account is suspended. Contact your agency." in _texts(at)
    assert "principal" not in at.session_state
    staff.run()
    assert [t.value for t in staff.title] == ["Clients"]


def test_a_run_output_is_downloaded_over_the_session_only(world: PortalWorld) -> None:
    run_id = make_run(world.client_a, secret_marker="delta")
    (artifact,) = runs.run_artifacts(world.settings, world.a, run_id)
    at = _app(world.a, "client/runs.py")
    assert not at.get("download_button")  # its /media/ URL would answer without a session
    assert not at.get("iframe")
    at.button(key=f"runs.download.{artifact.id}").click().run()
    (frame,) = at.get("iframe")
    payload = base64.b64encode(artifact.content()).decode()
    assert payload in frame.proto.srcdoc and not frame.proto.src
    assert f'"{artifact.filename}"' in frame.proto.srcdoc
    with session_scope(world.settings.platform_database_url) as session:
        downloads = session.scalars(
            select(AuditLog.target).where(AuditLog.action == "run.download")
        ).all()
    assert downloads == [artifact.filename]

    _set_client_status(world, world.client_a, "suspended")
    at.button(key=f"runs.download.{artifact.id}").click().run()
    assert [t.value for t in at.title] == ["Sign in"] and not at.get("iframe")
    assert "This account is suspended." in _texts(at)


def test_agency_suspends_resumes_and_offboards_a_client_from_the_page(world: PortalWorld) -> None:
    at = _app(world.agency)
    client = world.client_b
    next(b for b in at.selectbox if b.label == "Client ").set_value(client)
    next(b for b in at.button if b.label == "Suspend").click().run()
    assert f"Client {client} is suspended." in _texts(at)
    with pytest.raises(AuthFailed, match="suspended"):
        workspace.catalog(world.settings, world.b)
    next(b for b in at.selectbox if b.label == "Client ").set_value(client)
    next(b for b in at.button if b.label == "Resume").click().run()
    assert f"Client {client} is active." in _texts(at)

    next(b for b in at.selectbox if b.label == "Client ").set_value(client)
    next(b for b in at.button if b.label == "Offboard").click().run()
    assert "Type the client's slug exactly" in _texts(at)
    assert client in set(at.dataframe[0].value["client"])
    next(b for b in at.selectbox if b.label == "Client ").set_value(client)
    next(t for t in at.text_input if t.label == "Type the slug to offboard").input(client)
    next(b for b in at.button if b.label == "Offboard").click().run()
    assert f"Client {client} offboarded" in _texts(at)
    assert client not in set(at.dataframe[0].value["client"])
    exports = list((world.settings.home / "exports").glob(f"{client}-*.json"))
    assert len(exports) == 1


def test_a_client_fills_only_its_own_fields_and_picks_credentials_by_title(
    world: PortalWorld,
) -> None:
    smtp = {"host": "mail.acme.test", "from_address": "digest@acme.test", "security": "none"}
    workspace.save_credential(world.settings, world.a, "smtp", "default", smtp)
    workspace.save_credential(world.settings, world.a, "openai", "default", {"api_key": "sk-1"})
    workspace.save_credential(world.settings, world.a, "openai", "team", {"api_key": "sk-2"})
    at = _app(world.a, "client/workflows.py")
    keys = {e.key for e in at.text_input} | {e.key for e in at.text_area}
    # the agency's settings (model, prompt) and credential names are no text boxes for a client
    assert "wf.daily_digest.model" not in keys and "wf.daily_digest.instructions" not in keys
    assert "wf.daily_digest.smtp_credential" not in keys
    text = _texts(at)
    assert "Uses your Email account (SMTP) · default." in text  # the only one: bound by itself
    picker = at.selectbox(key="wf.daily_digest.openai_credential")  # two: the client picks
    assert picker.options == ["AI model (OpenAI-compatible) · default",
                              "AI model (OpenAI-compatible) · team"]  # fmt: skip
    picker.set_value("team")
    at.text_input(key="wf.daily_digest.source_url").input(DIGEST["source_url"])
    at.text_area(key="wf.daily_digest.recipients").input("team@example.test")
    at.selectbox(key="wf.preset").set_value("No schedule (run manually)").run()
    at.button(key="wf.activate").click().run()
    assert "Daily digest is active (version 1)." in _texts(at), _texts(at)
    (act,) = workspace.activations(world.settings, world.a)
    assert act.settings["openai_credential"] == "team"
    assert act.settings["smtp_credential"] == "default"
    assert act.settings["model"] is None  # the agency's default applies

    # agency staff see the agency's settings too
    staff = _app(world.agency, "client/workflows.py")
    staff_keys = {e.key for e in staff.text_input} | {e.key for e in staff.text_area}
    assert "wf.daily_digest.model" in staff_keys
