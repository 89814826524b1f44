"""``blocks/oauth/tokens.py``: an expired access token is refreshed once per credential, however
many processes ask at the same moment, on both platform DB backends; the provider (the real test
authorization server, which rotates refresh tokens) never sees a refresh token twice. A slow
token endpoint still means one refresh; a 503 is transient and leaves the credential as it was.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agency.db import upgrade
from agency.errors import TransientNodeError
from agency.settings import get_settings
from blocks.oauth import oauth_credential
from tests.fixtures.oauth_server import OAuthServer
from tests.nodes.test_oauth_nodes import add_client, connect, health_status, stored

pytestmark = pytest.mark.usefixtures("prefect_server")

REPO = Path(__file__).resolve().parents[2]
# One refresher: import, say ready, wait for "go" on stdin (so all start together), then ask for
# the credential and print a digest of the access token it got (never the token itself).
_REFRESHER = textwrap.dedent(
    """
    import hashlib, sys
    from agency.errors import AgencyError
    from blocks.oauth import oauth_credential
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        token = oauth_credential(sys.argv[1], "google", "default").access_token
    except AgencyError as exc:
        print("error", type(exc).__name__, exc, flush=True)
    else:
        print("ok", hashlib.sha256(token.get_secret_value().encode()).hexdigest(), flush=True)
    """
)


@pytest.fixture(params=["sqlite", "postgresql"])
def platform_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """The migrated platform DB (SQLite file or PostgreSQL) of this process and its children
    (on SQLite, queued refreshers wait for the write lock with the engine's 30 s timeout)."""
    url = str(request.getfixturevalue(f"{request.param}_database_url"))
    upgrade(url)
    previous = os.environ.get("AGENCY_DATABASE_URL")
    os.environ["AGENCY_DATABASE_URL"] = url
    get_settings.cache_clear()
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("AGENCY_DATABASE_URL", None)
        else:
            os.environ["AGENCY_DATABASE_URL"] = previous
        get_settings.cache_clear()


@pytest.fixture
def client(platform_db: str, client_slug: str) -> str:
    add_client(platform_db, client_slug)
    return client_slug


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _refresh_in_processes(client: str, count: int) -> list[str]:
    """Start ``count`` processes, release them together, and return each one's answer line."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REFRESHER, client],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
                proc.communicate(timeout=30)[1]
            )
        for proc in procs:  # as close together as the pipes allow
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            answers.append(out.strip())
        return answers
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _refreshes_once(server: OAuthServer, client: str, database_url: str, processes: int) -> None:
    old = connect(server, client, "google", expired=True)

    answers = _refresh_in_processes(client, processes)

    assert server.refresh_count == 1, answers
    assert server.refresh_tokens_seen == [old["refresh_token"]]
    fresh = stored(client, "google")
    assert fresh.access_token.get_secret_value() != old["access_token"]
    assert answers == [f"ok {_digest(fresh.access_token.get_secret_value())}"] * processes
    assert health_status(database_url, client, "google") == "connected"
    assert server.errors == []


def test_ten_refreshers_in_separate_processes_refresh_once(
    oauth_server: OAuthServer, client: str, platform_db: str
) -> None:
    oauth_server.token_delay_seconds = 0.2  # widen the window in which they would race
    _refreshes_once(oauth_server, client, platform_db, 10)


@pytest.mark.parametrize("platform_db", ["postgresql"], indirect=True)
def test_a_slow_token_endpoint_still_means_one_refresh(
    oauth_server: OAuthServer, client: str, platform_db: str
) -> None:
    oauth_server.token_delay_seconds = 3.0  # the others wait on the lock all that time
    _refreshes_once(oauth_server, client, platform_db, 4)


def test_a_503_from_the_token_endpoint_is_transient_and_changes_nothing(
    oauth_server: OAuthServer, client: str, platform_db: str
) -> None:
    old = connect(oauth_server, client, "google", expired=True)
    before = stored(client, "google")
    oauth_server.token_status = 503

    with pytest.raises(TransientNodeError, match="Google answered 503"):
        oauth_credential(client, "google", "default")

    after = stored(client, "google")
    assert after == before  # same tokens, same expiry
    assert health_status(platform_db, client, "google") != "needs_reconnect"
    assert oauth_server.refresh_count == 0

    oauth_server.token_status = None  # the provider is back: the same refresh token still works
    started = time.monotonic()
    fresh = oauth_credential(client, "google", "default")
    assert time.monotonic() - started < 10
    assert fresh.access_token.get_secret_value() != old["access_token"]
    assert oauth_server.refresh_count == 1
    assert oauth_server.refresh_tokens_seen == [old["refresh_token"]] * 2
