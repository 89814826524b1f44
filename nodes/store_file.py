"""The ``store_file`` node: save text or bytes under ``<client>/<workflow>/<run>/<name>``.

Without a credential the file goes to the local file storage (``AGENCY_STORAGE_DIR``, default
``<home>/files``); with an ``s3`` credential to the client's bucket (see ``nodes/_storage.py``
for the protocol).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task
from nodes._storage import check_name, open_store, run_prefix

KIND = "store_file"
CREDENTIAL_KIND = "s3"
MAX_BYTES = 50 * 1024 * 1024


class StoreFileInput(NodeInput):
    """A file to store."""

    name: str = Field(
        title="Name", description="File name within the run, e.g. `reports/daily.csv`."
    )
    content: str = Field(title="Content", description="The file, as text or base64.")
    encoding: Literal["text", "base64"] = Field(
        default="text", title="Encoding", description="How `content` is given."
    )
    credential: str | None = Field(
        default=None,
        title="Credential",
        description="The client's s3 credential; empty: local file storage.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _decodable(self) -> StoreFileInput:
        if len(self.payload()) > MAX_BYTES:
            raise ValueError(f"content is larger than {MAX_BYTES} bytes")
        return self

    def payload(self) -> bytes:
        """The file's bytes."""
        if self.encoding == "text":
            return self.content.encode()
        try:
            return base64.b64decode(self.content, validate=True)
        except binascii.Error:
            raise ValueError("content is not valid base64") from None


class StoreFileOutput(NodeOutput):
    """Where the file went."""

    key: str = Field(title="Key", description="<client>/<workflow>/<run>/<name>; read it back.")
    uri: str = Field(title="URI", description="file:// or s3:// location.")
    size: int = Field(title="Size", description="Bytes stored.")
    sha256: str = Field(title="SHA-256", description="Hex digest of the bytes.")


@node_task(KIND, timeout_seconds=300)
def store_file(params: StoreFileInput) -> StoreFileOutput:
    """Store the file in the run's namespace and return its key.

    Example::

        out = store_file(StoreFileInput(client="acme", name="report.csv", content="a,b\\n1,2\\n"))
        out.key   # "acme/daily_digest/<run id>/report.csv"
    """
    data = params.payload()
    key = f"{run_prefix(params.client)}/{params.name}"
    uri = open_store(params.client, params.credential).write(key, data)
    return StoreFileOutput(
        key=key, uri=uri, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


SPEC = NodeSpec(
    kind=KIND,
    title="Store file",
    description=(
        "Save a file (text or base64) under <client>/<workflow>/<run>/<name> in the client's "
        "S3 bucket (s3 credential) or the local file storage."
    ),
    input_model=StoreFileInput,
    output_model=StoreFileOutput,
    credential_kind=CREDENTIAL_KIND,
    task=store_file,
    example={"client": "acme", "name": "reports/daily.csv", "content": "email,score\n"},
)
