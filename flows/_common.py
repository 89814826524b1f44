"""Small helpers shared by prebuilt flows."""

from __future__ import annotations

from pydantic import Field

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"


def table_field(default: str, description: str) -> object:
    """A settings field for a SQL table name: an identifier, never a value to format in SQL."""
    return Field(default=default, pattern=IDENTIFIER, title="Table", description=description)
