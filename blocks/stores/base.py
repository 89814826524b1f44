"""The interface every secret store implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

#: where client credentials live (Vault: ``<mount>/clients/<client>/...``)
CLIENT_AREA = "clients"
#: where the platform keeps webhook signing secrets, apart from client credentials: no client
#: policy grants it (Vault: ``<mount>/platform/webhooks/<client>/...``)
WEBHOOK_AREA = "platform/webhooks"


@dataclass(frozen=True)
class StoredSecretRef:
    """Where one client secret lives; never holds the secret values."""

    client: str
    kind: str
    name: str
    store: str
    reference: str


class SecretStore(ABC):
    """Reads and writes per-client credentials as flat ``{field: value}`` dicts.

    Implementations raise ``CredentialMissing`` for an absent secret and ``SecretStoreError``
    subclasses for a store that is unreachable or refuses, naming the address and path.
    """

    store_name: str

    @abstractmethod
    def write(self, client: str, kind: str, name: str, data: dict[str, str]) -> StoredSecretRef:
        """Create or replace the secret; return its reference."""

    @abstractmethod
    def read(self, client: str, kind: str, name: str) -> dict[str, str]:
        """Return the secret's fields."""

    @abstractmethod
    def list(self, client: str) -> list[StoredSecretRef]:
        """References to every secret stored for ``client``."""

    @abstractmethod
    def delete(self, client: str, kind: str, name: str) -> None:
        """Delete the secret and all its versions; absent secrets raise ``CredentialMissing``."""
