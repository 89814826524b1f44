"""The ``send_email`` node: render jinja2 templates and send one message over SMTP (smtplib), or
through a connected Google or Microsoft 365 mailbox.

Protocol, with the client's ``smtp`` credential: connect to ``host:port`` (``security="tls"``:
TLS from the first byte, ``SMTP_SSL``; ``"starttls"``: ``EHLO``, ``STARTTLS``, ``EHLO``;
``"none"``: clear text), ``AUTH`` when a username is set, then ``MAIL FROM``, ``RCPT TO`` per
recipient and ``DATA``; the server answers ``250`` to each. Connection failures and ``4xx``
replies raise ``TransientNodeError`` (retried); a rejected login (``535``), an untrusted
certificate and other ``5xx`` replies raise ``PermanentNodeError``.

With a connected mailbox (``credential`` ``google/<name>`` or ``microsoft/<name>``) the same
message is sent by the mailbox's API, From the connected account: Gmail ``POST
/gmail/v1/users/me/messages/send`` with ``{"raw": <base64url RFC 5322 message>}``, or Microsoft
Graph ``POST /v1.0/me/sendMail`` with the message as Graph JSON. A refused token (401/403) raises
``CredentialInvalid`` (reconnect it), 408/425/429/5xx and connection errors
``TransientNodeError``, any other 4xx ``PermanentNodeError``.

Subject, text and HTML are templates rendered in a jinja2 sandbox over ``context``; an undefined
name is an error, and values in the HTML part are HTML-escaped.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Literal, cast

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from prefect import get_run_logger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agency.egress import open_smtp
from agency.errors import AgencyError, PermanentNodeError, TransientNodeError
from blocks import SmtpCredential
from nodes._base import (
    CredentialInput,
    NodeOutput,
    NodeSpec,
    credential_ref,
    node_task,
    resolve_credential,
)
from nodes._oauth import ConnectedAccount, connected_account

KIND = "send_email"
CREDENTIAL_KIND = "smtp"
#: connected mailboxes send_email can send through (``<kind>/<name>``)
MAILBOX_KINDS = ("google", "microsoft")

_TEXT_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


def _check_address(value: str) -> str:
    _, address = parseaddr(value)
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ValueError(f"not an email address: {value!r}")
    return value


class Attachment(BaseModel):
    """A file attached to the message."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(title="File name", description="Name shown to the recipient.")
    content: str = Field(title="Content", description="The file, as text or base64.")
    encoding: Literal["text", "base64"] = Field(
        default="text", title="Encoding", description="How `content` is given."
    )
    mime_type: str | None = Field(
        default=None,
        title="MIME type",
        description="e.g. text/csv; guessed from the file name when empty.",
    )

    @model_validator(mode="after")
    def _decodable(self) -> Attachment:
        self.payload()
        return self

    def payload(self) -> bytes:
        """The attachment's bytes."""
        if self.encoding == "text":
            return self.content.encode()
        try:
            return base64.b64decode(self.content, validate=True)
        except binascii.Error:
            raise ValueError(f"attachment {self.filename!r} is not valid base64") from None

    def content_type(self) -> tuple[str, str]:
        """(maintype, subtype)."""
        mime = self.mime_type or mimetypes.guess_type(self.filename)[0]
        mime = mime or "application/octet-stream"
        maintype, _, subtype = mime.partition("/")
        return maintype, subtype or "octet-stream"


class SendEmailInput(CredentialInput):
    """One email: templates, the values they are rendered with, recipients, attachments."""

    credential: str = Field(
        title="Credential",
        description=(
            "Name of the client's smtp credential, or google/<name> / microsoft/<name> for a "
            "connected mailbox (a reference, never a value)."
        ),
    )
    to: list[str] = Field(min_length=1, title="To", description="Recipient addresses.")
    cc: list[str] = Field(default_factory=list, title="Cc", description="Copy recipients.")
    bcc: list[str] = Field(
        default_factory=list, title="Bcc", description="Hidden recipients (no header)."
    )
    reply_to: str | None = Field(default=None, title="Reply-To", description="Reply address.")
    subject: str = Field(title="Subject", description="jinja2 template of the subject line.")
    text: str = Field(title="Text body", description="jinja2 template of the plain-text part.")
    html: str | None = Field(
        default=None,
        title="HTML body",
        description="jinja2 template of the HTML part (values are HTML-escaped).",
    )
    context: dict[str, Any] = Field(
        default_factory=dict, title="Context", description="Values the templates see."
    )
    attachments: list[Attachment] = Field(
        default_factory=list, title="Attachments", description="Files to attach."
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        title="Timeout",
        description="Seconds per SMTP socket operation or mailbox API request.",
    )

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return [_check_address(v) for v in values]

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return _check_address(value) if value is not None else None


class SendEmailOutput(NodeOutput):
    """What the SMTP server (or the mailbox API) accepted."""

    message_id: str = Field(title="Message-ID", description="The Message-ID header sent.")
    accepted: list[str] = Field(title="Accepted", description="Recipients the server accepted.")
    refused: list[str] = Field(
        default_factory=list, title="Refused", description="Recipients the server refused."
    )


def _render(env: SandboxedEnvironment, part: str, source: str, context: dict[str, Any]) -> str:
    try:
        return env.from_string(source).render(context)
    except TemplateError as exc:
        raise PermanentNodeError(f"The {part} template cannot be rendered: {exc}") from exc


def build_message(params: SendEmailInput, from_address: str) -> EmailMessage:
    """Render the templates and assemble the MIME message (multipart/alternative when HTML)."""
    subject = _render(_TEXT_ENV, "subject", params.subject, params.context)
    text = _render(_TEXT_ENV, "text", params.text, params.context)
    html = _render(_HTML_ENV, "html", params.html, params.context) if params.html else None

    message = EmailMessage()
    message["Subject"] = " ".join(subject.split())  # a header cannot span rendered newlines
    message["From"] = from_address
    message["To"] = ", ".join(params.to)
    if params.cc:
        message["Cc"] = ", ".join(params.cc)
    if params.reply_to:
        message["Reply-To"] = params.reply_to
    message["Date"] = formatdate(localtime=True)
    domain = parseaddr(from_address)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in params.attachments:
        maintype, subtype = attachment.content_type()
        message.add_attachment(
            attachment.payload(), maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reply_error(where: str, code: int, reply: bytes | str) -> AgencyError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    error: type[AgencyError] = TransientNodeError if 400 <= code < 500 else PermanentNodeError
    return error(f"SMTP server {where} answered {code}: {text}")


def _graph_address(value: str) -> dict[str, Any]:
    name, address = parseaddr(value)
    return {"emailAddress": {"address": address, **({"name": name} if name else {})}}


def graph_message(message: EmailMessage, params: SendEmailInput) -> dict[str, Any]:
    """The Microsoft Graph ``sendMail`` body for a message built by :func:`build_message`."""
    body = cast(EmailMessage, message.get_body(("html", "plain")))  # build_message sets one
    graph: dict[str, Any] = {
        "subject": message["Subject"],
        "body": {
            "contentType": "HTML" if body.get_content_type() == "text/html" else "Text",
            "content": body.get_content(),
        },
        "toRecipients": [_graph_address(a) for a in params.to],
        "ccRecipients": [_graph_address(a) for a in params.cc],
        "bccRecipients": [_graph_address(a) for a in params.bcc],
        "internetMessageId": message["Message-ID"],
    }
    if params.reply_to:
        graph["replyTo"] = [_graph_address(params.reply_to)]
    attachments = [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": part.get_filename(),
            "contentType": part.get_content_type(),
            "contentBytes": base64.b64encode(part.get_payload(decode=True)).decode(),
        }
        for part in message.iter_attachments()
    ]
    if attachments:
        graph["attachments"] = attachments
    return {"message": graph, "saveToSentItems": True}


def _send_with_mailbox(params: SendEmailInput) -> SendEmailOutput:
    """Send through a connected Gmail or Microsoft 365 mailbox, From the connected account."""
    account: ConnectedAccount = connected_account(
        params.client, params.credential, CREDENTIAL_KIND, MAILBOX_KINDS
    )
    message = build_message(params, account.credential.account)
    if account.kind == "google":
        if params.bcc:  # Gmail reads Bcc from the message and strips it before delivery
            message["Bcc"] = ", ".join(params.bcc)
        raw = base64.urlsafe_b64encode(message.as_bytes(policy=SMTP)).decode()
        url = f"{account.provider.api_url('gmail')}/gmail/v1/users/me/messages/send"
        account.call("POST", url, "Gmail send", params.timeout_seconds, json={"raw": raw})
    else:
        url = f"{account.provider.api_url('graph')}/v1.0/me/sendMail"
        body = graph_message(message, params)
        account.call("POST", url, "Outlook send", params.timeout_seconds, json=body)
    recipients = [*params.to, *params.cc, *params.bcc]
    get_run_logger().info(
        "Sent %s to %d recipient(s) via %s mailbox '%s'",
        message["Message-ID"],
        len(recipients),
        account.title,
        account.name,
    )
    return SendEmailOutput(message_id=message["Message-ID"], accepted=recipients)


@node_task(KIND, timeout_seconds=120)
def send_email(params: SendEmailInput) -> SendEmailOutput:
    """Send one email through the client's SMTP account or connected mailbox; return its
    Message-ID and recipients.

    Example::

        send_email(SendEmailInput(client="acme", credential="default", to=["a@example.com"],
                                  subject="Hello {{ name }}", text="Hi {{ name }}",
                                  html="<p>Hi <b>{{ name }}</b></p>", context={"name": "Ann"}))
    """
    if credential_ref(params.credential, CREDENTIAL_KIND)[0] != CREDENTIAL_KIND:
        return _send_with_mailbox(params)
    cred = resolve_credential(params.client, CREDENTIAL_KIND, params.credential, SmtpCredential)
    message = build_message(params, cred.from_address)
    recipients = [*params.to, *params.cc, *params.bcc]
    where = f"{cred.host}:{cred.port}"
    context = _tls_context(cred.verify_tls)
    try:
        smtp = open_smtp(
            cred.host,
            cred.port,
            security=cred.security,
            context=context,
            timeout=params.timeout_seconds,
        )
        with smtp:
            if cred.username:
                password = cred.password.get_secret_value() if cred.password else ""
                smtp.login(cred.username, password)
            refused_map = smtp.send_message(
                message, from_addr=parseaddr(cred.from_address)[1], to_addrs=recipients
            )
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentNodeError(
            f"SMTP server {where} rejected the login of user '{cred.username}' "
            f"({exc.smtp_code}); check the '{params.credential}' smtp credential."
        ) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error = TransientNodeError if all(400 <= c < 500 for c in codes) else PermanentNodeError
        detail = "; ".join(f"{addr}: {code}" for addr, (code, _) in exc.recipients.items())
        raise error(f"SMTP server {where} refused every recipient ({detail}).") from exc
    except smtplib.SMTPResponseException as exc:
        raise _reply_error(where, exc.smtp_code, exc.smtp_error) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentNodeError(f"SMTP server {where} does not support this: {exc}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise TransientNodeError(f"SMTP server {where} disconnected: {exc}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise PermanentNodeError(
            f"SMTP server {where} presented a certificate that is not trusted "
            f"({exc.verify_message}); set verify_tls to false only for a self-signed server."
        ) from exc
    except smtplib.SMTPException as exc:  # before OSError, its base class
        raise PermanentNodeError(f"SMTP server {where}: {exc}") from exc
    except OSError as exc:  # refused, reset, timed out, TLS handshake failed
        raise TransientNodeError(
            f"Cannot talk to SMTP server {where}: {type(exc).__name__}: {exc}"
        ) from exc

    refused = sorted(refused_map)
    accepted = [r for r in recipients if r not in refused_map]
    get_run_logger().info(
        "Sent %s to %d recipient(s) via %s", message["Message-ID"], len(accepted), where
    )
    return SendEmailOutput(message_id=message["Message-ID"], accepted=accepted, refused=refused)


SPEC = NodeSpec(
    kind=KIND,
    title="Send email",
    description=(
        "Send an email over the client's SMTP account or a connected Gmail / Microsoft 365 "
        "mailbox (credential google/<name> or microsoft/<name>): subject, text and HTML bodies "
        "are jinja2 templates rendered over a context; attachments allowed."
    ),
    input_model=SendEmailInput,
    output_model=SendEmailOutput,
    credential_kind=CREDENTIAL_KIND,
    task=send_email,
    example={
        "client": "acme",
        "credential": "default",
        "to": ["team@example.com"],
        "subject": "Hello {{ name }}",
        "text": "Hi {{ name }}",
        "html": "<p>Hi <b>{{ name }}</b></p>",
        "context": {"name": "Ann"},
    },
)
