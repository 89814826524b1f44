"""Reusable Prefect tasks, one node per module, and the catalog that describes them.

Each node is a task named by its kind taking one input model and returning one output model::

    from nodes import HttpRequestInput, http_request

    @flow
    def check(client: str) -> int:
        return http_request(HttpRequestInput(client=client, url="https://example.com")).status

The package attributes named after nodes (``http_request``, ``db_query``, ``notify``, ...) are
the tasks, not their modules: import anything else from the package or with
``from nodes.<module> import ...``.
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
from nodes.aggregate import AggregateInput, AggregateOutput, aggregate
from nodes.approve import ApprovalAnswer, ApproveInput, ApproveOutput, approve
from nodes.catalog import CATALOG, ENTRY_POINT_GROUP, get_node, list_nodes, reload_catalog
from nodes.db_query import DbQueryInput, DbQueryOutput, db_query
from nodes.delay import DelayInput, DelayOutput, delay
from nodes.google_sheets_append import (
    GoogleSheetsAppendInput,
    GoogleSheetsAppendOutput,
    google_sheets_append,
)
from nodes.http_request import HttpRequestInput, HttpRequestOutput, http_request
from nodes.llm import LlmInput, LlmOutput, TokenUsage, llm
from nodes.log_message import LogMessageInput, LogMessageOutput, log_message
from nodes.notify import NotifyInput, NotifyOutput, notify
from nodes.read_file import ReadFileInput, ReadFileOutput, read_file
from nodes.route import RouteCase, RouteInput, RouteOutput, route
from nodes.scrape import ScrapeField, ScrapeInput, ScrapeOutput, scrape
from nodes.send_email import Attachment, SendEmailInput, SendEmailOutput, build_message, send_email
from nodes.store_file import StoreFileInput, StoreFileOutput, store_file
from nodes.transform import TransformInput, TransformOutput, transform

__all__ = [
    "CATALOG",
    "DEFAULT_BACKOFF_SECONDS",
    "DEFAULT_JITTER_FACTOR",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_SECONDS",
    "ENTRY_POINT_GROUP",
    "AggregateInput",
    "AggregateOutput",
    "ApprovalAnswer",
    "ApproveInput",
    "ApproveOutput",
    "Attachment",
    "CredentialInput",
    "DbQueryInput",
    "DbQueryOutput",
    "DelayInput",
    "DelayOutput",
    "GoogleSheetsAppendInput",
    "GoogleSheetsAppendOutput",
    "HttpRequestInput",
    "HttpRequestOutput",
    "LlmInput",
    "LlmOutput",
    "LogMessageInput",
    "LogMessageOutput",
    "NodeInput",
    "NodeOutput",
    "NodeSpec",
    "NotifyInput",
    "NotifyOutput",
    "ReadFileInput",
    "ReadFileOutput",
    "RouteCase",
    "RouteInput",
    "RouteOutput",
    "ScrapeField",
    "ScrapeInput",
    "ScrapeOutput",
    "SendEmailInput",
    "SendEmailOutput",
    "StoreFileInput",
    "StoreFileOutput",
    "TokenUsage",
    "TransformInput",
    "TransformOutput",
    "aggregate",
    "approve",
    "build_message",
    "db_query",
    "delay",
    "failure_exception",
    "get_node",
    "google_sheets_append",
    "http_request",
    "list_nodes",
    "llm",
    "log_message",
    "node_task",
    "notify",
    "read_file",
    "reload_catalog",
    "resolve_credential",
    "retry_on_transient",
    "route",
    "scrape",
    "send_email",
    "store_file",
    "transform",
]
