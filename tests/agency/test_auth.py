"""Portal sign-in on a real platform DB (SQLite and PostgreSQL): argon2 hashes, one message for
unknown email and wrong password, lockout after repeated failures, session expiry, scoping."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agency.db import AuditLog, User, session_scope, utcnow
from agency.errors import AccessDenied, AuthFailed, InputInvalid
from agency.settings import Settings
from services import add_client, authenticate, create_user
from services.auth import check_session, invite_user, require_agency, scope_client, sign_out

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
