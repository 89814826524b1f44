"""Small helpers shared by prebuilt flows."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Annotated

import httpx
from pydantic import AfterValidator, Field

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"


def table_field(default: str, description: str) -> object:
    """A settings field for a SQL table name: an identifier, never a value to format in SQL."""
    return Field(default=default, pattern=IDENTIFIER, title="Table", description=description)


def _email(value: str) -> str:
    _, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or any(c.isspace() for c in address) or "\n" in value:
        raise ValueError(f"'{value}' is not an email address (like name@example.com)")
    return value


def _web_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"'{value}' is not a web address (it starts with https:// or http://)")
    return value


#: a settings field holding one email address, checked when the client enters it
EmailAddress = Annotated[str, AfterValidator(_email)]
#: a settings field holding an http(s) address with a host
WebUrl = Annotated[str, AfterValidator(_web_url)]
