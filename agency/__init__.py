"""Core of the agency platform: settings, platform database, errors, services and the CLI."""

from agency.errors import (
    AgencyError,
    CredentialInvalid,
    CredentialMissing,
    InputInvalid,
    NotFound,
    PermanentNodeError,
    SecretStoreError,
    SecretStorePermissionDenied,
    SecretStoreUnavailable,
    TransientNodeError,
)
from agency.settings import Settings, get_settings

__all__ = [
    "AgencyError",
    "CredentialInvalid",
    "CredentialMissing",
    "InputInvalid",
    "NotFound",
    "PermanentNodeError",
    "SecretStoreError",
    "SecretStorePermissionDenied",
    "SecretStoreUnavailable",
    "Settings",
    "TransientNodeError",
    "get_settings",
]
