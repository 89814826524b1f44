"""Prepare a Vault (or OpenBao) for the platform and onboard clients into it.

``bootstrap_vault`` enables a KV v2 engine at the mount (``POST /v1/sys/mounts/<mount>``, 204)
and AppRole auth (``POST /v1/sys/auth/<approle>``, 204) when they are missing.
``bootstrap_client`` writes the client's policy from ``infra/vault/client-policy.hcl``
(``PUT /v1/sys/policies/acl/client-<slug>``) and its AppRole (``POST
/v1/auth/<approle>/role/client-<slug>``), and issues a secret id (``POST
.../secret-id``). Every call is idempotent; a token without the rights gets
``SecretStorePermissionDenied`` naming the address and path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import hvac
import requests

from agency.errors import SecretStorePermissionDenied, SecretStoreUnavailable
from blocks.stores.vault import client_policy


@dataclass(frozen=True)
class ClientAppRole:
    """A client's AppRole login (the secret id is shown to nobody; it goes into a block)."""

    role_name: str
    role_id: str
    secret_id: str
    policy: str


@contextmanager
def _guard(vault: hvac.Client, path: str) -> Iterator[None]:
    try:
        yield
    except requests.exceptions.RequestException:
        raise SecretStoreUnavailable(f"Vault at {vault.url} is unreachable ({path}).") from None
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
        raise SecretStorePermissionDenied(
            f"Vault at {vault.url} denied {path} (HTTP 403): bootstrap needs a token with "
            "sys/mounts, sys/auth, sys/policies/acl and auth/approle rights."
        ) from None


def bootstrap_vault(
    vault: hvac.Client, mount: str = "secret", approle_mount: str = "approle"
) -> list[str]:
    """Enable KV v2 at ``mount`` and AppRole at ``approle_mount`` if missing; list changes."""
    changed: list[str] = []
    with _guard(vault, "sys/mounts"):
        mounts = vault.sys.list_mounted_secrets_engines()
        engines = mounts.get("data", mounts)
        current = engines.get(f"{mount}/")
        if current is None:
            vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
            changed.append(f"enabled kv-v2 at {mount}/")
        elif current.get("type") == "kv" and (current.get("options") or {}).get("version") != "2":
            vault.sys.tune_mount_configuration(path=mount, options={"version": "2"})
            changed.append(f"upgraded {mount}/ to kv-v2")
    with _guard(vault, "sys/auth"):
        methods = vault.sys.list_auth_methods()
        if f"{approle_mount}/" not in methods.get("data", methods):
            vault.sys.enable_auth_method("approle", path=approle_mount)
            changed.append(f"enabled approle at auth/{approle_mount}/")
    return changed


def bootstrap_client(
    vault: hvac.Client,
    client: str,
    mount: str = "secret",
    approle_mount: str = "approle",
    token_ttl: str = "1h",
) -> ClientAppRole:
    """Write the client's policy and AppRole; return a fresh role id / secret id pair."""
    name = f"client-{client}"
    with _guard(vault, f"sys/policies/acl/{name}"):
        vault.sys.create_or_update_acl_policy(name=name, policy=client_policy(client, mount))
    with _guard(vault, f"auth/{approle_mount}/role/{name}"):
        vault.auth.approle.create_or_update_approle(
            name, token_policies=[name], token_ttl=token_ttl, mount_point=approle_mount
        )
        role_id = vault.auth.approle.read_role_id(name, mount_point=approle_mount)["data"][
            "role_id"
        ]
        secret_id = vault.auth.approle.generate_secret_id(name, mount_point=approle_mount)["data"][
            "secret_id"
        ]
    return ClientAppRole(role_name=name, role_id=role_id, secret_id=secret_id, policy=name)


def client_vault_block(client: str) -> str:
    """Name of the VaultConnection block holding a client's AppRole login."""
    return f"vault-{client}"
