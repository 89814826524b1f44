"""The agency's Releases page (``AppTest`` through the real router): each client's release, and
its roll-back button restoring an earlier version's release and settings; clients never see it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agency.settings import get_settings
from services import activate, list_activations
from services.releases import create_release
from tests.deployments.test_releases import _git, _write_probe, make_project, register_probe
from tests.fixtures.portal import PortalWorld

APP = str(Path(__file__).resolve().parents[2] / "portal" / "app.py")


@pytest.fixture
def world(
    portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[PortalWorld]:
    project = make_project(tmp_path)
    register_probe(monkeypatch)
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    monkeypatch.setenv("AGENCY_PROJECT_DIR", str(project))
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def test_releases_page_shows_pins_and_rolls_a_client_back(world: PortalWorld) -> None:
    settings = get_settings()
    project = settings.project_dir
    out = {"out": str(project / "out.json")}
    v1 = create_release(settings, "release_probe")
    activate(settings, world.client_a, "release_probe", {**out, "note": "one"}, None)
    _write_probe(project, "v2")
    _git(project, "commit", "-q", "-am", "v2")
    v2 = create_release(settings, "release_probe")
    activate(
        settings, world.client_a, "release_probe", {**out, "note": "two"}, None, release=v2.short
    )

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["principal"] = world.agency
    at.run()
    at.switch_page("pages/agency/releases.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    row = table[table["client"] == world.client_a].iloc[0]
    assert (row["release"], row["activation version"]) == (v2.short, 2)

    next(s for s in at.selectbox if s.label == "Back to version").set_value(1)
    next(b for b in at.button if b.label == "Roll back").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "back on version 1" in " ".join(str(m.value) for m in at.success)
    [view] = [
        v for v in list_activations(settings, world.client_a) if v.workflow == "release_probe"
    ]
    assert (view.version, view.release, view.settings["note"]) == (3, v1.short, "one")

    direct = AppTest.from_file(
        str(Path(APP).parent / "pages/agency/releases.py"), default_timeout=30
    )
    direct.session_state["principal"] = world.a
    direct.run()
    assert "Only agency staff can do this." in [e.value for e in direct.error]
    assert direct.dataframe.len == 0
