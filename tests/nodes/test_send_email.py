"""``nodes/send_email.py`` against real aiosmtpd servers (plain + AUTH, STARTTLS, implicit TLS)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from agency.errors import CredentialMissing, PermanentNodeError, TransientNodeError
from blocks import save_credential
from nodes import Attachment, SendEmailInput, SendEmailOutput, send_email
from tests.fixtures._net import free_port
from tests.fixtures.smtp import SmtpServer
from tests.nodes import run_node

pytestmark = pytest.mark.usefixtures("prefect_server")

CLIENT = "mail-node-tests"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()


def smtp_credential(server: SmtpServer, name: str, security: str, **overrides: Any) -> str:
    data: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "password": server.password,
        "from_address": "Acme Robot <robot@acme.test>",
        "security": security,
        "verify_tls": False,
    }
    save_credential(CLIENT, "smtp", name, {**data, **overrides})
    return name


def email(credential: str, **fields: Any) -> SendEmailInput:
    values: dict[str, Any] = {
        "client": CLIENT,
        "credential": credential,
        "to": ["ann@example.com"],
        "subject": "Report for {{ name }}",
        "text": "Hello {{ name }}, total {{ total }}.",
    }
    return SendEmailInput(**{**values, **fields})


def test_html_and_text_alternatives_with_attachments_arrive_rendered(
    smtp_server: SmtpServer,
) -> None:
    name = smtp_credential(smtp_server, "plain", "none")
    params = email(
        name,
        to=["Ann <ann@example.com>"],
        cc=["bob@example.com"],
        bcc=["audit@acme.test"],
        html="<p>Hello <b>{{ name }}</b>, total {{ total }}.</p>",
        context={"name": "Ann & <Co>", "total": 42},
        attachments=[
            Attachment(filename="report.csv", content="a,b\n1,2\n"),
            Attachment(filename="logo.png", content=PNG, encoding="base64"),
        ],
    )

    run = run_node(send_email, params)

    out = run.result
    assert isinstance(out, SendEmailOutput), out
    assert out.accepted == ["Ann <ann@example.com>", "bob@example.com", "audit@acme.test"]
    assert out.refused == []
    (mail,) = smtp_server.messages
    assert mail.login == smtp_server.username
    assert mail.mail_from == "robot@acme.test"
    assert mail.rcpt_tos == ["ann@example.com", "bob@example.com", "audit@acme.test"]
    message = mail.message
    assert message["Message-ID"] == out.message_id and out.message_id.endswith("@acme.test>")
    assert message["Subject"] == "Report for Ann & <Co>"
    assert message["Cc"] == "bob@example.com" and message["Bcc"] is None
    assert message.get_content_type() == "multipart/mixed"
    alternative, csv, png = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, html = alternative.iter_parts()
    assert text.get_content().strip() == "Hello Ann & <Co>, total 42."
    assert html.get_content_type() == "text/html"
    assert html.get_content().strip() == "<p>Hello <b>Ann &amp; &lt;Co&gt;</b>, total 42.</p>"
    assert (csv.get_filename(), csv.get_content_type()) == ("report.csv", "text/csv")
    assert csv.get_payload(decode=True) == b"a,b\n1,2\n"
    assert (png.get_filename(), png.get_content_type()) == ("logo.png", "image/png")
    assert png.get_payload(decode=True) == base64.b64decode(PNG)


def test_starttls_with_self_signed_certificate_and_verify_tls_false(
    smtp_tls_server: SmtpServer,
) -> None:
    name = smtp_credential(smtp_tls_server, "starttls", "starttls")

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 1}))

    assert isinstance(run.result, SendEmailOutput), run.result
    (mail,) = smtp_tls_server.messages
    assert mail.message.get_content_type() == "text/plain"
    assert mail.message.get_content().strip() == "Hello Ann, total 1."


def test_untrusted_certificate_fails_once_when_verify_tls_is_on(
    smtp_tls_server: SmtpServer,
) -> None:
    name = smtp_credential(smtp_tls_server, "starttls-verify", "starttls", verify_tls=True)

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 1}))

    assert isinstance(run.error, PermanentNodeError)
    assert "certificate that is not trusted" in str(run.error)
    assert smtp_tls_server.messages == []
    assert run.attempts() == 1


def test_implicit_tls(smtp_ssl_server: SmtpServer) -> None:
    name = smtp_credential(smtp_ssl_server, "implicit-tls", "tls")

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 2}))

    assert isinstance(run.result, SendEmailOutput), run.result
    assert len(smtp_ssl_server.messages) == 1


def test_bad_password_fails_once_without_revealing_it(smtp_server: SmtpServer) -> None:
    name = smtp_credential(smtp_server, "wrong-password", "none", password="not-the-password")

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 3}))

    assert isinstance(run.error, PermanentNodeError)
    assert "rejected the login" in str(run.error) and "535" in str(run.error)
    assert "not-the-password" not in str(run.error)
    assert smtp_server.messages == []
    assert run.attempts() == 1


def test_4xx_reply_is_retried_until_accepted(smtp_server: SmtpServer) -> None:
    name = smtp_credential(smtp_server, "greylisted", "none")
    smtp_server.reject_next("451 4.7.1 Greylisted, try again later", times=2)

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 4}))

    assert isinstance(run.result, SendEmailOutput), run.result
    assert len(smtp_server.messages) == 1
    assert run.attempts() == 3


def test_5xx_reply_fails_once(smtp_server: SmtpServer) -> None:
    name = smtp_credential(smtp_server, "rejecting", "none")
    smtp_server.reject_next("554 5.7.1 Message rejected as spam")

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 5}))

    assert isinstance(run.error, PermanentNodeError)
    assert "answered 554: 5.7.1 Message rejected as spam" in str(run.error)
    assert run.attempts() == 1


def test_unreachable_server_is_transient(smtp_server: SmtpServer) -> None:
    name = smtp_credential(smtp_server, "nowhere", "none", port=free_port())

    run = run_node(send_email, email(name, context={"name": "Ann", "total": 6}), retries=1)

    assert isinstance(run.error, TransientNodeError)
    assert "ConnectionRefusedError" in str(run.error)
    assert run.attempts() == 2


def test_undefined_template_variable_fails_once(smtp_server: SmtpServer) -> None:
    name = smtp_credential(smtp_server, "templates", "none")

    run = run_node(send_email, email(name, context={"name": "Ann"}))

    assert isinstance(run.error, PermanentNodeError)
    assert "text template" in str(run.error) and "'total' is undefined" in str(run.error)
    assert smtp_server.messages == []
    assert run.attempts() == 1


def test_templates_run_in_a_sandbox(smtp_server: SmtpServer) -> None:
    name = smtp_credential(smtp_server, "sandbox", "none")

    run = run_node(
        send_email,
        email(name, text="{{ name.__class__.__mro__[1].__subclasses__() }}", context={"name": ""}),
    )

    assert isinstance(run.error, PermanentNodeError)
    assert "unsafe" in str(run.error)
    assert smtp_server.messages == []


def test_missing_credential_fails_once_naming_client_kind_and_name(
    smtp_server: SmtpServer,
) -> None:
    run = run_node(send_email, email("absent", context={"name": "Ann", "total": 0}))

    assert isinstance(run.error, CredentialMissing)
    message = str(run.error)
    assert f"'{CLIENT}'" in message and "'smtp'" in message and "'absent'" in message
    assert run.attempts() == 1


def test_inputs_are_validated() -> None:
    with pytest.raises(ValidationError, match="not an email address"):
        email("x", to=["ann@example.com\r\nBcc: victim@example.com"])
    with pytest.raises(ValidationError, match="not valid base64"):
        Attachment(filename="a.bin", content="%%%", encoding="base64")
    with pytest.raises(ValidationError, match="at least 1 item"):
        email("x", to=[])
