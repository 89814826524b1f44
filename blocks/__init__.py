"""Prefect Block types and secret stores for client credentials.

``prefect block register -m blocks`` registers every block type defined here.
"""

from blocks.client_credential import ClientCredential
from blocks.kinds import (
    CREDENTIAL_KINDS,
    CredentialModel,
    HttpAuthCredential,
    OpenAICredential,
    PostgresCredential,
    S3Credential,
    SlackWebhookCredential,
    SmtpCredential,
    kind_model,
    parse_credential,
)
from blocks.offboarding import forget_client_secrets
from blocks.registry import (
    delete_credential,
    get_secret_store,
    list_credentials,
    load_credential,
    onboard_client_vault,
    save_credential,
    vault_connection_from_settings,
)
from blocks.stored_secret import StoredSecret
from blocks.stores.base import CLIENT_AREA, WEBHOOK_AREA, SecretStore, StoredSecretRef
from blocks.stores.embedded import PrefectBlockSecretStore, embedded_store_key
from blocks.stores.vault import VaultSecretStore, client_policy
from blocks.vault_bootstrap import ClientAppRole, bootstrap_client, bootstrap_vault
from blocks.vault_connection import VaultConnection

__all__ = [
    "forget_client_secrets",
    "CLIENT_AREA",
    "WEBHOOK_AREA",
    "embedded_store_key",
    "CREDENTIAL_KINDS",
    "ClientAppRole",
    "ClientCredential",
    "CredentialModel",
    "HttpAuthCredential",
    "OpenAICredential",
    "PostgresCredential",
    "PrefectBlockSecretStore",
    "S3Credential",
    "SecretStore",
    "SlackWebhookCredential",
    "SmtpCredential",
    "StoredSecret",
    "StoredSecretRef",
    "VaultConnection",
    "VaultSecretStore",
    "bootstrap_client",
    "bootstrap_vault",
    "client_policy",
    "delete_credential",
    "get_secret_store",
    "kind_model",
    "list_credentials",
    "load_credential",
    "onboard_client_vault",
    "parse_credential",
    "save_credential",
    "vault_connection_from_settings",
]
