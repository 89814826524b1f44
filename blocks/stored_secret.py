"""``StoredSecret``: one client secret kept in Prefect's encrypted block storage.

This is the embedded default store's unit. The Prefect server encrypts every block document with
Fernet; the key comes from ``PREFECT_SERVER_ENCRYPTION_KEY``, which ``agency up`` generates once
into ``<AGENCY_HOME>/prefect-encryption.key`` (mode 0600) so the key never sits in the same
database as the ciphertext.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect.blocks.fields import SecretDict
from pydantic import Field


class StoredSecret(Block):
    """The values of one client credential, encrypted at rest by the Prefect server.

    Example:
        ```python
        from blocks import StoredSecret
        secret = StoredSecret.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Agency Stored Secret"
    _block_type_slug = "agency-stored-secret"
    _logo_url = "https://www.prefect.io/favicon.png"  # type: ignore[assignment]
    _documentation_url = "https://docs.prefect.io/v3/develop/blocks"  # type: ignore[assignment]
    _description = "Values of one client credential in Prefect's encrypted block storage."

    client: str = Field(title="Client", description="Client slug owning the secret.")
    kind: str = Field(title="Kind", description="Credential kind, e.g. smtp.")
    name: str = Field(title="Name", description="Credential name within the kind.")
    value: SecretDict = Field(title="Value", description="The credential's fields.")
