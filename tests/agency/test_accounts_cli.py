"""``agency user password|role|remove`` and ``invite``: passwords only from hidden prompts, one
line on bad input, the user's sessions ended, every change audited without a secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agency.db import AuditLog, session_scope
from agency.errors import AccessDenied, AuthFailed
from agency.settings import Settings, get_settings
from cli.main import app
from services import add_client, authenticate, create_user
from services.auth import check_session, scope_client

PASSWORD = "correct horse battery"
NEW = "a new long passphrase"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    settings = get_settings()
    from agency.db import upgrade

    upgrade(settings.platform_database_url)
    add_client(settings, "acme", "Acme")
    create_user(settings, "alice@acme.test", PASSWORD, "client", "acme")
    yield settings
    get_settings.cache_clear()


def _cli(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    if result.exit_code == 1:
        raise AssertionError(f"crashed: {args}: {result.output}") from result.exception
    return result.exit_code, result.output


def _one_line_error(code: int, output: str, needle: str, prompts: int = 0) -> None:
    """Exit 2 with one error line (after ``prompts`` prompt lines), never a traceback."""
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == prompts + 1, output
    assert lines[-1].startswith("error: ") and needle in lines[-1], output
    assert "Traceback" not in output


def _audit(settings: Settings) -> str:
    with session_scope(settings.platform_database_url) as session:
        return " ".join(
            f"{r.actor} {r.action} {r.target} {r.detail}"
            for r in session.scalars(select(AuditLog).order_by(AuditLog.id))
        )


def test_user_password_asks_twice_hidden_and_ends_the_sessions(settings: Settings) -> None:
    before = authenticate(settings, "alice@acme.test", PASSWORD)
    code, out = _cli("user", "password", "Alice@Acme.test", input=f"{NEW}\n{NEW}\n")
    assert code == 0, out
    assert "password of alice@acme.test changed" in out and NEW not in out
    with pytest.raises(AuthFailed, match="password or role changed"):
        check_session(before)
    assert authenticate(settings, "alice@acme.test", NEW).client == "acme"

    # mismatching entries are asked again; nothing is taken from the command line
    code, out = _cli(
        "user", "password", "alice@acme.test", "--temporary",
        input=f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert code == 0 and "do not match" in out and PASSWORD not in out
    forced = authenticate(settings, "alice@acme.test", PASSWORD)
    with pytest.raises(AccessDenied, match="Choose your own password first"):
        scope_client(forced)

    _one_line_error(
        *_cli("user", "password", "ghost@acme.test", input=f"{NEW}\n{NEW}\n"),
        "There is no user with email 'ghost@acme.test'.",
    )
    _one_line_error(
        *_cli("user", "password", "alice@acme.test", input="short\nshort\n"), "at least 10", 2
    )
    trail = _audit(settings)
    assert "cli user.password alice@acme.test" in trail
    assert NEW not in trail and PASSWORD not in trail


def test_user_invite_makes_the_password_temporary(settings: Settings) -> None:
    code, out = _cli("user", "invite", "Boss@Acme.test", "--client", "acme")
    assert code == 0, out
    (temporary,) = re.findall(r"temporary password \(shown once\): (\S+)", out)
    boss = authenticate(settings, "boss@acme.test", temporary)
    assert boss.must_change_password
    with pytest.raises(AccessDenied):
        scope_client(boss)
    assert temporary not in _audit(settings)


def test_user_role_and_remove_end_the_sessions(settings: Settings) -> None:
    alice = authenticate(settings, "alice@acme.test", PASSWORD)
    code, out = _cli("user", "role", "alice@acme.test", "agency")
    assert (code, out.strip()) == (
        0,
        "user alice@acme.test is now agency; their sessions are ended",
    )
    with pytest.raises(AuthFailed, match="password or role changed"):
        check_session(alice)
    staff = authenticate(settings, "alice@acme.test", PASSWORD)
    assert staff.is_agency

    _one_line_error(*_cli("user", "role", "alice@acme.test", "client"), "needs a client")
    _one_line_error(*_cli("user", "role", "alice@acme.test", "agency"), "already has that role")
    _one_line_error(*_cli("user", "role", "alice@acme.test", "boss"), "Role must be")
    _one_line_error(
        *_cli("user", "role", "alice@acme.test", "client", "--client", "nope"),
        "Unknown client 'nope'",
    )

    declined = CliRunner().invoke(app, ["user", "remove", "alice@acme.test"], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output  # nothing removed
    assert authenticate(settings, "alice@acme.test", PASSWORD).is_agency
    assert _cli("user", "remove", "alice@acme.test", "--yes")[0] == 0
    with pytest.raises(AuthFailed, match="no longer exists"):
        check_session(staff)
    _one_line_error(*_cli("user", "remove", "alice@acme.test", "--yes"), "no user with email")
    trail = _audit(settings)
    assert "cli user.role alice@acme.test" in trail and "cli user.remove alice@acme.test" in trail
