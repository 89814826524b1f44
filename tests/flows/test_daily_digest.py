"""daily_digest in-process on the real Prefect server: manifest, bad settings, missing
credentials (fail once, clear message, no retry storm)."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from agency.errors import CredentialMissing, InputInvalid
from flows.catalog import get_workflow
from flows.daily_digest import DailyDigestSettings, daily_digest
from tests.fixtures.http_server import HttpServer


def test_manifest_describes_settings_and_credentials() -> None:
    manifest = get_workflow("daily_digest")
    schema = manifest.settings_model.model_json_schema()
    assert schema["required"] == ["source_url", "recipients"]
    assert all(p.get("description") for p in schema["properties"].values())
    settings = manifest.validate_settings(
        {"source_url": "https://x.test/a", "recipients": ["a@b.test"], "source_credential": "crm"}
    )
    assert manifest.required_credentials(settings) == [
        ("http_auth", "crm"),
        ("openai", "default"),
        ("smtp", "default"),
    ]
    with pytest.raises(InputInvalid, match="Source URL: 'ftp://x' is not a web address"):
        manifest.validate_settings({"source_url": "ftp://x", "recipients": ["a@b.test"]})
    # checked where it is entered, each problem named by the form's label, nothing saved
    with pytest.raises(InputInvalid) as bad:
        manifest.validate_settings(
            {"source_url": "https://", "recipients": ["ok@b.test", "not-an-email", "a@b"]}
        )
    assert str(bad.value) == (
        "Invalid settings for workflow 'daily_digest': Source URL: 'https://' is not a web "
        "address (it starts with https:// or http://); Recipients (2): 'not-an-email' is not an "
        "email address (like name@example.com); Recipients (3): 'a@b' is not an email address "
        "(like name@example.com)."
    )
    named = manifest.validate_settings(
        {"source_url": "https://x.test", "recipients": ["Boss <boss@acme.test>"]}
    )
    assert named.recipients == ["Boss <boss@acme.test>"]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("prefect_server")
def test_missing_credential_fails_once_with_clear_message(
    http_server: HttpServer, client_slug: str
) -> None:
    http_server.respond("/data", {"items": [1, 2]})
    settings = DailyDigestSettings(source_url=http_server.url("/data"), recipients=["a@b.test"])
    state = daily_digest(client_slug, settings, return_state=True)  # type: ignore[call-arg]
    assert state.is_failed()
    with pytest.raises(CredentialMissing) as exc:
        state.result()
    assert str(exc.value) == (
        f"Client '{client_slug}' has no 'openai' credential named 'default'. Set it with: "
        f"agency credentials set --client {client_slug} --kind openai --name default"
    )
    with get_client(sync_client=True) as api:
        run = api.read_flow_run(state.state_details.flow_run_id)  # type: ignore[arg-type]
        task_runs = api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    llm_runs = [t for t in task_runs if t.name.startswith("llm")]
    assert len(llm_runs) == 1 and llm_runs[0].run_count == 1  # no retry storm
    assert llm_runs[0].state is not None and llm_runs[0].state.is_failed()
