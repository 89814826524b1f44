"""Client-scoped use cases: the one place where scoping to a client and the audit log happen.

Faces (CLI, portal) call these functions and nothing below them.
"""

from services.activations import (
    ActivationView,
    activate,
    deactivate,
    list_activations,
    pause,
    resume,
)
from services.api_keys import (
    ApiKeyView,
    CreatedApiKey,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from services.approvals import ApprovalView, answer_approval, list_pending_approvals
from services.audit import audit
from services.auth import Principal, authenticate, check_session, create_user, scope_client
from services.clients import ClientView, add_client, get_client_record, list_clients
from services.credentials import delete_credential, list_credentials, set_credential
from services.rollback import rollback
from services.webhooks import (
    DeliveryView,
    WebhookSecretView,
    WebhookView,
    disable_webhook,
    enable_webhook,
    get_webhook,
    list_deliveries,
    rotate_webhook_secret,
)

__all__ = [
    "ActivationView",
    "ApprovalView",
    "ApiKeyView",
    "ClientView",
    "CreatedApiKey",
    "DeliveryView",
    "WebhookSecretView",
    "WebhookView",
    "Principal",
    "activate",
    "add_client",
    "answer_approval",
    "audit",
    "create_api_key",
    "disable_webhook",
    "enable_webhook",
    "get_webhook",
    "list_api_keys",
    "list_deliveries",
    "revoke_api_key",
    "rotate_webhook_secret",
    "authenticate",
    "check_session",
    "create_user",
    "deactivate",
    "delete_credential",
    "get_client_record",
    "list_activations",
    "list_clients",
    "list_pending_approvals",
    "list_credentials",
    "pause",
    "resume",
    "rollback",
    "scope_client",
    "set_credential",
]
