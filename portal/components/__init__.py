"""Shared pieces of the portal's pages: the signed-in session, error display, generated forms."""

from portal.components.forms import model_form, show_field_errors
from portal.components.session import (
    acting_client,
    current_principal,
    friendly_errors,
    principal,
    settings,
)

__all__ = [
    "acting_client",
    "current_principal",
    "friendly_errors",
    "model_form",
    "principal",
    "settings",
    "show_field_errors",
]
