"""The ``http_request`` node: one HTTP request with httpx, optionally authenticated.

Sends ``<method> <url>`` with the given headers, query parameters and JSON body. With a
``credential`` of kind ``http_auth`` (a plain name) it adds ``Authorization: Bearer <token>``, an
API-key header (``X-API-Key`` by default) or HTTP basic auth; with a connected account
(``<kind>/<name>`` of an OAuth kind, e.g. ``hubspot/crm`` or ``oauth2/erp``) it adds
``Authorization: Bearer <access token>``, refreshed first when it is about to expire. A 2xx/3xx
answer returns an ``HttpRequestOutput``; 408/425/429/5xx, timeouts and connection errors raise
``TransientNodeError`` (retried); a 401 to a connected account raises ``CredentialInvalid`` (it
must be reconnected); any other 4xx raises ``PermanentNodeError``. Error messages carry the
method, the URL without its query and a snippet of the answer, never a request header.

:class:`ConnectedAccount` is the shared way nodes call a provider's own API (Gmail, Graph, Slack,
Sheets) with a connected account: bearer token, egress guard and the same error mapping.

Every connection, each redirect hop included, goes through the egress guard
(:mod:`agency.egress`): a private or platform address is refused with ``PermanentNodeError``.
``query`` is merged into the URL's own query string, which is kept.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from prefect import get_run_logger
from pydantic import Field, field_validator

from agency.egress import guarded_client
from agency.errors import (
    PermanentNodeError,
    TransientNodeError,
    status_to_error,
)
from agency.redaction import redact
from blocks import HttpAuthCredential
from blocks.kinds import OAUTH_KINDS
from nodes._base import (
    NodeInput,
    NodeOutput,
    NodeSpec,
    credential_ref,
    node_task,
    resolve_credential,
)
from nodes._oauth import ConnectedAccount, connected_account

KIND = "http_request"
CREDENTIAL_KIND = "http_auth"
_SNIPPET = 300

QueryValue = str | int | float | bool | list[str | int | float | bool]


class HttpRequestInput(NodeInput):
    """One HTTP request."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = Field(
        default="GET", title="Method", description="HTTP method."
    )
    url: str = Field(title="URL", description="Absolute http(s) URL.")
    headers: dict[str, str] = Field(
        default_factory=dict, title="Headers", description="Extra request headers."
    )
    query: dict[str, QueryValue] = Field(
        default_factory=dict,
        title="Query parameters",
        description="Merged into the URL's own query; a list value repeats the parameter.",
    )
    json_body: Any = Field(
        default=None, title="JSON body", description="Sent as application/json when set."
    )
    credential: str | None = Field(
        default=None,
        title="Credential",
        description=(
            "Name of the client's http_auth credential, or <kind>/<name> of a connected account "
            "(oauth2, google, microsoft, slack, hubspot) for a Bearer token; a reference, never "
            "a value."
        ),
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout", description="Seconds for connect, read and write."
    )
    follow_redirects: bool = Field(
        default=True, title="Follow redirects", description="Follow 3xx answers."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if httpx.URL(value).scheme not in ("http", "https"):
            raise ValueError("url must start with http:// or https://")
        return value


class HttpRequestOutput(NodeOutput):
    """The answer: ``body`` is parsed JSON when the response says it is JSON, else text."""

    status: int = Field(title="Status", description="HTTP status code.")
    headers: dict[str, str] = Field(title="Headers", description="Response headers.")
    body: Any = Field(title="Body", description="Parsed JSON, or the text of the response.")
    url: str = Field(title="URL", description="Final URL after redirects.")
    elapsed_ms: float = Field(title="Elapsed", description="Milliseconds until the full answer.")


def _where(method: str, url: httpx.URL | str) -> str:
    # Query strings sometimes carry keys, so messages name the URL without one.
    return f"{method} {httpx.URL(str(url)).copy_with(query=None, fragment=None)}"


def _body(response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.content and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            return response.json()
        except ValueError:
            pass  # mislabelled JSON: hand back the text rather than fail a 2xx
    return response.text


@node_task(KIND, timeout_seconds=120)
def http_request(params: HttpRequestInput) -> HttpRequestOutput:
    """Send one HTTP request and return status, headers, body, final URL and elapsed time.

    Example::

        out = http_request(HttpRequestInput(client="acme", url="https://api.example.com/people",
                                            query={"email": "a@example.com"}, credential="crm"))
        out.body["name"]
    """
    headers = dict(params.headers)
    auth: httpx.Auth | None = None
    account: ConnectedAccount | None = None
    if params.credential and credential_ref(params.credential, CREDENTIAL_KIND)[0] in OAUTH_KINDS:
        account = connected_account(params.client, params.credential, CREDENTIAL_KIND, OAUTH_KINDS)
        headers.update(account.credential.bearer())
    elif params.credential:
        cred = resolve_credential(
            params.client, CREDENTIAL_KIND, params.credential, HttpAuthCredential
        )
        if cred.scheme == "basic":
            password = cred.password.get_secret_value() if cred.password else ""
            auth = httpx.BasicAuth(cred.username or "", password)
        else:
            headers.update(cred.headers())

    where = _where(params.method, params.url)
    try:
        url = httpx.URL(params.url)
        if params.query:  # ``params=`` would replace the URL's own query string
            url = url.copy_merge_params(params.query)
        with guarded_client(
            timeout=params.timeout_seconds, follow_redirects=params.follow_redirects
        ) as http:
            response = http.request(
                params.method, url, headers=headers, json=params.json_body, auth=auth
            )
    except httpx.TimeoutException as exc:
        raise TransientNodeError(
            f"{where} timed out after {params.timeout_seconds:g} s ({type(exc).__name__})."
        ) from exc
    except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as exc:
        raise PermanentNodeError(f"{where} cannot be sent: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransientNodeError(f"{where} failed: {type(exc).__name__}: {exc}") from exc

    if response.status_code == 401 and account is not None:
        raise account.refused("HTTP 401")
    if response.status_code >= 400:
        snippet = redact(response.text[:_SNIPPET])
        error = status_to_error(response.status_code)
        raise error(f"{where} answered {response.status_code}: {snippet}")

    elapsed_ms = round(response.elapsed.total_seconds() * 1000, 3)
    get_run_logger().info("%s answered %s in %.0f ms", where, response.status_code, elapsed_ms)
    return HttpRequestOutput(
        status=response.status_code,
        headers=dict(response.headers),
        body=_body(response),
        url=str(response.url),
        elapsed_ms=elapsed_ms,
    )


SPEC = NodeSpec(
    kind=KIND,
    title="HTTP request",
    description=(
        "Send one HTTP request (any method, headers, query, JSON body), optionally "
        "authenticated with an http_auth credential or a connected account (Bearer token, "
        "refreshed when needed, e.g. hubspot/<name>); returns status, headers and body."
    ),
    input_model=HttpRequestInput,
    output_model=HttpRequestOutput,
    credential_kind=CREDENTIAL_KIND,
    task=http_request,
    example={
        "client": "acme",
        "url": "https://api.example.com/people",
        "query": {"email": "a@example.com"},
        "credential": "crm",
    },
)
