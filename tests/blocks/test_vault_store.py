"""VaultSecretStore against a real Vault-API server (OpenBao dev server) with the real hvac."""

from __future__ import annotations

import secrets

import hvac
import pytest

from agency.errors import CredentialMissing, SecretStorePermissionDenied, SecretStoreUnavailable
from blocks import VaultConnection, VaultSecretStore, client_policy
from tests.fixtures.vault import VaultServer


def _store(vault: VaultServer, token: str | None = None) -> VaultSecretStore:
    return VaultSecretStore(VaultConnection(address=vault.addr, token=token or vault.root_token))


def _client_token(vault: VaultServer, client: str) -> str:
    root = vault.client()
    root.sys.create_or_update_acl_policy(name=f"client-{client}", policy=client_policy(client))
    return root.auth.token.create(policies=[f"client-{client}"], ttl="10m")["auth"]["client_token"]


def test_write_read_list_delete(vault_server: VaultServer, client_slug: str) -> None:
    store = _store(vault_server)
    ref = store.write(client_slug, "smtp", "default", {"host": "mail", "password": "pw-1"})
    assert ref.reference == f"secret/clients/{client_slug}/smtp/default"
    store.write(client_slug, "openai", "main", {"api_key": "sk-1"})

    assert store.read(client_slug, "smtp", "default") == {"host": "mail", "password": "pw-1"}
    # the value really is at the contract path, as any Vault client sees it
    raw = vault_server.client().secrets.kv.v2.read_secret_version(
        path=f"clients/{client_slug}/smtp/default",
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert raw["data"]["data"]["password"] == "pw-1"
    assert {(r.kind, r.name) for r in store.list(client_slug)} == {
        ("smtp", "default"),
        ("openai", "main"),
    }

    store.write(client_slug, "smtp", "default", {"host": "mail", "password": "pw-2"})
    assert store.read(client_slug, "smtp", "default")["password"] == "pw-2"

    store.delete(client_slug, "smtp", "default")
    with pytest.raises(CredentialMissing, match=f"Client '{client_slug}' has no 'smtp'"):
        store.read(client_slug, "smtp", "default")
    assert [(r.kind, r.name) for r in store.list(client_slug)] == [("openai", "main")]
    with pytest.raises(CredentialMissing):
        store.delete(client_slug, "smtp", "default")


def test_client_policy_confines_a_token_to_its_client(vault_server: VaultServer) -> None:
    alpha, beta = f"a{secrets.token_hex(4)}", f"b{secrets.token_hex(4)}"
    _store(vault_server).write(beta, "smtp", "default", {"password": "beta-secret"})
    alpha_token = _client_token(vault_server, alpha)

    alpha_store = _store(vault_server, alpha_token)
    alpha_store.write(alpha, "smtp", "default", {"password": "alpha-secret"})
    assert alpha_store.read(alpha, "smtp", "default") == {"password": "alpha-secret"}
    assert [r.name for r in alpha_store.list(alpha)] == ["default"]

    # the raw API answers 403 on the other client's path...
    with pytest.raises(hvac.exceptions.Forbidden):
        vault_server.client(alpha_token).secrets.kv.v2.read_secret_version(
            path=f"clients/{beta}/smtp/default",
            mount_point="secret",
            raise_on_deleted_version=True,
        )
    # ...and the store turns it into a clear error naming address and path, never the token
    with pytest.raises(SecretStorePermissionDenied) as denied:
        alpha_store.read(beta, "smtp", "default")
    message = str(denied.value)
    assert vault_server.addr in message and f"clients/{beta}/smtp/default" in message
    assert alpha_token not in message and "403" in message
    with pytest.raises(SecretStorePermissionDenied):
        alpha_store.write(beta, "smtp", "default", {"password": "overwrite"})
    with pytest.raises(SecretStorePermissionDenied):
        alpha_store.list(beta)
    assert _store(vault_server).read(beta, "smtp", "default") == {"password": "beta-secret"}


def test_approle_login(vault_server: VaultServer, client_slug: str) -> None:
    root = vault_server.client()
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_acl_policy(
        name=f"client-{client_slug}", policy=client_policy(client_slug)
    )
    role = f"client-{client_slug}"
    root.auth.approle.create_or_update_approle(role, token_policies=[f"client-{client_slug}"])
    role_id = root.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role)["data"]["secret_id"]

    connection = VaultConnection(
        address=vault_server.addr, auth_method="approle", role_id=role_id, secret_id=secret_id
    )
    store = VaultSecretStore(connection)
    store.write(client_slug, "openai", "default", {"api_key": "sk-approle"})
    assert store.read(client_slug, "openai", "default") == {"api_key": "sk-approle"}
    with pytest.raises(SecretStorePermissionDenied):
        store.read("someone-else", "openai", "default")

    bad = VaultConnection(
        address=vault_server.addr, auth_method="approle", role_id=role_id, secret_id="wrong"
    )
    with pytest.raises(SecretStorePermissionDenied, match="refused the AppRole login") as exc:
        bad.get_client()
    assert secret_id not in str(exc.value)


def test_unreachable_vault_names_address_and_path_not_token() -> None:
    from tests.fixtures._net import free_port

    token = "s.never-to-be-shown"
    store = VaultSecretStore(
        VaultConnection(address=f"http://127.0.0.1:{free_port()}", token=token)
    )
    with pytest.raises(SecretStoreUnavailable) as exc:
        store.read("acme", "smtp", "default")
    message = str(exc.value)
    assert "unreachable" in message and "secret/clients/acme/smtp/default" in message
    assert token not in message
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
