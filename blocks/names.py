"""Naming rules shared by blocks, stores and services."""

from __future__ import annotations

import re
from typing import Any

from prefect.exceptions import PrefectHTTPStatusError

from agency.errors import InputInvalid

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def check_slug(value: str, what: str) -> str:
    """Return ``value`` if it is a lowercase slug (letters, digits, inner dashes), else raise."""
    if not SLUG_RE.match(value or ""):
        raise InputInvalid(
            f"Invalid {what} '{value}': use 1-64 lowercase letters, digits and inner dashes."
        )
    return value


def credential_block_name(client: str, kind: str, name: str) -> str:
    """Block document name ``<client>-<kind>-<name>`` (Prefect allows only dashes, so
    ``http_auth`` becomes ``http-auth``)."""
    return f"{client}-{kind.replace('_', '-')}-{name}"


def vault_secret_path(client: str, kind: str, name: str, area: str = "clients") -> str:
    """Path of a client's secret inside the KV v2 mount: ``<area>/<client>/<kind>/<name>``
    (``clients/...`` for credentials)."""
    return f"{area}/{client}/{kind}/{name}"


def read_documents_by_type(api: Any, slug: str) -> list[Any]:
    """Block documents of type ``slug`` without secrets; none when the type is not registered."""
    try:
        return list(api.read_block_documents_by_type(slug, include_secrets=False))
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return []
        raise
