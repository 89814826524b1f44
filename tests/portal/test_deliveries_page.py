"""The Workflows page lists a webhook's deliveries: the run each became and whether it ran alone
or in a batch. Deliveries go through the real outbox functions on the real platform DB; the
page is driven with ``AppTest`` through the real router."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from agency.db import WebhookDelivery, session_scope
from agency.db.outcomes import record_outcomes
from agency.settings import get_settings
from deployments.webhooks.batches import claim_due_batches, form_batches, mark_batch_dispatched
from deployments.webhooks.outbox import Submission, accept, find_target, mark_dispatched
from services import activate
from services.webhooks import BatchPolicy, enable_webhook, list_deliveries
from tests.fixtures.portal import PortalWorld

APP = str(Path(__file__).resolve().parents[2] / "portal" / "app.py")


@pytest.fixture
def world(portal_world: PortalWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalWorld]:
    monkeypatch.setenv("AGENCY_HOME", str(portal_world.settings.home))
    monkeypatch.setenv("AGENCY_WORK_POOL", portal_world.settings.work_pool)
    get_settings.cache_clear()
    yield portal_world
    get_settings.cache_clear()


def test_deliveries_show_their_run_and_whether_they_ran_alone_or_in_a_batch(
    world: PortalWorld,
) -> None:
    settings, client = world.settings, world.client_a
    activate(settings, client, "event_archive", {}, None)
    # adaptive; when behind, batches of up to 10 events waiting at most 0.01 s to fill
    enable_webhook(settings, client, "event_archive", mode="adaptive", batch=BatchPolicy(10, 0.01))
    with session_scope(settings.platform_database_url) as session:
        target = find_target(session, client, "event_archive")
        assert target is not None
        ids = [
            accept(session, Submission(target, {"order": n}, f"k{n}", "test", 100)).delivery_id
            for n in range(3)
        ]
    with session_scope(settings.platform_database_url) as session:
        # the first went alone; the other two fell into a burst: batched and run as one batch
        for chosen, batched in ((ids[:1], False), (ids[1:], True)):
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(chosen))
                .values(batched=batched)
            )
        mark_dispatched(session, ids[0], "11111111-2222-3333-4444-555555555555")
    time.sleep(0.05)
    with session_scope(settings.platform_database_url) as session:
        assert form_batches(session) == 1
    with session_scope(settings.platform_database_url) as session:
        (batch,) = claim_due_batches(session, 10, 60)
        mark_batch_dispatched(session, batch.id, "99999999-8888-7777-6666-555555555555")
        record_outcomes(session, batch.id, [None, "The expression 'order' found nothing."])

    modes = {d.id: d.mode for d in list_deliveries(settings, client)}
    assert modes == {ids[0]: "alone", ids[1]: "batch", ids[2]: "batch"}

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["principal"] = world.a
    at.run()
    at.switch_page("pages/client/workflows.py").run()
    at.selectbox(key="wf.workflow").set_value("event_archive").run()
    assert not at.exception, [e.value for e in at.exception]
    (table,) = [f.value for f in at.dataframe if "ran" in f.value.columns]
    rows = table.to_dict("records")
    assert sorted(r["ran"] for r in rows) == ["in a batch", "in a batch", "its own run"]
    assert {r["run"] for r in rows} == {"11111111", "99999999"}
    assert "found nothing" in " ".join(r["problem"] for r in rows)
    # the other client's page has no such deliveries
    assert list_deliveries(settings, world.client_b) == []
