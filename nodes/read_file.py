"""The ``read_file`` node: read a file a ``store_file`` step saved, from S3 or local storage.

Give the ``key`` ``store_file`` returned (it must lie in the client's own namespace), or a
``name`` in the current run's namespace.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agency.errors import PermanentNodeError
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes._storage import check_name, open_store, run_prefix

KIND = "read_file"
CREDENTIAL_KIND = "s3"


class ReadFileInput(NodeInput):
    """Which file to read, and how to return it."""

    key: str | None = Field(
        default=None, title="Key", description="Full key from store_file: <client>/.../<name>."
    )
    name: str | None = Field(
        default=None, title="Name", description="A file name in the current run's namespace."
    )
    encoding: Literal["text", "base64"] = Field(
        default="text", title="Encoding", description="Return the content as text or base64."
    )
    credential: str | None = Field(
        default=None,
        title="Credential",
        description="The client's s3 credential; empty: local file storage.",
    )

    @field_validator("key", "name")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return check_name(value) if value is not None else None

    @model_validator(mode="after")
    def _one_of(self) -> ReadFileInput:
        if (self.key is None) == (self.name is None):
            raise ValueError("give exactly one of key or name")
        if self.key is not None and not self.key.startswith(f"{self.client}/"):
            raise ValueError(f"key must lie in the client's namespace '{self.client}/'")
        return self


class ReadFileOutput(NodeOutput):
    """The file."""

    key: str = Field(title="Key", description="The key read.")
    content: str = Field(title="Content", description="Text, or base64 when asked.")
    size: int = Field(title="Size", description="Bytes read.")
    sha256: str = Field(title="SHA-256", description="Hex digest of the bytes.")


@node_task(KIND, timeout_seconds=300)
def read_file(params: ReadFileInput) -> ReadFileOutput:
    """Read one file of the client's namespace.

    Example::

        read_file(ReadFileInput(client="acme", key="acme/daily_digest/<run>/report.csv")).content
    """
    key = params.key or f"{run_prefix(params.client)}/{params.name}"
    data = open_store(params.client, params.credential).read(key)
    if params.encoding == "base64":
        content = base64.b64encode(data).decode()
    else:
        try:
            content = data.decode()
        except UnicodeDecodeError:
            raise PermanentNodeError(
                f"File '{key}' is not UTF-8 text; read it with encoding=base64."
            ) from None
    return ReadFileOutput(
        key=key, content=content, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


SPEC = NodeSpec(
    kind=KIND,
    title="Read file",
    description=(
        "Read a stored file of the client's namespace (from S3 with an s3 credential, else "
        "local storage) as text or base64."
    ),
    input_model=ReadFileInput,
    output_model=ReadFileOutput,
    credential_kind=CREDENTIAL_KIND,
    task=read_file,
    example={
        "client": "acme",
        "key": "acme/daily_digest/3f6c0d5e-8a1b-4c2d-9e0f-1a2b3c4d5e6f/reports/daily.csv",
    },
)
