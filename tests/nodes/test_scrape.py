"""``nodes/scrape.py`` against the local HTTP server (127.0.0.1 allow-listed by setting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from agency.errors import PermanentNodeError, TransientNodeError
from agency.settings import get_settings
from nodes import ScrapeInput, ScrapeOutput, scrape
from nodes.scrape import USER_AGENT
from tests.fixtures.http_server import HttpServer, Reply
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

PAGE = """<!doctype html><html><head><title> Pricing </title></head><body>
<div class="plan"><h2>Basic</h2><span class="price">€9</span></div>
<div class="plan"><h2>Pro</h2><span class="price">€29</span></div>
<a class="doc" href="/docs/a">A</a><a class="doc" href="https://other.test/b">B</a>
<img id="logo" src="img/logo.png"></body></html>"""
FIELDS = [
    {"name": "first_price", "selector": ".plan .price"},
    {"name": "plans", "selector": ".plan h2", "all": True},
    {"name": "docs", "selector": "a.doc", "attribute": "href", "all": True},
    {"name": "logo", "selector": "#logo", "attribute": "src"},
    {"name": "missing", "selector": ".nope"},
]


def _html(text: str, status: int = 200, **headers: str) -> Reply:
    return Reply(status, text=text, headers={"content-type": "text/html; charset=utf-8", **headers})


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the older name of AGENCY_EGRESS_ALLOW still works
    monkeypatch.delenv("AGENCY_EGRESS_ALLOW")
    monkeypatch.setenv("AGENCY_SCRAPE_ALLOW_HOSTS", '["127.0.0.1"]')
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("AGENCY_SCRAPE_ALLOW_HOSTS")
    get_settings.cache_clear()


@pytest.mark.usefixtures("allow_loopback")
def test_fields_by_css_selector_after_a_redirect(http_server: HttpServer) -> None:
    http_server.respond("/old", Reply(301, headers={"location": "/pricing/"}))
    http_server.respond("/pricing/", _html(PAGE))

    run = run_node(scrape, ScrapeInput(client="acme", url=http_server.url("/old"), fields=FIELDS))

    out = run.result
    assert isinstance(out, ScrapeOutput), out
    assert out.url == http_server.url("/pricing/") and out.status == 200
    assert out.title == "Pricing"
    assert out.fields == {
        "first_price": "€9",
        "plans": ["Basic", "Pro"],
        "docs": [http_server.url("/docs/a"), "https://other.test/b"],
        "logo": http_server.url("/pricing/img/logo.png"),
        "missing": None,
    }
    (request,) = http_server.requests_to("/pricing/")
    assert request.headers["user-agent"] == USER_AGENT


@pytest.mark.usefixtures("allow_loopback")
def test_a_page_over_the_size_limit_is_refused(http_server: HttpServer) -> None:
    http_server.respond("/big", _html("<p>" + "x" * 5000 + "</p>"))

    run = run_node(
        scrape,
        ScrapeInput(client="acme", url=http_server.url("/big"), fields=FIELDS, max_bytes=1024),
    )

    assert isinstance(run.error, PermanentNodeError)
    assert "larger than 1024 bytes" in str(run.error)
    assert run.attempts() == 1


@pytest.mark.usefixtures("allow_loopback")
def test_a_slow_page_times_out_and_is_retried(http_server: HttpServer) -> None:
    http_server.respond("/slow", Reply(200, text="<p>late</p>", delay=2))

    run = run_node(
        scrape,
        ScrapeInput(
            client="acme", url=http_server.url("/slow"), fields=FIELDS, timeout_seconds=0.5
        ),
        retries=1,
    )

    assert isinstance(run.error, TransientNodeError)
    assert run.attempts() == 2


@pytest.mark.usefixtures("allow_loopback")
def test_non_html_and_404_fail_once(http_server: HttpServer) -> None:
    http_server.respond("/data", {"not": "html"})
    http_server.respond("/gone", 404)

    for path, message in (("/data", "not an HTML page"), ("/gone", "answered 404")):
        run = run_node(scrape, ScrapeInput(client="acme", url=http_server.url(path), fields=FIELDS))
        assert isinstance(run.error, PermanentNodeError), path
        assert message in str(run.error)
        assert run.attempts() == 1


def test_loopback_is_refused_without_the_allow_list(
    http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.respond("/pricing", _html(PAGE))
    monkeypatch.setenv("AGENCY_EGRESS_ALLOW", "")
    get_settings.cache_clear()

    for url in (
        http_server.url("/pricing"),
        http_server.url("/pricing").replace("127.0.0.1", "localhost"),
    ):
        run = run_node(scrape, ScrapeInput(client="acme", url=url, fields=FIELDS))
        assert isinstance(run.error, PermanentNodeError)
        assert "Refusing to connect" in str(run.error)
        assert run.attempts() == 1
    assert http_server.requests_to("/pricing") == []
    get_settings.cache_clear()


@pytest.mark.usefixtures("allow_loopback")
def test_a_redirect_to_a_blocked_address_is_refused(http_server: HttpServer) -> None:
    http_server.respond(
        "/hop", Reply(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})
    )

    run = run_node(scrape, ScrapeInput(client="acme", url=http_server.url("/hop"), fields=FIELDS))

    assert isinstance(run.error, PermanentNodeError)
    assert "169.254.169.254" in str(run.error)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"url": "ftp://example.com/", "fields": FIELDS}, ("url",)),
        (
            {"url": "https://example.com/", "fields": [{"name": "a", "selector": "div[["}]},
            ("fields", 0, "selector"),
        ),
        ({"url": "https://example.com/", "fields": []}, ("fields",)),
    ],
)
def test_bad_params_fail_validation(params: dict[str, object], loc: tuple[object, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        ScrapeInput.model_validate({"client": "acme", **params})

    assert info.value.errors()[0]["loc"] == loc
