"""Credentials through ClientCredential blocks, on the embedded store and on Vault."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from agency.errors import CredentialInvalid, CredentialMissing
from agency.settings import Settings
from blocks import (
    ClientCredential,
    SmtpCredential,
    VaultSecretStore,
    delete_credential,
    list_credentials,
    load_credential,
    save_credential,
    vault_connection_from_settings,
)
from tests.fixtures.vault import VaultServer

pytestmark = pytest.mark.usefixtures("prefect_server")


def _smtp(password: str) -> dict[str, object]:
    return {
        "host": "mail.example.com",
        "port": 587,
        "username": "bot",
        "password": password,
        "from_address": "bot@example.com",
    }


def _raw_block_document(name: str) -> str:
    with get_client(sync_client=True) as api:
        doc = api.read_block_document_by_name(
            name, ClientCredential.get_block_type_slug(), include_secrets=True
        )
    return json.dumps(doc.data)


def test_embedded_store_round_trip_and_encryption_at_rest(client_slug: str) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    block = save_credential(client_slug, "smtp", "default", _smtp(password))
    assert block.store == "prefect"
    assert password not in _raw_block_document(f"{client_slug}-smtp-default")

    loaded = load_credential(client_slug, "smtp", "default")
    assert isinstance(loaded, SmtpCredential)
    assert loaded.password is not None and loaded.password.get_secret_value() == password
    assert password not in repr(loaded) and password not in str(loaded)
    assert ClientCredential.load(f"{client_slug}-smtp-default") == loaded

    # Prefect's SQLite file holds only Fernet ciphertext of the value
    database = Path(os.environ["PREFECT_HOME"]) / "prefect.db"
    for path in database.parent.glob("prefect.db*"):
        assert password.encode() not in path.read_bytes(), path

    assert [(c.kind, c.name) for c in list_credentials(client_slug)] == [("smtp", "default")]
    delete_credential(client_slug, "smtp", "default")
    assert list_credentials(client_slug) == []
    with pytest.raises(CredentialMissing):
        load_credential(client_slug, "smtp", "default")


def test_invalid_credential_form_writes_nothing(client_slug: str) -> None:
    with pytest.raises(CredentialInvalid) as exc:
        save_credential(client_slug, "smtp", "default", {"host": "x", "password": "hunter22"})
    assert "from_address" in str(exc.value) and "hunter22" not in str(exc.value)
    with pytest.raises(CredentialInvalid, match="Unknown credential kind 'ftp'"):
        save_credential(client_slug, "ftp", "default", {})
    assert list_credentials(client_slug) == []


def test_missing_credential_names_client_kind_name_and_fix(client_slug: str) -> None:
    with pytest.raises(CredentialMissing) as exc:
        load_credential(client_slug, "openai", "main")
    assert str(exc.value) == (
        f"Client '{client_slug}' has no 'openai' credential named 'main'. Set it with: "
        f"agency credentials set --client {client_slug} --kind openai --name main"
    )


def test_vault_backed_reference_holds_no_secret(
    vault_server: VaultServer, client_slug: str
) -> None:
    settings = Settings(
        vault_addr=vault_server.addr,
        vault_token=vault_server.root_token,
        vault_block=f"vault-{client_slug}",
    )
    api_key = f"sk-{secrets.token_hex(12)}"
    block = save_credential(
        client_slug, "openai", "default", {"api_key": api_key}, settings=settings
    )
    assert block.store == "vault"
    assert block.reference == f"secret/clients/{client_slug}/openai/default"
    raw = _raw_block_document(f"{client_slug}-openai-default")
    assert api_key not in raw and "api_key" not in raw

    store = VaultSecretStore(vault_connection_from_settings(settings))
    assert store.read(client_slug, "openai", "default") == {
        "api_key": api_key,
        "default_model": "gpt-4o-mini",
    }
    loaded = load_credential(client_slug, "openai", "default")
    assert loaded.api_key.get_secret_value() == api_key  # type: ignore[attr-defined]

    # incomplete values in Vault: a clear CredentialMissing, no value echoed
    store.write(client_slug, "openai", "default", {"default_model": "m"})
    with pytest.raises(CredentialMissing, match="incomplete") as exc:
        load_credential(client_slug, "openai", "default")
    assert "agency credentials set" in str(exc.value)

    delete_credential(client_slug, "openai", "default")
    assert store.list(client_slug) == []
