"""``VaultSecretStore``: client secrets in a Vault KV v2 engine.

Paths are ``<mount>/clients/<client>/<kind>/<name>``; one Vault policy per client grants only
``clients/<client>/*`` (see :func:`client_policy`). Webhook signing secrets live in another area,
``<mount>/platform/webhooks/<client>/...``, which no client policy grants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import hvac
import requests

from agency.errors import CredentialMissing, SecretStorePermissionDenied, SecretStoreUnavailable
from blocks.names import vault_secret_path
from blocks.stores.base import CLIENT_AREA, SecretStore, StoredSecretRef
from blocks.vault_connection import VaultConnection

POLICY_TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "vault" / "client-policy.hcl"

T = TypeVar("T")


def client_policy(client: str, mount: str = "secret") -> str:
    """Render ``infra/vault/client-policy.hcl``: a policy confining a token to one client."""
    return POLICY_TEMPLATE.read_text().replace("{{mount}}", mount).replace("{{client}}", client)


class VaultSecretStore(SecretStore):
    """Client secrets in Vault KV v2, through the real hvac client.

    Calls: ``POST <mount>/data/<path>`` (write, 200), ``GET <mount>/data/<path>`` (read, 200 or
    404), ``LIST <mount>/metadata/clients/<client>/[<kind>]`` (list, 200 or 404) and
    ``DELETE <mount>/metadata/<path>`` (delete all versions, 204). A 403 becomes
    ``SecretStorePermissionDenied``, a connection failure ``SecretStoreUnavailable``; both name
    the address and path, never the token.
    """

    store_name = "vault"

    def __init__(
        self,
        connection: VaultConnection,
        client: hvac.Client | None = None,
        area: str = CLIENT_AREA,
    ) -> None:
        self.connection = connection
        self._hvac = client
        self.area = area

    @property
    def hvac(self) -> hvac.Client:
        """The authenticated hvac client (logged in on first use)."""
        if self._hvac is None:
            self._hvac = self.connection.get_client()
        return self._hvac

    @property
    def mount(self) -> str:
        return self.connection.mount

    @contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        where = f"Vault at {self.connection.address}, path {self.mount}/{path}"
        try:
            yield
        except requests.exceptions.RequestException:
            raise SecretStoreUnavailable(f"{where}: unreachable.") from None
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise SecretStorePermissionDenied(f"{where}: permission denied (HTTP 403).") from None
        except hvac.exceptions.VaultDown:
            raise SecretStoreUnavailable(f"{where}: Vault is sealed or down (HTTP 503).") from None

    def _call(self, path: str, fn: Callable[[], T]) -> T:
        with self._errors(path):
            return fn()
        raise AssertionError("unreachable")  # pragma: no cover - _errors always re-raises

    def write(self, client: str, kind: str, name: str, data: dict[str, str]) -> StoredSecretRef:
        path = vault_secret_path(client, kind, name, self.area)
        kv = self.hvac.secrets.kv.v2
        self._call(
            path,
            lambda: kv.create_or_update_secret(path=path, secret=data, mount_point=self.mount),
        )
        return StoredSecretRef(client, kind, name, self.store_name, f"{self.mount}/{path}")

    def read(self, client: str, kind: str, name: str) -> dict[str, str]:
        path = vault_secret_path(client, kind, name, self.area)
        kv = self.hvac.secrets.kv.v2
        try:
            response = self._call(
                path,
                lambda: kv.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                ),
            )
        except hvac.exceptions.InvalidPath:
            raise CredentialMissing(
                client, kind, name, f"not in Vault at {self.mount}/{path}"
            ) from None
        return dict(response["data"]["data"])

    def _list(self, path: str) -> list[str]:
        kv = self.hvac.secrets.kv.v2
        try:
            response = self._call(path, lambda: kv.list_secrets(path=path, mount_point=self.mount))
        except hvac.exceptions.InvalidPath:
            return []
        return list(response["data"]["keys"])

    def list(self, client: str) -> list[StoredSecretRef]:
        refs = []
        for kind_dir in self._list(f"{self.area}/{client}"):
            kind = kind_dir.rstrip("/")
            for name in self._list(f"{self.area}/{client}/{kind}"):
                if name.endswith("/"):
                    continue
                path = vault_secret_path(client, kind, name, self.area)
                refs.append(
                    StoredSecretRef(client, kind, name, self.store_name, f"{self.mount}/{path}")
                )
        return refs

    def delete(self, client: str, kind: str, name: str) -> None:
        self.read(client, kind, name)  # raises CredentialMissing when absent
        path = vault_secret_path(client, kind, name, self.area)
        kv = self.hvac.secrets.kv.v2
        self._call(
            path, lambda: kv.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
        )
