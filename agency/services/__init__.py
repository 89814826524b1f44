"""Client-scoped use cases: the one place where scoping to a client and the audit log happen.

Faces (CLI, portal) call these functions and nothing below them.
"""

from agency.services.activations import (
    ActivationView,
    activate,
    deactivate,
    list_activations,
    pause,
    resume,
)
from agency.services.audit import audit
from agency.services.clients import ClientView, add_client, get_client_record, list_clients
from agency.services.credentials import delete_credential, list_credentials, set_credential

__all__ = [
    "ActivationView",
    "ClientView",
    "activate",
    "add_client",
    "audit",
    "deactivate",
    "delete_credential",
    "get_client_record",
    "list_activations",
    "list_clients",
    "list_credentials",
    "pause",
    "resume",
    "set_credential",
]
