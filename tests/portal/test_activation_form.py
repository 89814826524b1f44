"""The Workflows page's form (``AppTest`` through the real router, real platform DB and Prefect
server): numbers out of their bounds and bad URLs are named under their fields when Activate
is pressed, nothing is saved, and the corrected form activates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agency.settings import get_settings
from services import workspace
from tests.fixtures.portal import PortalWorld

APP = str(Path(__file__).resolve().parents[2] / "portal" / "app.py")


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalWorld]:
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def test_bounds_and_urls_are_named_and_nothing_is_saved_until_right(world: PortalWorld) -> None:
    workspace.save_credential(
        world.settings, world.a, "slack_webhook", "default", {"url": "https://hooks.example.org/x"}
    )
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["principal"] = world.a
    at.run()
    at.switch_page("pages/client/workflows.py").run()
    at.selectbox(key="wf.workflow").set_value("uptime_monitor").run()
    at.text_area(key="wf.uptime_monitor.urls").input("https://example.org\nftp://example.org")
    at.text_input(key="wf.uptime_monitor.timeout_seconds").input("90")
    at.text_input(key="wf.uptime_monitor.expected_status_below").input("lots")
    at.selectbox(key="wf.preset").set_value("No schedule (run manually)").run()
    assert _errors(at) == []  # nothing is judged before the person presses Activate
    at.button(key="wf.activate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = _errors(at)
    assert "Line 2: 'ftp://example.org' is not a web address" in errors[0]
    assert errors[1:] == [
        "Enter a number at most 60.",
        "Enter a whole number, like 3.",
        "Nothing was saved: correct the fields marked above.",
    ]
    assert workspace.activations(world.settings, world.a) == []
    assert workspace.history(world.settings, world.a, "uptime_monitor") == []

    at.text_area(key="wf.uptime_monitor.urls").input("https://example.org")
    at.text_input(key="wf.uptime_monitor.timeout_seconds").input("60").run()
    # corrected fields go quiet at once; the one still wrong keeps its message
    assert _errors(at) == [
        "Enter a whole number, like 3.",
        "Nothing was saved: correct the fields marked above.",
    ]
    at.text_input(key="wf.uptime_monitor.expected_status_below").input("300")
    at.button(key="wf.activate").click().run()
    assert _errors(at) == []
    (act,) = workspace.activations(world.settings, world.a)
    assert act.settings["urls"] == ["https://example.org"]
    assert (act.settings["timeout_seconds"], act.settings["expected_status_below"]) == (60, 300)
