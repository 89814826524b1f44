"""The ``llm`` node: one chat completion from any OpenAI-compatible endpoint (``openai`` client).

Protocol, with the client's ``openai`` credential: ``POST <base_url>/chat/completions`` with
``Authorization: Bearer <api_key>`` and ``{"model", "messages", "temperature", "max_tokens",
"response_format"}``; the endpoint answers ``200`` with ``choices[0].message.content`` and
``usage``. 408/429/5xx, timeouts and connection errors raise ``TransientNodeError`` (retried by
Prefect; the client itself never retries); 401, 400, 404 and other 4xx raise
``PermanentNodeError``. A 429/503 carrying ``Retry-After`` (seconds or an HTTP date) waits that
long (capped by ``AGENCY_LLM_MAX_RETRY_AFTER_SECONDS``) before Prefect's retry, when one is left.

With ``output="json"`` the request asks for a JSON object; a reply that does not parse (or does
not match ``json_schema``) gets one repair request (the reply and the error sent back, asking for
corrected JSON); a second bad reply raises ``PermanentNodeError`` naming the problem.

Token usage and cost (``AGENCY_LLM_PRICES``, USD per million prompt / completion tokens, matched
by model name or its longest prefix) of every call are recorded in the platform DB (table
``llm_usage``) per client, workflow, run and model; a recording failure is logged as a warning
and does not fail the node.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
import jsonschema
from prefect import get_run_logger
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agency.egress import guarded_client
from agency.errors import AgencyError, PermanentNodeError, TransientNodeError, status_to_error
from agency.redaction import redact
from agency.settings import get_settings
from blocks import OpenAICredential
from nodes._base import (
    CredentialInput,
    NodeOutput,
    NodeSpec,
    current_workflow,
    node_task,
    resolve_credential,
)

if TYPE_CHECKING:
    import openai

KIND = "llm"
CREDENTIAL_KIND = "openai"
_JSON_HINT = "Reply with one JSON object and nothing else."
_REPAIR = (
    "Your reply is not valid JSON for this request: {problem}. Reply again with only the "
    "corrected JSON object and nothing else."
)


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
    json_schema: dict[str, Any] | None = Field(
        default=None,
        title="JSON schema",
        description="For output json: a JSON Schema the reply must match.",
    )
    timeout_seconds: float = Field(
        default=120.0, gt=0, title="Timeout", description="Seconds to wait for the reply."
    )

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value


class TokenUsage(BaseModel):
    """Tokens the endpoint billed for one call."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(default=0, title="Prompt tokens")
    completion_tokens: int = Field(default=0, title="Completion tokens")
    total_tokens: int = Field(default=0, title="Total tokens")

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


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
    usage: TokenUsage = Field(
        title="Usage", description="Token counts of this node (both calls after a repair)."
    )
    cost_usd: float | None = Field(
        default=None, title="Cost", description="USD per the price table; null when unpriced."
    )
    repaired: bool = Field(
        default=False, title="Repaired", description="The JSON reply needed one repair request."
    )


def _messages(params: LlmInput) -> list[dict[str, str]]:
    system = params.system
    if params.output == "json" and "json" not in f"{system or ''} {params.prompt}".lower():
        # OpenAI rejects json_object mode unless a message mentions JSON.
        system = f"{system}\n\n{_JSON_HINT}" if system else _JSON_HINT
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": params.prompt}]


def _parse_json(text: str, schema: dict[str, Any] | None) -> tuple[Any, str | None]:
    """The parsed reply and None, or None and what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if schema is not None:
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(data)
        )
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            return None, f"schema mismatch at {where}: {error.message}"
    return data, None


def _api_error(endpoint: str, exc: openai.OpenAIError) -> AgencyError:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return TransientNodeError(f"LLM endpoint {endpoint} did not answer in time.")
    if isinstance(exc, openai.APIConnectionError) and isinstance(exc.__cause__, AgencyError):
        return exc.__cause__  # the egress guard refused the address, or it did not resolve
    if isinstance(exc, openai.APIConnectionError):
        return TransientNodeError(f"Cannot reach LLM endpoint {endpoint}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        error = status_to_error(exc.status_code)
        message = redact(exc.message)
        wait = retry_after_seconds(exc.response.headers)
        if wait is not None and error is TransientNodeError:
            _wait_before_retry(wait)
        return error(f"LLM endpoint {endpoint} answered {exc.status_code}: {message}")
    return PermanentNodeError(f"LLM endpoint {endpoint} failed: {redact(str(exc))}")


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait, if any."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _wait_before_retry(seconds: float) -> None:
    context = TaskRunContext.get()
    if context is None:
        return
    attempts_left = context.task.retries - (context.task_run.run_count - 1)
    if attempts_left <= 0:
        return  # no retry follows: failing now is better than waiting for nothing
    wait = min(seconds, get_settings().llm_max_retry_after_seconds)
    get_run_logger().info("LLM endpoint asked to retry after %.1fs; waiting %.1fs", seconds, wait)
    time.sleep(wait)


def price_per_million(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """(prompt, completion) USD per million tokens of ``model``: exact name, else longest prefix.

    Raises ``KeyError`` when the table has no price for it.
    """
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    if not matches:
        raise KeyError(model)
    return prices[max(matches, key=len)]


def cost_usd(model: str, usage: TokenUsage, prices: dict[str, tuple[float, float]]) -> float | None:
    """USD cost of ``usage`` on ``model``, or None when the model has no price."""
    try:
        prompt, completion = price_per_million(model, prices)
    except KeyError:
        return None
    return round((usage.prompt_tokens * prompt + usage.completion_tokens * completion) / 1e6, 8)


def _record_usage(client: str, model: str, usage: TokenUsage, cost: float | None) -> None:
    try:
        from agency.db import record_llm_usage

        record_llm_usage(
            get_settings().platform_database_url,
            client=client,
            workflow=current_workflow(),
            flow_run_id=flow_run.id,
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cost_usd=cost,
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
    """Ask a chat model; return its reply text (and parsed JSON), model, token usage and cost.

    Example::

        out = llm(LlmInput(client="acme", credential="default", output="json",
                           prompt="Score this lead 0-100 as {\\"score\\": n}: ..."))
        out.json_data["score"]
    """
    import openai  # here, not at module level: it costs every flow importing a node ~0.4 s

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
    prices = get_settings().llm_prices
    messages = _messages(params)
    usage = TokenUsage()
    cost: float | None = None
    data: Any = None
    with openai.OpenAI(
        api_key=cred.api_key.get_secret_value(),
        base_url=cred.base_url,
        organization=cred.organization,
        max_retries=0,  # Prefect's retry policy is the only one
        timeout=params.timeout_seconds,
        http_client=guarded_client(timeout=params.timeout_seconds),
    ) as api:
        for attempt in ("first", "repair"):
            try:
                completion = api.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    **extra,
                )
            except openai.OpenAIError as exc:
                raise _api_error(endpoint, exc) from exc
            if not completion.choices:
                raise TransientNodeError(f"LLM endpoint {endpoint} answered without a choice.")
            choice = completion.choices[0]
            text = choice.message.content or ""
            answered_by = completion.model or model
            call_usage = TokenUsage.model_validate(
                completion.usage.model_dump(
                    include={"prompt_tokens", "completion_tokens", "total_tokens"}
                )
                if completion.usage
                else {}
            )
            call_cost = cost_usd(answered_by, call_usage, prices)
            # Tokens are billed even when the reply turns out unusable, so record before parsing.
            _record_usage(params.client, answered_by, call_usage, call_cost)
            usage = usage + call_usage
            cost = None if call_cost is None else (cost or 0.0) + call_cost

            if params.output != "json":
                break
            data, problem = _parse_json(text, params.json_schema)
            if problem is None:
                break
            if attempt == "repair":
                raise PermanentNodeError(
                    f"Model {answered_by} was asked for JSON but its reply is not valid JSON even "
                    f"after one repair request ({problem}); the reply starts with: {text[:200]!r}"
                )
            get_run_logger().warning(
                "Reply of %s is not valid JSON (%s); asking for a repair", answered_by, problem
            )
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": _REPAIR.format(problem=problem)},
            ]
    return LlmOutput(
        text=text,
        json_data=data,
        model=answered_by,
        finish_reason=choice.finish_reason,
        usage=usage,
        cost_usd=round(cost, 8) if cost is not None else None,
        repaired=params.output == "json" and attempt == "repair",
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
    example={
        "client": "acme",
        "credential": "default",
        "prompt": 'Score this lead 0-100 as {"score": n}: ...',
        "output": "json",
    },
)
