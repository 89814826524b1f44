"""Example JSON for each credential kind, for ``agency credentials set --from-file``.

Built from the kind's pydantic model (:mod:`blocks.kinds`), so a new field shows up by itself:
every field is listed, with its default when it has one, else a placeholder taken from the
field's description (``e.g. smtp.example.com``) or its title (``<API key>``). Secret fields only
ever hold placeholders.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic.fields import FieldInfo

from blocks.kinds import CREDENTIAL_KINDS, kind_model

_EXAMPLE = re.compile(r"\be\.g\.\s+([^\s,;()]+)")


def _placeholder(name: str, field: FieldInfo) -> Any:
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)[0]
    if annotation is int:
        return 0
    if annotation is bool:
        return False
    found = _EXAMPLE.search(field.description or "")
    if found and name not in ("password", "secret", "api_key", "token"):
        return found.group(1).rstrip(".")
    return f"<{field.title or name}>"


def credential_template(kind: str) -> dict[str, Any]:
    """An example value of every field of credential ``kind`` (``CredentialInvalid`` if unknown).

    Fields with a default carry it (``null`` for optional ones); required and secret fields a
    placeholder to replace (or, for an optional secret, to remove).
    The result passes ``parse_credential(kind, ...)`` as it stands.
    """
    model = kind_model(kind)
    secret = set(model.secret_fields())
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name in secret:
            out[name] = f"<{field.title or name}>"
        elif name == "provider":  # OAuth kinds: the kind names the provider
            out[name] = kind
        elif not field.is_required():
            out[name] = field.get_default(call_default_factory=True)
        else:
            out[name] = _placeholder(name, field)
    return out


def credential_kinds() -> list[str]:
    """Every credential kind's name, sorted."""
    return sorted(CREDENTIAL_KINDS)
