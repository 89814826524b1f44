"""The portal's Workflows page lists the client's chains (only its own) and removes one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agency.settings import get_settings
from services import activate
from services.chains import list_chains
from tests.fixtures.portal import PortalWorld
from tests.portal.test_pages import DIGEST, _app, _texts


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalWorld]:
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def test_the_workflows_page_lists_and_removes_a_chain(world: PortalWorld) -> None:
    s = world.settings
    activate(s, world.client_a, "daily_digest", DIGEST, None)
    activate(s, world.client_a, "event_archive", {}, None, after="daily_digest")
    assert "Chains" not in _texts(_app(world.b, "client/workflows.py"))  # not B's chain

    at = _app(world.a, "client/workflows.py")
    text = _texts(at)
    assert "Chains" in text and "runs after each completed run of **Daily digest**" in text
    at.button(key="chain.remove.daily_digest.event_archive").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert list_chains(s, world.client_a) == []
    assert "Chains" not in _texts(at)
