"""The embedded store on the real Prefect server (auth on): values are sealed with a key held
outside Prefect, so even ``include_secrets=true`` from a caller with the API's auth string reads
only ciphertext; webhook signing secrets live apart from client credentials."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from agency.errors import CredentialMissing, SecretStoreError
from agency.settings import Settings, get_settings
from blocks import (
    CLIENT_AREA,
    WEBHOOK_AREA,
    PrefectBlockSecretStore,
    StoredSecret,
    embedded_store_key,
    load_credential,
    save_credential,
)
from tests.fixtures._net import prefect_auth_headers

pytestmark = pytest.mark.usefixtures("prefect_server")


def _raw_document(block_name: str) -> str:
    """What the Prefect API answers to anyone with its auth string."""
    api = os.environ["PREFECT_API_URL"]
    path = f"/block_types/slug/agency-stored-secret/block_documents/name/{block_name}"
    answer = httpx.get(
        f"{api}{path}", params={"include_secrets": "true"}, headers=prefect_auth_headers()
    )
    answer.raise_for_status()
    return answer.text


def test_the_prefect_api_answers_only_ciphertext(client_slug: str) -> None:
    key = f"sk-{secrets.token_hex(16)}"
    save_credential(client_slug, "openai", "default", {"api_key": key})
    raw = _raw_document(f"secret-{client_slug}-openai-default")
    assert key not in raw and "ciphertext" in raw
    assert load_credential(client_slug, "openai", "default").api_key.get_secret_value() == key  # type: ignore[attr-defined]


def test_another_key_cannot_open_it_and_says_so(client_slug: str) -> None:
    save_credential(client_slug, "openai", "default", {"api_key": "sk-abc"})
    stranger = PrefectBlockSecretStore(Fernet.generate_key())
    with pytest.raises(SecretStoreError, match="sealed with another key") as exc:
        stranger.read(client_slug, "openai", "default")
    assert "sk-abc" not in str(exc.value)


def test_a_value_saved_before_sealing_is_read_then_sealed(client_slug: str) -> None:
    block_name = f"secret-{client_slug}-http-auth-api"
    legacy = {"scheme": "bearer", "token": f"tok-{secrets.token_hex(8)}"}
    StoredSecret(client=client_slug, kind="http_auth", name="api", value=legacy).save(block_name)
    assert legacy["token"] in _raw_document(block_name)
    store = PrefectBlockSecretStore(embedded_store_key(get_settings()))
    assert store.read(client_slug, "http_auth", "api") == legacy
    assert legacy["token"] not in _raw_document(block_name)
    assert store.read(client_slug, "http_auth", "api") == legacy


def test_webhook_secrets_are_apart_from_credentials(client_slug: str) -> None:
    from deployments.webhooks.secrets import store_secret, valid_secrets

    settings = get_settings()
    key = embedded_store_key(settings)
    credentials = PrefectBlockSecretStore(key, CLIENT_AREA)
    webhooks = PrefectBlockSecretStore(key, WEBHOOK_AREA)
    save_credential(client_slug, "openai", "default", {"api_key": "sk-abc"})
    store_secret(settings, client_slug, "lead_intake", "whsec_bmV3")
    assert [r.kind for r in credentials.list(client_slug)] == ["openai"]
    assert [r.kind for r in webhooks.list(client_slug)] == ["webhook"]
    with pytest.raises(CredentialMissing):
        credentials.read(client_slug, "webhook", "lead-intake")

    # a secret written where it used to live is moved on first read
    credentials.write(client_slug, "webhook", "old-flow", {"secret": "whsec_b2xk"})
    assert valid_secrets(settings, client_slug, "old_flow") == ["whsec_b2xk"]
    assert webhooks.read(client_slug, "webhook", "old-flow") == {"secret": "whsec_b2xk"}
    with pytest.raises(CredentialMissing):
        credentials.read(client_slug, "webhook", "old-flow")


def test_without_a_configured_key_one_is_generated_once_into_the_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secrets_key=None)
    key = embedded_store_key(settings)
    path = settings.home / "secrets.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert embedded_store_key(settings) == key
    Fernet(key)  # a valid Fernet key
    assert embedded_store_key(Settings(home=tmp_path / "other", secrets_key=None)) != key
