"""Reusable Prefect tasks, one node per module, and the catalog that describes them.

Each node is a task named by its kind taking one input model and returning one output model::

    from nodes import HttpRequestInput, http_request

    @flow
    def check(client: str) -> int:
        return http_request(HttpRequestInput(client=client, url="https://example.com")).status

The package attributes ``http_request``, ``send_email`` and ``llm`` are the tasks, not their
modules: import anything else from the package or with ``from nodes.<module> import ...``.
"""

from nodes._base import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_JITTER_FACTOR,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    CredentialInput,
    NodeInput,
    NodeOutput,
    NodeSpec,
    failure_exception,
    node_task,
    resolve_credential,
    retry_on_transient,
)
from nodes.catalog import CATALOG, get_node, list_nodes
from nodes.http_request import HttpRequestInput, HttpRequestOutput, http_request
from nodes.llm import LlmInput, LlmOutput, TokenUsage, llm
from nodes.send_email import Attachment, SendEmailInput, SendEmailOutput, build_message, send_email

__all__ = [
    "CATALOG",
    "DEFAULT_BACKOFF_SECONDS",
    "DEFAULT_JITTER_FACTOR",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_SECONDS",
    "Attachment",
    "CredentialInput",
    "HttpRequestInput",
    "HttpRequestOutput",
    "LlmInput",
    "LlmOutput",
    "NodeInput",
    "NodeOutput",
    "NodeSpec",
    "SendEmailInput",
    "SendEmailOutput",
    "TokenUsage",
    "build_message",
    "failure_exception",
    "get_node",
    "http_request",
    "list_nodes",
    "llm",
    "node_task",
    "resolve_credential",
    "retry_on_transient",
    "send_email",
]
