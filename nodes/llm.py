"""The ``llm`` node: one chat completion from any OpenAI-compatible endpoint (``openai`` client).

Protocol, with the client's ``openai`` credential: ``POST <base_url>/chat/completions`` with
``Authorization: Bearer <api_key>`` and ``{"model", "messages", "temperature", "max_tokens",
"response_format"}``; the endpoint answers ``200`` with ``choices[0].message.content`` and
``usage``. 408/429/5xx, timeouts and connection errors raise ``TransientNodeError`` (retried by
Prefect; the client itself never retries); 401, 400, 404 and other 4xx raise
``PermanentNodeError``. With ``output="json"`` the request asks for a JSON object and a reply
that does not parse raises ``PermanentNodeError``.

Token usage of every successful call is recorded in the platform DB (table ``llm_usage``) for
cost reporting; a recording failure is logged as a warning and does not fail the node.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
from openai import OpenAI
from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from agency.db import record_llm_usage
from agency.errors import AgencyError, PermanentNodeError, TransientNodeError, status_to_error
from agency.redaction import redact
from agency.settings import get_settings
from blocks import OpenAICredential
from nodes._base import CredentialInput, NodeOutput, NodeSpec, node_task, resolve_credential

KIND = "llm"
CREDENTIAL_KIND = "openai"
_JSON_HINT = "Reply with one JSON object and nothing else."


class LlmInput(CredentialInput):
    """One prompt to a chat model."""

    prompt: str = Field(title="Prompt", description="The user message.")
    system: str | None = Field(default=None, title="System prompt", description="Instructions.")
    model: str | None = Field(
        default=None, title="Model", description="Model name; default: the credential's."
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, title="Temperature", description="Sampling temperature."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, title="Max tokens", description="Upper bound on the reply length."
    )
    output: Literal["text", "json"] = Field(
        default="text",
        title="Output",
        description="json asks for a JSON object and parses the reply into `json`.",
    )
    timeout_seconds: float = Field(
        default=120.0, gt=0, title="Timeout", description="Seconds to wait for the reply."
    )


class TokenUsage(BaseModel):
    """Tokens the endpoint billed for one call."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(default=0, title="Prompt tokens")
    completion_tokens: int = Field(default=0, title="Completion tokens")
    total_tokens: int = Field(default=0, title="Total tokens")


class LlmOutput(NodeOutput):
    """The reply. In Python the parsed JSON is ``json_data``; serialised it is ``json``."""

    # "json" would shadow BaseModel.json, so the attribute is aliased; dumps use the alias.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    text: str = Field(title="Text", description="The reply as text.")
    json_data: Any = Field(
        default=None,
        alias="json",
        title="JSON",
        description="The parsed reply when output is json, else null.",
    )
    model: str = Field(title="Model", description="The model that answered.")
    finish_reason: str | None = Field(
        default=None, title="Finish reason", description="stop, length, content_filter, ..."
    )
    usage: TokenUsage = Field(title="Usage", description="Token counts of this call.")


def _messages(params: LlmInput) -> list[dict[str, str]]:
    system = params.system
    if params.output == "json" and "json" not in f"{system or ''} {params.prompt}".lower():
        # OpenAI rejects json_object mode unless a message mentions JSON.
        system = f"{system}\n\n{_JSON_HINT}" if system else _JSON_HINT
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": params.prompt}]


def _api_error(endpoint: str, exc: openai.OpenAIError) -> AgencyError:
    if isinstance(exc, openai.APITimeoutError):
        return TransientNodeError(f"LLM endpoint {endpoint} did not answer in time.")
    if isinstance(exc, openai.APIConnectionError):
        return TransientNodeError(f"Cannot reach LLM endpoint {endpoint}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        error = status_to_error(exc.status_code)
        message = redact(exc.message)
        return error(f"LLM endpoint {endpoint} answered {exc.status_code}: {message}")
    return PermanentNodeError(f"LLM endpoint {endpoint} failed: {redact(str(exc))}")


def _record_usage(client: str, model: str, usage: TokenUsage) -> None:
    try:
        record_llm_usage(
            get_settings().platform_database_url,
            client=client,
            workflow=flow_run.flow_name,
            flow_run_id=flow_run.id,
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
        )
    except Exception as exc:  # cost reporting must never fail the client's run
        get_run_logger().warning(
            "Could not record LLM usage of client %r (%s tokens): %s: %s",
            client,
            usage.total_tokens,
            type(exc).__name__,
            exc,
        )


@node_task(KIND, timeout_seconds=300)
def llm(params: LlmInput) -> LlmOutput:
    """Ask a chat model once; return its reply text (and parsed JSON), model and token usage.

    Example::

        out = llm(LlmInput(client="acme", credential="default", output="json",
                           prompt="Score this lead 0-100 as {\\"score\\": n}: ..."))
        out.json_data["score"]
    """
    cred = resolve_credential(params.client, CREDENTIAL_KIND, params.credential, OpenAICredential)
    model = params.model or cred.default_model
    endpoint = cred.base_url or "https://api.openai.com/v1"
    extra: dict[str, Any] = {}
    if params.temperature is not None:
        extra["temperature"] = params.temperature
    if params.max_tokens is not None:
        extra["max_tokens"] = params.max_tokens
    if params.output == "json":
        extra["response_format"] = {"type": "json_object"}
    try:
        with OpenAI(
            api_key=cred.api_key.get_secret_value(),
            base_url=cred.base_url,
            organization=cred.organization,
            max_retries=0,  # Prefect's retry policy is the only one
            timeout=params.timeout_seconds,
        ) as api:
            completion = api.chat.completions.create(
                model=model,
                messages=_messages(params),  # type: ignore[arg-type]
                **extra,
            )
    except openai.OpenAIError as exc:
        raise _api_error(endpoint, exc) from exc

    if not completion.choices:
        raise TransientNodeError(f"LLM endpoint {endpoint} answered without a choice.")
    choice = completion.choices[0]
    text = choice.message.content or ""
    usage = TokenUsage.model_validate(
        completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
        if completion.usage
        else {}
    )
    # Tokens are billed even when the reply turns out unusable, so record before parsing.
    _record_usage(params.client, completion.model or model, usage)

    data: Any = None
    if params.output == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PermanentNodeError(
                f"Model {completion.model or model} was asked for JSON but its reply is not valid "
                f"JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                f"the reply starts with: {text[:200]!r}"
            ) from None
    return LlmOutput(
        text=text,
        json_data=data,
        model=completion.model or model,
        finish_reason=choice.finish_reason,
        usage=usage,
    )


SPEC = NodeSpec(
    kind=KIND,
    title="LLM",
    description=(
        "Ask an OpenAI-compatible chat model one prompt; returns the reply as text or parsed "
        "JSON, with token usage (recorded for cost reporting)."
    ),
    input_model=LlmInput,
    output_model=LlmOutput,
    credential_kind=CREDENTIAL_KIND,
    task=llm,
)
