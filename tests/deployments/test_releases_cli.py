"""``agency release create | list`` and ``agency rollout``'s argument errors, in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.settings import get_settings
from cli.main import app
from tests.deployments.test_releases import _write_probe, make_project, register_probe


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = make_project(tmp_path)
    register_probe(monkeypatch)
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENCY_PROJECT_DIR", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def _agency(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_release_create_and_list(project: Path) -> None:
    code, out = _agency("release", "list")
    assert (code, out.strip()) == (0, "no releases")
    code, out = _agency("release", "create", "release_probe")
    assert code == 0, out
    assert "of release_probe 1.0.0" in out and " in " in out
    short = out.split()[1]
    code, again = _agency("release", "create", "release_probe")
    assert code == 0 and again.split()[1] == short and "already stored" in again
    code, out = _agency("release", "list")
    assert code == 0 and out.startswith(short) and "git" in out

    _write_probe(project, "dirty")
    code, out = _agency("release", "create", "release_probe")
    assert code == 2 and "tests/release_probe/probe.py" in out and "Traceback" not in out


def test_rollout_refuses_bad_arguments(project: Path) -> None:
    _agency("release", "create", "release_probe")
    code, out = _agency("rollout", "release_probe", "latest", "--canary", "10%", "--all")
    assert code == 2 and "exactly one of --clients, --canary or --all" in out
    code, out = _agency("rollout", "release_probe", "latest", "--canary", "150%")
    assert code == 2 and "between 1% and 99%" in out
    code, out = _agency("rollout", "release_probe", "nothex", "--all")
    assert code == 2 and "is not a release" in out
    code, out = _agency("rollout", "release_probe", "latest", "--all")
    assert code == 2 and "No client has 'release_probe' activated" in out
    code, out = _agency("rollout", "status")
    assert (code, out.strip()) == (0, "nothing to report")
    code, out = _agency("rollout", "halt", "release_probe")
    assert code == 2 and "No rollout of 'release_probe' is running" in out
    code, out = _agency("rollback", "release_probe", "--client", "nobody", "--version", "1")
    assert code == 2 and "nobody" in out and "Traceback" not in out
