"""The tests' own prerequisites: Redis is started by the session when none listens on 6379, and a
missing Redis or Chromium skips its tests loudly outside CI and fails them when ``CI`` is set.

Each case runs a small pytest session in a subprocess (its own conftest points the fixtures at a
port where nothing listens, or at a Chromium path that does not exist), so the real skip, failure
and end-of-session banner are what is checked.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures._net import free_port

ROOT = Path(__file__).resolve().parents[1]

REDIS_CONFTEST = """
import tests.fixtures.redis_server as rs
rs.DEFAULT_PORT = {port}
from tests.fixtures.redis_server import redis_server
from tests.fixtures.prerequisites import pytest_terminal_summary
"""
REDIS_TEST = """
def test_redis(redis_server):
    assert redis_server.port != 6379 and redis_server.started
    assert redis_server.client(3).set("k", "v") and redis_server.client(3).get("k") == b"v"
    print("REDIS", redis_server.port)
"""
CHROMIUM_CONFTEST = """
import tests.fixtures._browser as b
b.CHROMIUM = "{path}"
from tests.fixtures.prerequisites import pytest_terminal_summary
"""
CHROMIUM_TEST = """
from tests.fixtures._browser import launch_chromium

def test_browser():
    launch_chromium(None)
"""


def _session(
    tmp_path: Path, conftest: str, test: str, *, ci: bool, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_it.py").write_text(test)
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:xdist", "-p", "no:cacheprovider"]
        + ["-rs", "-s", "-W", "error", "--rootdir", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_session_starts_redis_when_none_listens_and_stops_it(tmp_path: Path) -> None:
    run = _session(tmp_path, REDIS_CONFTEST.format(port=free_port()), REDIS_TEST, ci=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    port = int(run.stdout.split("REDIS ", 1)[1].split()[0])
    with pytest.raises(OSError):  # stopped with the session
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("ci", [False, True])
def test_missing_redis_skips_loudly_or_fails_in_ci(tmp_path: Path, ci: bool) -> None:
    # nothing listens on the port and PATH has no redis-server (only the Python running pytest)
    conftest = REDIS_CONFTEST.format(port=free_port())
    run = _session(tmp_path, conftest, REDIS_TEST, ci=ci, path=str(Path(sys.executable).parent))
    out = run.stdout
    assert "MISSING PREREQUISITE: Redis" in out and "apt-get install -y redis-server" in out
    if ci:
        assert run.returncode == 1 and "1 error" in out, out[-3000:]
    else:
        assert run.returncode == 0 and "1 skipped" in out, out[-3000:]
        assert "1 tests SKIPPED: prerequisites missing" in out


@pytest.mark.parametrize("ci", [False, True])
def test_missing_chromium_skips_loudly_or_fails_in_ci(tmp_path: Path, ci: bool) -> None:
    conftest = CHROMIUM_CONFTEST.format(path=tmp_path / "no-chromium")
    run = _session(tmp_path, conftest, CHROMIUM_TEST, ci=ci)
    out = run.stdout
    assert "MISSING PREREQUISITE: Chromium" in out
    assert "apt-get install -y chromium chromium-driver" in out
    if ci:
        assert run.returncode == 1 and "1 failed" in out, out[-3000:]
    else:
        assert run.returncode == 0 and "1 skipped" in out, out[-3000:]
        assert "1 tests SKIPPED: prerequisites missing" in out
