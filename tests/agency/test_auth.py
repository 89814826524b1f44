"""Portal sign-in on a real platform DB (SQLite and PostgreSQL): argon2 hashes, one message for
unknown email and wrong password, lockout after repeated failures, session expiry, scoping; and
accounts: temporary passwords replaced first, password and role changes and removal ending
sessions, a suspended client's sessions ending, every session re-checked in one query."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select

from agency.db import AuditLog, Client, User, session_factory, session_scope, utcnow
from agency.errors import AccessDenied, AuthFailed, InputInvalid, NotFound
from agency.settings import Settings
from services import add_client, authenticate, create_user
from services.auth import (
    MIN_PASSWORD_LENGTH,
    change_password,
    change_role,
    check_session,
    invite_user,
    remove_user,
    require_agency,
    scope_client,
    set_password,
    sign_out,
)

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(migrated_db_url: str, tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path, database_url=migrated_db_url, lockout_failures=3)
    add_client(s, "acme", "Acme")
    add_client(s, "beta", "Beta")
    create_user(s, "Alice@Acme.test", PASSWORD, "client", "acme")
    return s


def _actions(settings: Settings, email: str) -> list[str]:
    with session_scope(settings.platform_database_url) as session:
        return list(
            session.scalars(
                select(AuditLog.action).where(AuditLog.target == email).order_by(AuditLog.id)
            )
        )


def test_password_is_stored_as_argon2_and_sign_in_scopes_to_client(settings: Settings) -> None:
    with session_scope(settings.platform_database_url) as session:
        user = session.scalar(select(User).where(User.email == "alice@acme.test"))
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    who = authenticate(settings, " ALICE@acme.test ", PASSWORD)
    assert (who.email, who.role, who.client) == ("alice@acme.test", "client", "acme")
    assert who.expires_at - utcnow() > timedelta(minutes=settings.session_minutes - 1)
    sign_out(settings, who)
    assert _actions(settings, "alice@acme.test") == ["user.create", "auth.login", "auth.logout"]


def test_unknown_email_and_wrong_password_get_the_same_message(settings: Settings) -> None:
    with pytest.raises(AuthFailed) as wrong:
        authenticate(settings, "alice@acme.test", "not the password")
    with pytest.raises(AuthFailed) as unknown:
        authenticate(settings, "nobody@acme.test", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == "Wrong email or password."
    assert _actions(settings, "alice@acme.test")[-1] == "auth.failed"


def test_lockout_after_repeated_failures_even_with_the_right_password(settings: Settings) -> None:
    for _ in range(settings.lockout_failures):
        with pytest.raises(AuthFailed, match="Wrong email"):
            authenticate(settings, "alice@acme.test", "guess")
    with pytest.raises(AuthFailed, match="Too many failed sign-ins"):
        authenticate(settings, "alice@acme.test", PASSWORD)
    assert _actions(settings, "alice@acme.test")[-1] == "auth.locked"
    # once the lockout period is over the right password works again
    later = settings.model_copy(update={"lockout_minutes": 0})
    assert authenticate(later, "alice@acme.test", PASSWORD).client == "acme"


def test_a_success_resets_the_failure_count(settings: Settings) -> None:
    for _ in range(settings.lockout_failures - 1):
        with pytest.raises(AuthFailed):
            authenticate(settings, "alice@acme.test", "guess")
    authenticate(settings, "alice@acme.test", PASSWORD)
    with pytest.raises(AuthFailed, match="Wrong email"):
        authenticate(settings, "alice@acme.test", "guess")
    assert authenticate(settings, "alice@acme.test", PASSWORD).client == "acme"


def test_expired_session_is_refused_everywhere(settings: Settings) -> None:
    who = authenticate(settings, "alice@acme.test", PASSWORD)
    expired = replace(who, expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(AuthFailed, match="expired"):
        check_session(expired)
    with pytest.raises(AuthFailed, match="expired"):
        scope_client(expired)
    with pytest.raises(AuthFailed, match="sign in"):
        check_session(None)


def test_client_user_is_scoped_to_its_client(settings: Settings) -> None:
    who = authenticate(settings, "alice@acme.test", PASSWORD)
    assert scope_client(who) == "acme"
    assert scope_client(who, "acme") == "acme"
    with pytest.raises(AccessDenied):
        scope_client(who, "beta")
    with pytest.raises(AccessDenied):
        require_agency(who)
    with pytest.raises(AccessDenied):
        invite_user(settings, who, "beta", "mallory@beta.test")


def test_agency_invites_a_client_user_with_a_temporary_password(settings: Settings) -> None:
    create_user(settings, "ops@agency.test", PASSWORD, "agency")
    ops = authenticate(settings, "ops@agency.test", PASSWORD)
    assert scope_client(ops, "beta") == "beta"
    invite = invite_user(settings, ops, "beta", "Bea@Beta.test")
    assert invite.email == "bea@beta.test" and len(invite.temporary_password) >= 12
    assert authenticate(settings, "bea@beta.test", invite.temporary_password).client == "beta"
    with session_scope(settings.platform_database_url) as session:
        row = session.scalar(select(AuditLog).where(AuditLog.target == "bea@beta.test"))
        assert row is not None and (row.actor, row.action) == ("ops@agency.test", "user.create")
        assert invite.temporary_password not in str(row.detail)


def test_bad_user_input_is_refused(settings: Settings) -> None:
    with pytest.raises(InputInvalid, match="at least"):
        create_user(settings, "x@acme.test", "short", "client", "acme")
    with pytest.raises(InputInvalid, match="already exists"):
        create_user(settings, "alice@acme.test", PASSWORD, "client", "acme")
    with pytest.raises(InputInvalid, match="needs a client"):
        create_user(settings, "y@acme.test", PASSWORD, "client")
    with pytest.raises(InputInvalid, match="not an email"):
        create_user(settings, "nope", PASSWORD, "agency")


def _suspend(settings: Settings, slug: str, status: str = "suspended") -> None:
    with session_scope(settings.platform_database_url) as session:
        client = session.scalar(select(Client).where(Client.slug == slug))
        assert client is not None
        client.status = status  # type: ignore[assignment]


def _details(settings: Settings, email: str) -> str:
    with session_scope(settings.platform_database_url) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.target == email)).all()
        return " ".join(f"{r.action} {r.detail}" for r in rows)


def test_invited_user_must_choose_a_password_before_anything_else(settings: Settings) -> None:
    create_user(settings, "ops@agency.test", PASSWORD, "agency")
    ops = authenticate(settings, "ops@agency.test", PASSWORD)
    temporary = invite_user(settings, ops, "beta", "bea@beta.test").temporary_password
    bea = authenticate(settings, "bea@beta.test", temporary)
    assert bea.must_change_password and bea.client == "beta"
    for refused in (lambda: scope_client(bea), lambda: check_session(bea)):
        with pytest.raises(AccessDenied, match="Choose your own password first"):
            refused()
    assert check_session(bea, allow_password_change=True) == bea

    new = "bea's own passphrase"
    with pytest.raises(InputInvalid, match="two new passwords differ"):
        change_password(settings, bea, temporary, new, new + "x")
    with pytest.raises(InputInvalid, match=f"at least {MIN_PASSWORD_LENGTH}"):
        change_password(settings, bea, temporary, "short", "short")
    with pytest.raises(InputInvalid, match="differs from the current"):
        change_password(settings, bea, temporary, temporary, temporary)
    with pytest.raises(InputInvalid, match="current password is wrong"):
        change_password(settings, bea, "not the temporary one", new, new)
    assert _actions(settings, "bea@beta.test")[-1] == "auth.failed"

    mine = change_password(settings, bea, temporary, new, new)
    assert not mine.must_change_password and scope_client(mine) == "beta"
    with pytest.raises(AuthFailed, match="password or role changed"):
        check_session(bea, allow_password_change=True)
    with pytest.raises(AuthFailed, match="Wrong email or password"):
        authenticate(settings, "bea@beta.test", temporary)
    again = authenticate(settings, "bea@beta.test", new)
    assert not again.must_change_password and scope_client(again) == "beta"
    trail = _details(settings, "bea@beta.test")
    assert "user.password {'by': 'self'}" in trail
    assert temporary not in trail and new not in trail


def test_a_password_change_ends_the_users_other_sessions(settings: Settings) -> None:
    here = authenticate(settings, "alice@acme.test", PASSWORD)
    there = authenticate(settings, "alice@acme.test", PASSWORD)
    new = "a brand new passphrase"
    here = change_password(settings, here, PASSWORD, new, new)
    assert scope_client(here) == "acme"
    with pytest.raises(AuthFailed, match="Please sign in again"):
        scope_client(there)

    # an operator reset ends this one too, and a temporary one must be replaced at sign-in
    set_password(settings, "ALICE@acme.test", "operator chosen pw", temporary=True)
    with pytest.raises(AuthFailed, match="password or role changed"):
        check_session(here)
    reset = authenticate(settings, "alice@acme.test", "operator chosen pw")
    assert reset.must_change_password
    with pytest.raises(AccessDenied):
        scope_client(reset)
    with pytest.raises(NotFound, match="no user with email 'ghost@acme.test'"):
        set_password(settings, "ghost@acme.test", "long enough pw")
    with pytest.raises(InputInvalid, match="at least"):
        set_password(settings, "alice@acme.test", "short")
    trail = _details(settings, "alice@acme.test")
    assert "'by': 'operator', 'temporary': True" in trail
    assert "operator chosen pw" not in trail and new not in trail


def test_wrong_current_passwords_lock_the_account_and_a_reset_unlocks_it(
    settings: Settings,
) -> None:
    who = authenticate(settings, "alice@acme.test", PASSWORD)
    new = "a brand new passphrase"
    for _ in range(settings.lockout_failures):
        with pytest.raises(InputInvalid, match="current password is wrong"):
            change_password(settings, who, "a wrong guess!", new, new)
    with pytest.raises(AuthFailed, match="Too many failed sign-ins"):
        change_password(settings, who, PASSWORD, new, new)
    with pytest.raises(AuthFailed, match="Too many failed sign-ins"):
        authenticate(settings, "alice@acme.test", PASSWORD)
    set_password(settings, "alice@acme.test", new)
    assert authenticate(settings, "alice@acme.test", new).client == "acme"


def test_role_change_and_removal_end_the_users_sessions(settings: Settings) -> None:
    alice = authenticate(settings, "alice@acme.test", PASSWORD)
    change_role(settings, "alice@acme.test", "agency", actor="ops@agency.test")
    with pytest.raises(AuthFailed, match="password or role changed"):
        scope_client(alice)
    staff = authenticate(settings, "alice@acme.test", PASSWORD)
    assert staff.is_agency and scope_client(staff, "beta") == "beta"

    change_role(settings, "alice@acme.test", "client", "beta")
    with pytest.raises(AuthFailed, match="password or role changed"):
        require_agency(staff)
    beta = authenticate(settings, "alice@acme.test", PASSWORD)
    assert beta.client == "beta"
    with pytest.raises(InputInvalid, match="already has that role"):
        change_role(settings, "alice@acme.test", "client", "beta")
    with pytest.raises(InputInvalid, match="needs a client"):
        change_role(settings, "alice@acme.test", "client")
    with pytest.raises(InputInvalid, match="Role must be"):
        change_role(settings, "alice@acme.test", "owner")
    with pytest.raises(NotFound, match="Unknown client 'gamma'"):
        change_role(settings, "alice@acme.test", "client", "gamma")

    remove_user(settings, "alice@acme.test", actor="ops@agency.test")
    with pytest.raises(AuthFailed, match="no longer exists"):
        scope_client(beta)
    with pytest.raises(AuthFailed, match="Wrong email or password"):
        authenticate(settings, "alice@acme.test", PASSWORD)
    with pytest.raises(NotFound):
        remove_user(settings, "alice@acme.test")
    # a new user with the same email (SQLite may even reuse the id) gets none of the old sessions
    create_user(settings, "alice@acme.test", PASSWORD, "client", "beta")
    with pytest.raises(AuthFailed):
        check_session(beta)
    with session_scope(settings.platform_database_url) as session:
        rows = session.scalars(
            select(AuditLog)
            .where(AuditLog.action.in_(("user.role", "user.remove")))
            .order_by(AuditLog.id)
        ).all()
    assert [(r.actor, r.action, r.detail) for r in rows] == [
        (
            "ops@agency.test",
            "user.role",
            {"from": "client", "to": "agency", "from_client": "acme", "to_client": None},
        ),
        (
            "cli",
            "user.role",
            {"from": "agency", "to": "client", "from_client": None, "to_client": "beta"},
        ),
        ("ops@agency.test", "user.remove", {"role": "client"}),
    ]


def test_a_suspended_clients_open_sessions_end_at_their_next_call(settings: Settings) -> None:
    alice = authenticate(settings, "alice@acme.test", PASSWORD)
    create_user(settings, "ops@agency.test", PASSWORD, "agency")
    ops = authenticate(settings, "ops@agency.test", PASSWORD)
    _suspend(settings, "acme")
    for call in (lambda: check_session(alice), lambda: scope_client(alice, "acme")):
        with pytest.raises(AuthFailed) as ended:
            call()
        assert str(ended.value) == "This account is suspended. Contact your agency."
    assert scope_client(ops, "acme") == "acme"  # agency staff are not the client
    with pytest.raises(AuthFailed, match="suspended"):
        authenticate(settings, "alice@acme.test", PASSWORD)
    _suspend(settings, "acme", "active")
    assert scope_client(authenticate(settings, "alice@acme.test", PASSWORD)) == "acme"


def test_a_session_check_is_one_query_and_the_principal_shows_no_database_url(
    settings: Settings,
) -> None:
    alice = authenticate(settings, "alice@acme.test", PASSWORD)
    engine = session_factory(alice.database_url).kw["bind"]
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        scope_client(alice)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")
    assert alice.database_url == settings.platform_database_url
    assert "database_url" not in repr(alice) and alice.database_url not in repr(alice)
