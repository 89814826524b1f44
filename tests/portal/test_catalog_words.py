"""The catalog's "Settings" list names only what the client fills in: never a setting the agency
decides (model, prompts...) nor a credential name (picked under Credentials); agency staff see
the agency's settings apart. Driven with ``AppTest`` through the real router, on the real
platform DB and the session's Prefect server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agency.settings import get_settings
from flows.catalog import list_workflows
from flows.manifest import WorkflowManifest
from tests.fixtures.portal import PortalWorld

APP = str(Path(__file__).resolve().parents[2] / "portal" / "app.py")


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalWorld]:
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def _settings_lists(principal: object) -> list[str]:
    """Each catalog card's "Settings" block, in catalog order."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["principal"] = principal
    at.run()
    at.switch_page("pages/client/catalog.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return [str(m.value) for m in at.markdown if str(m.value).startswith("**Settings**")]


def _titles(manifest: WorkflowManifest, names: list[str] | tuple[str, ...]) -> set[str]:
    fields = manifest.settings_model.model_fields
    return {fields[n].title or n for n in names}


def _listed(block: str) -> set[str]:
    return {line[2:].removesuffix(" *") for line in block.splitlines() if line.startswith("- ")}


def test_client_catalog_names_only_client_settings(world: PortalWorld) -> None:
    manifests = list_workflows()
    blocks = _settings_lists(world.a)
    assert len(blocks) == len(manifests)
    agency_seen = False
    for manifest, block in zip(manifests, blocks, strict=True):
        client = _titles(manifest, manifest.client_fields())
        assert _listed(block) == (client or {"None to fill in"}), manifest.slug
        hidden = _titles(manifest, manifest.agency_fields) | _titles(
            manifest, list(manifest.credential_fields())
        )
        assert not hidden & _listed(block), manifest.slug
        assert "Agency settings" not in block
        agency_seen |= bool(manifest.agency_fields)
    assert agency_seen  # the catalog has agency settings to leave out


def test_agency_staff_see_the_agency_settings_apart(world: PortalWorld) -> None:
    manifests = list_workflows()
    blocks = _settings_lists(world.agency)
    for manifest, block in zip(manifests, blocks, strict=True):
        client_part, _, agency_part = block.partition("**Agency settings**")
        assert _listed(client_part) == (
            _titles(manifest, manifest.client_fields()) or {"None to fill in"}
        )
        assert _listed(agency_part) == _titles(manifest, manifest.agency_fields), manifest.slug
