"""The ``scrape`` node: fetch one HTML page politely and pick values out with CSS selectors.

Protocol: ``GET <url>`` with ``User-Agent: agency-platform-scraper/1.0`` and
``Accept: text/html``; redirects are followed by hand (at most 5), and every hop passes the
egress guard (:mod:`agency.egress`), which refuses private, loopback, link-local, multicast and
reserved addresses unless allow-listed in ``AGENCY_EGRESS_ALLOW``, and connects to the address
it checked. A page
over ``max_bytes`` or slower than ``timeout_seconds`` in total is refused. 2xx answers are parsed
with BeautifulSoup (``html.parser``) and soupsieve selectors; 408/425/429/5xx, timeouts and
connection errors raise ``TransientNodeError``; other 4xx, a non-HTML answer and a refused
address raise ``PermanentNodeError``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin

import httpx
import soupsieve
from bs4 import BeautifulSoup
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agency.egress import guarded_client
from agency.errors import PermanentNodeError, TransientNodeError, status_to_error
from nodes._base import NodeInput, NodeOutput, NodeSpec, node_task

KIND = "scrape"
USER_AGENT = "agency-platform-scraper/1.0 (+polite; one request per step)"
MAX_REDIRECTS = 5
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_URL_ATTRIBUTES = ("href", "src", "action")


class ScrapeField(BaseModel):
    """One value to extract."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, title="Name", description="Key of the value in `fields`.")
    selector: str = Field(title="Selector", description="CSS selector, e.g. `h1.title`.")
    attribute: str | None = Field(
        default=None,
        title="Attribute",
        description="Take this attribute (href and src become absolute URLs) instead of text.",
    )
    all: bool = Field(
        default=False, title="All", description="A list of every match instead of the first."
    )

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        try:
            soupsieve.compile(value)
        except soupsieve.SelectorSyntaxError as exc:
            raise ValueError(f"invalid CSS selector {value!r}: {exc.args[0]}") from None
        return value


class ScrapeInput(NodeInput):
    """The page and what to take from it."""

    url: str = Field(title="URL", description="Absolute http(s) URL of the page.")
    fields: list[ScrapeField] = Field(
        min_length=1, title="Fields", description="Values to extract by CSS selector."
    )
    max_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        le=20 * 1024 * 1024,
        title="Max bytes",
        description="Refuse a page larger than this.",
    )
    timeout_seconds: float = Field(
        default=20.0, gt=0, le=120, title="Timeout", description="Total seconds for the page."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _unique(self) -> ScrapeInput:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        return self


class ScrapeOutput(NodeOutput):
    """What the page gave."""

    url: str = Field(title="URL", description="Final URL after redirects.")
    status: int = Field(title="Status", description="HTTP status of the page.")
    title: str | None = Field(default=None, title="Title", description="The page's <title>.")
    fields: dict[str, Any] = Field(
        title="Fields", description="Extracted values: text, attribute, list, or null."
    )
    size: int = Field(title="Size", description="Bytes of the page.")


def _fetch(params: ScrapeInput) -> tuple[httpx.Response, bytes]:
    deadline = time.monotonic() + params.timeout_seconds
    url = httpx.URL(params.url)
    headers = {"user-agent": USER_AGENT, "accept": ", ".join(_HTML_TYPES) + ";q=0.9, */*;q=0.1"}
    with guarded_client(timeout=params.timeout_seconds, follow_redirects=False) as http:
        for _ in range(MAX_REDIRECTS + 1):
            where = f"GET {url.copy_with(query=None, fragment=None)}"
            try:
                with http.stream("GET", url, headers=headers) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = url.join(response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        error = status_to_error(response.status_code)
                        raise error(f"{where} answered {response.status_code}.")
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body.extend(chunk)
                        if len(body) > params.max_bytes:
                            raise PermanentNodeError(
                                f"{where}: the page is larger than {params.max_bytes} bytes."
                            )
                        if time.monotonic() > deadline:
                            raise TransientNodeError(
                                f"{where} took longer than {params.timeout_seconds:g} s."
                            )
                    return response, bytes(body)
            except httpx.TimeoutException as exc:
                raise TransientNodeError(
                    f"{where} timed out after {params.timeout_seconds:g} s."
                ) from exc
            except httpx.TransportError as exc:
                raise TransientNodeError(f"{where} failed: {type(exc).__name__}.") from exc
    raise PermanentNodeError(f"{params.url} redirected more than {MAX_REDIRECTS} times.")


def _extract(soup: BeautifulSoup, field: ScrapeField, base: str) -> Any:
    def value(tag: Any) -> str | None:
        if field.attribute is None:
            return str(tag.get_text(" ", strip=True))
        raw = tag.get(field.attribute)
        if raw is None:
            return None
        raw = " ".join(raw) if isinstance(raw, list) else str(raw)
        return urljoin(base, raw) if field.attribute in _URL_ATTRIBUTES else raw

    if field.all:
        return [value(tag) for tag in soup.select(field.selector)]
    tag = soup.select_one(field.selector)
    return value(tag) if tag is not None else None


@node_task(KIND, timeout_seconds=180)
def scrape(params: ScrapeInput) -> ScrapeOutput:
    """Fetch the page and extract each field.

    Example::

        out = scrape(ScrapeInput(client="acme", url="https://example.com/pricing",
                                 fields=[{"name": "price", "selector": ".price"}]))
        out.fields["price"]
    """
    response, body = _fetch(params)
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _HTML_TYPES:
        raise PermanentNodeError(
            f"{params.url} answered {content_type or 'no content type'}, not an HTML page."
        )
    soup = BeautifulSoup(body, "html.parser", from_encoding=response.charset_encoding)
    base = str(response.url)
    title = soup.title.get_text(strip=True) if soup.title else None
    return ScrapeOutput(
        url=base,
        status=response.status_code,
        title=title,
        fields={f.name: _extract(soup, f, base) for f in params.fields},
        size=len(body),
    )


SPEC = NodeSpec(
    kind=KIND,
    title="Scrape",
    description=(
        "Fetch one public HTML page (size and time limits, polite User-Agent, private "
        "addresses refused) and extract values with CSS selectors."
    ),
    input_model=ScrapeInput,
    output_model=ScrapeOutput,
    credential_kind=None,
    task=scrape,
    example={
        "client": "acme",
        "url": "https://example.com/pricing",
        "fields": [
            {"name": "price", "selector": ".plan .price"},
            {"name": "links", "selector": "a.doc", "attribute": "href", "all": True},
        ],
    },
)
