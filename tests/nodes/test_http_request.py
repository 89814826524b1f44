"""``nodes/http_request.py`` against the scripted HTTP server over real sockets."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from agency.errors import CredentialMissing, PermanentNodeError, TransientNodeError
from blocks import save_credential
from nodes import HttpRequestInput, HttpRequestOutput, http_request
from tests.fixtures._net import free_port
from tests.fixtures.http_server import HttpServer, ReceivedRequest, Reply
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

CLIENT = "http-node-tests"
TOKEN = "tok-secret-9f8e7d6c5b4a"


def test_get_returns_parsed_json_and_sends_query_and_headers(http_server: HttpServer) -> None:
    http_server.respond("/people", {"name": "Ann", "score": 7}, method="GET")

    run = run_node(
        http_request,
        HttpRequestInput(
            client=CLIENT,
            url=http_server.url("/people"),
            query={"email": "ann@example.com", "tag": ["a", "b"]},
            headers={"X-Trace": "t-1"},
        ),
    )

    out = run.result
    assert isinstance(out, HttpRequestOutput)
    assert (out.status, out.body) == (200, {"name": "Ann", "score": 7})
    assert out.headers["content-type"] == "application/json"
    assert out.url == http_server.url("/people") + "?email=ann%40example.com&tag=a&tag=b"
    assert out.elapsed_ms > 0
    (received,) = http_server.requests_to("/people")
    assert received.query == {"email": ["ann@example.com"], "tag": ["a", "b"]}
    assert received.headers["x-trace"] == "t-1"


def test_post_sends_json_body_and_returns_text(http_server: HttpServer) -> None:
    http_server.respond("/items", Reply(201, text="created"), method="POST")

    run = run_node(
        http_request,
        HttpRequestInput(
            client=CLIENT, method="POST", url=http_server.url("/items"), json_body={"id": 3}
        ),
    )

    assert isinstance(run.result, HttpRequestOutput)
    assert (run.result.status, run.result.body) == (201, "created")
    (received,) = http_server.requests_to("/items")
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {"id": 3}


def test_redirect_is_followed_and_final_url_reported(http_server: HttpServer) -> None:
    http_server.respond("/old", Reply(302, headers={"location": "/new"}))
    http_server.respond("/new", {"moved": True})

    run = run_node(http_request, HttpRequestInput(client=CLIENT, url=http_server.url("/old")))

    assert isinstance(run.result, HttpRequestOutput)
    assert run.result.url == http_server.url("/new")
    assert run.result.body == {"moved": True}


@pytest.mark.parametrize(
    ("data", "header", "expected"),
    [
        ({"scheme": "bearer", "token": TOKEN}, "authorization", f"Bearer {TOKEN}"),
        ({"scheme": "api_key", "token": TOKEN, "header_name": "X-Key"}, "x-key", TOKEN),
        (
            {"scheme": "basic", "username": "ann", "password": TOKEN},
            "authorization",
            "Basic " + base64.b64encode(f"ann:{TOKEN}".encode()).decode(),
        ),
    ],
    ids=["bearer", "api_key", "basic"],
)
def test_http_auth_credential_is_applied(
    http_server: HttpServer, data: dict[str, str], header: str, expected: str
) -> None:
    name = f"api-{data['scheme'].replace('_', '-')}"
    save_credential(CLIENT, "http_auth", name, data)

    def check(request: ReceivedRequest) -> Reply:
        if request.headers.get(header) != expected:
            return Reply(401, json={"error": "unauthorized"})
        return Reply(json={"ok": True})

    http_server.handle("/secure", check)

    run = run_node(
        http_request,
        HttpRequestInput(client=CLIENT, url=http_server.url("/secure"), credential=name),
    )

    assert isinstance(run.result, HttpRequestOutput), run.result
    assert run.result.body == {"ok": True}


def test_rejected_credential_fails_once_without_revealing_it(http_server: HttpServer) -> None:
    save_credential(CLIENT, "http_auth", "rejected", {"scheme": "bearer", "token": TOKEN})
    http_server.respond("/secure", Reply(401, text="bad token"))

    run = run_node(
        http_request,
        HttpRequestInput(
            client=CLIENT, url=http_server.url("/secure?key=q-secret"), credential="rejected"
        ),
    )

    assert isinstance(run.error, PermanentNodeError)
    assert f"GET {http_server.url('/secure')} answered 401: bad token" in str(run.error)
    assert TOKEN not in str(run.error) and "q-secret" not in str(run.error)
    assert len(http_server.requests_to("/secure")) == 1
    assert run.attempts() == 1


def test_503_503_200_succeeds_on_the_third_request(http_server: HttpServer) -> None:
    http_server.respond("/flaky", 503, 503, {"ok": True})

    run = run_node(http_request, HttpRequestInput(client=CLIENT, url=http_server.url("/flaky")))

    assert isinstance(run.result, HttpRequestOutput)
    assert run.result.body == {"ok": True}
    assert len(http_server.requests_to("/flaky")) == 3
    assert run.attempts() == 3


def test_404_fails_after_exactly_one_request(http_server: HttpServer) -> None:
    http_server.respond("/missing", Reply(404, json={"error": "not found"}))

    run = run_node(http_request, HttpRequestInput(client=CLIENT, url=http_server.url("/missing")))

    assert isinstance(run.error, PermanentNodeError)
    assert "answered 404" in str(run.error)
    assert len(http_server.requests_to("/missing")) == 1
    assert run.attempts() == 1


def test_429_is_retried_until_retries_are_exhausted(http_server: HttpServer) -> None:
    http_server.respond("/limited", Reply(429, headers={"retry-after": "1"}))

    run = run_node(http_request, HttpRequestInput(client=CLIENT, url=http_server.url("/limited")))

    assert isinstance(run.error, TransientNodeError)
    assert len(http_server.requests_to("/limited")) == 4  # the first try and 3 retries
    assert run.attempts() == 4


def test_timeout_is_transient(http_server: HttpServer) -> None:
    http_server.respond("/slow", Reply(json={"late": True}, delay=1.0))

    run = run_node(
        http_request,
        HttpRequestInput(client=CLIENT, url=http_server.url("/slow"), timeout_seconds=0.2),
        retries=1,
    )

    assert isinstance(run.error, TransientNodeError)
    assert "timed out after 0.2 s" in str(run.error)
    assert len(http_server.requests_to("/slow")) == 2


def test_connection_refused_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-listens"

    run = run_node(http_request, HttpRequestInput(client=CLIENT, url=url), retries=1)

    assert isinstance(run.error, TransientNodeError)
    assert "ConnectError" in str(run.error)
    assert run.attempts() == 2


def test_missing_credential_fails_once_naming_client_kind_and_name(
    http_server: HttpServer,
) -> None:
    http_server.respond("/any", {"ok": True})

    run = run_node(
        http_request,
        HttpRequestInput(client=CLIENT, url=http_server.url("/any"), credential="absent"),
    )

    assert isinstance(run.error, CredentialMissing)
    message = str(run.error)
    assert f"'{CLIENT}'" in message and "'http_auth'" in message and "'absent'" in message
    assert http_server.requests_to("/any") == []
    assert run.attempts() == 1


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        HttpRequestInput(client=CLIENT, url="file:///etc/passwd")
