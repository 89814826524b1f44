"""`agency vault bootstrap` and client onboarding against the OpenBao dev server (real Vault API:
sys/mounts, sys/auth, sys/policies/acl, AppRole) through the real hvac client."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agency.errors import SecretStorePermissionDenied
from agency.settings import get_settings
from blocks import (
    ClientCredential,
    VaultConnection,
    VaultSecretStore,
    bootstrap_vault,
    load_credential,
)
from cli.main import app
from tests.fixtures.vault import VaultServer

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def vault_env(
    vault_server: VaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    mount = f"kv-{secrets.token_hex(3)}"
    monkeypatch.setenv("AGENCY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENCY_VAULT_ADDR", vault_server.addr)
    monkeypatch.setenv("AGENCY_VAULT_TOKEN", vault_server.root_token)
    monkeypatch.setenv("AGENCY_VAULT_MOUNT", mount)
    get_settings.cache_clear()
    yield mount
    get_settings.cache_clear()


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_bootstrap_enables_kv2_and_approle_idempotently(vault_server: VaultServer) -> None:
    root = vault_server.client()
    mount = f"kv-{secrets.token_hex(3)}"
    changes = bootstrap_vault(root, mount)
    assert f"enabled kv-v2 at {mount}/" in changes
    engine = root.sys.list_mounted_secrets_engines()["data"][f"{mount}/"]
    assert engine["type"] == "kv" and engine["options"]["version"] == "2"
    assert "approle/" in root.sys.list_auth_methods()["data"]
    assert bootstrap_vault(root, mount) == []


def test_onboarded_clients_are_confined_to_their_paths(
    vault_env: str, vault_server: VaultServer, tmp_path: Path
) -> None:
    alpha, beta = f"a{secrets.token_hex(3)}", f"b{secrets.token_hex(3)}"
    code, out = _cli("vault", "bootstrap")
    assert code == 0, out
    for slug in (alpha, beta):
        code, out = _cli("client", "add", slug)
        assert code == 0, out
        values = tmp_path / f"{slug}.json"
        values.write_text(json.dumps({"api_key": f"sk-{slug}-secret"}))
        code, out = _cli(
            "credentials", "set", "--client", slug, "--kind", "openai", "--from-file", str(values)
        )
        assert code == 0 and "(vault)" in out, out

    policy = vault_server.client().sys.read_acl_policy(f"client-{alpha}")["data"]["policy"]
    assert f'"{vault_env}/data/clients/{alpha}/*"' in policy and beta not in policy
    block = ClientCredential.load_block(f"{alpha}-openai-default")
    assert block.vault_connection == f"vault-{alpha}"
    assert load_credential(alpha, "openai", "default").api_key.get_secret_value() == (  # type: ignore[attr-defined]
        f"sk-{alpha}-secret"
    )

    alpha_login = VaultConnection.load(f"vault-{alpha}")
    assert alpha_login.auth_method == "approle" and alpha_login.token is None
    alpha_store = VaultSecretStore(alpha_login)
    assert alpha_store.read(alpha, "openai", "default") == {
        "api_key": f"sk-{alpha}-secret",
        "default_model": "gpt-4o-mini",
    }
    with pytest.raises(SecretStorePermissionDenied, match=f"clients/{beta}/openai/default"):
        alpha_store.read(beta, "openai", "default")


def test_client_add_fails_whole_when_vault_refuses(
    vault_env: str, vault_server: VaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = vault_server.client().auth.token.create(policies=["default"], ttl="5m")
    monkeypatch.setenv("AGENCY_VAULT_TOKEN", weak["auth"]["client_token"])
    get_settings.cache_clear()
    slug = f"w{secrets.token_hex(3)}"
    code, out = _cli("client", "add", slug)
    assert code == 2 and "denied" in out and weak["auth"]["client_token"] not in out
    assert slug not in _cli("client", "list")[1]


def test_webhook_secrets_live_where_no_client_policy_reaches(
    vault_env: str, vault_server: VaultServer
) -> None:
    from deployments.webhooks.secrets import store_secret, valid_secrets

    alpha = f"a{secrets.token_hex(3)}"
    assert _cli("vault", "bootstrap")[0] == 0
    assert _cli("client", "add", alpha)[0] == 0
    settings = get_settings()
    store_secret(settings, alpha, "lead_intake", "whsec_c2VjcmV0LXZhbHVlLW9mLWFscGhh")
    assert valid_secrets(settings, alpha, "lead_intake") == ["whsec_c2VjcmV0LXZhbHVlLW9mLWFscGhh"]
    root = vault_server.client()
    path = f"platform/webhooks/{alpha}/webhook/lead-intake"
    assert root.secrets.kv.v2.read_secret_version(
        path=path, mount_point=vault_env, raise_on_deleted_version=True
    )
    alpha_store = VaultSecretStore(VaultConnection.load(f"vault-{alpha}"), area="platform/webhooks")
    with pytest.raises(SecretStorePermissionDenied, match=path):
        alpha_store.read(alpha, "webhook", "lead-intake")


def test_forgetting_a_client_removes_its_paths_policy_and_approle(
    vault_env: str, vault_server: VaultServer, tmp_path: Path
) -> None:
    import hvac

    from blocks import forget_client_secrets
    from deployments.webhooks.secrets import store_secret

    gone = f"g{secrets.token_hex(3)}"
    assert _cli("vault", "bootstrap")[0] == 0
    assert _cli("client", "add", gone)[0] == 0
    values = tmp_path / "v.json"
    values.write_text(json.dumps({"api_key": "sk-gone-secret"}))
    assert (
        _cli(
            "credentials", "set", "--client", gone, "--kind", "openai", "--from-file", str(values)
        )[0]
        == 0
    )
    store_secret(get_settings(), gone, "echo", "whsec_Z29uZQ==")
    root = vault_server.client()

    assert forget_client_secrets(get_settings(), gone) == 2
    for path in (f"clients/{gone}/openai/default", f"platform/webhooks/{gone}/webhook/echo"):
        with pytest.raises(hvac.exceptions.InvalidPath):
            root.secrets.kv.v2.read_secret_version(
                path=path, mount_point=vault_env, raise_on_deleted_version=True
            )
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.sys.read_acl_policy(f"client-{gone}")
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.auth.approle.read_role_id(f"client-{gone}")
    with pytest.raises(ValueError):
        VaultConnection.load(f"vault-{gone}")


def test_oauth_apps_are_readable_but_not_writable_by_a_client_policy(
    vault_env: str, vault_server: VaultServer, tmp_path: Path
) -> None:
    from blocks.oauth import OAUTH_AREA, load_app, save_app

    alpha = f"o{secrets.token_hex(3)}"
    assert _cli("vault", "bootstrap")[0] == 0
    assert _cli("client", "add", alpha)[0] == 0
    secret_file = tmp_path / "google.secret"
    secret_file.write_text("app-secret-of-the-agency\n")
    code, out = _cli(
        "connections", "app", "set", "google", "--client-id", "cid-1",
        "--client-secret-file", str(secret_file),
    )  # fmt: skip
    assert code == 0, out
    assert "app-secret-of-the-agency" not in out and "/oauth/callback" in out
    stored = vault_server.client().secrets.kv.v2.read_secret_version(
        path="platform/oauth/agency/app/google", mount_point=vault_env,
        raise_on_deleted_version=True,
    )  # fmt: skip
    assert stored["data"]["data"]["client_id"] == "cid-1"
    # a client's runs renew tokens with the app: they may read it, never change it
    client_store = VaultSecretStore(VaultConnection.load(f"vault-{alpha}"), area=OAUTH_AREA)
    app = load_app(client_store, "google")
    assert app.client_secret.get_secret_value() == "app-secret-of-the-agency"
    with pytest.raises(SecretStorePermissionDenied):
        save_app(client_store, "google", "cid-2", "stolen")
