""" "Test connection" per credential kind: log in to the counterpart and report in one sentence.

Every address goes through the egress guard first (:mod:`agency.egress`), as in a run. What goes
over the wire, per kind:

- ``smtp``: connect (STARTTLS / TLS / plain), ``EHLO``, ``AUTH LOGIN`` when a username is set,
  ``QUIT``; 235 is success, 535 a refused login.
- ``openai``: ``GET {base_url}/models`` with ``Authorization: Bearer``; 200 lists the models.
- ``postgres``: connect and ``SELECT 1``.
- ``http_auth``: ``GET <probe url>`` with the credential applied; 401/403 means refused.
- ``s3``: ``HEAD /{bucket}`` (HeadBucket); 403 is refused, 404 no such bucket.

Messages never carry a secret value; a secret met in an exception text is not echoed.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from agency.egress import (
    EgressRefused,
    egress_policy,
    guarded_client,
    open_smtp,
    postgres_target,
)
from agency.errors import InputInvalid, TransientNodeError
from agency.settings import Settings
from blocks import load_credential, parse_credential
from blocks.kinds import (
    CredentialModel,
    HttpAuthCredential,
    OpenAICredential,
    PostgresCredential,
    S3Credential,
    SmtpCredential,
)
from services.audit import audit
from services.auth import Principal, scope_client
from services.clients import get_client_record
from services.scoping import client_session

TIMEOUT = 10.0
TESTABLE_KINDS = ("smtp", "openai", "postgres", "http_auth", "s3")


@dataclass(frozen=True)
class ConnectionResult:
    """The outcome of one connection test, as a sentence for the user."""

    ok: bool
    message: str
    #: the refusal of the egress guard, when it stopped the test before any connection
    refused: EgressRefused | None = None


def _smtp(cred: SmtpCredential) -> ConnectionResult:
    context = ssl.create_default_context()
    if not cred.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        server = open_smtp(
            cred.host, cred.port, security=cred.security, context=context, timeout=TIMEOUT
        )
        with server:
            server.ehlo()
            if cred.username:
                password = cred.password.get_secret_value() if cred.password else ""
                server.login(cred.username, password)
    except smtplib.SMTPAuthenticationError:
        return ConnectionResult(False, f"{cred.host} refused the username or password.")
    except (OSError, smtplib.SMTPException) as exc:
        return ConnectionResult(False, f"Could not talk to {cred.host}:{cred.port} ({_kind(exc)}).")
    who = f" as {cred.username}" if cred.username else ""
    return ConnectionResult(True, f"Connected to {cred.host}:{cred.port}{who}.")


def _openai(cred: OpenAICredential) -> ConnectionResult:
    base = (cred.base_url or "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {cred.api_key.get_secret_value()}"}
    if cred.organization:
        headers["OpenAI-Organization"] = cred.organization
    try:
        with guarded_client(timeout=TIMEOUT) as http:
            response = http.get(f"{base}/models", headers=headers)
    except httpx.HTTPError as exc:
        return ConnectionResult(False, f"Could not reach {base} ({_kind(exc)}).")
    if response.status_code in (401, 403):
        return ConnectionResult(False, f"{base} refused the API key.")
    if response.status_code != 200:
        return ConnectionResult(False, f"{base} answered HTTP {response.status_code}.")
    try:
        count = len(response.json().get("data", []))
    except ValueError:
        return ConnectionResult(False, f"{base} did not answer like an OpenAI-compatible API.")
    return ConnectionResult(True, f"Connected to {base}: {count} model(s) available.")


def _postgres(cred: PostgresCredential) -> ConnectionResult:
    import psycopg

    try:
        with psycopg.connect(
            **postgres_target(cred.host, cred.port),
            dbname=cred.database,
            user=cred.username,
            password=cred.password.get_secret_value() if cred.password else None,
            sslmode=cred.sslmode,
            connect_timeout=int(TIMEOUT),
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.OperationalError as exc:
        text = str(exc).lower()
        if "authentication" in text or "password" in text:
            return ConnectionResult(False, f"{cred.host} refused the login for {cred.username}.")
        if "does not exist" in text:
            return ConnectionResult(False, f"Database or role does not exist on {cred.host}.")
        return ConnectionResult(False, f"Could not connect to {cred.host}:{cred.port}.")
    return ConnectionResult(True, f"Connected to {cred.database} on {cred.host}:{cred.port}.")


def _http_auth(cred: HttpAuthCredential, probe_url: str | None) -> ConnectionResult:
    if not probe_url or not probe_url.startswith(("http://", "https://")):
        raise InputInvalid("Enter the address of a page of your API to test this credential.")
    auth = None
    if cred.scheme == "basic":
        password = cred.password.get_secret_value() if cred.password else ""
        auth = httpx.BasicAuth(cred.username or "", password)
    try:
        with guarded_client(timeout=TIMEOUT) as http:
            response = http.get(probe_url, headers=cred.headers(), auth=auth)
    except httpx.HTTPError as exc:
        return ConnectionResult(False, f"Could not reach {probe_url} ({_kind(exc)}).")
    if response.status_code in (401, 403):
        return ConnectionResult(False, f"{probe_url} refused the credential.")
    if response.status_code >= 400:
        return ConnectionResult(False, f"{probe_url} answered HTTP {response.status_code}.")
    return ConnectionResult(True, f"{probe_url} accepted the credential.")


def _s3(cred: S3Credential) -> ConnectionResult:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    if cred.endpoint_url:
        egress_policy().check_url(cred.endpoint_url)
    client = boto3.client(
        "s3",
        aws_access_key_id=cred.access_key_id,
        aws_secret_access_key=cred.secret_access_key.get_secret_value(),
        region_name=cred.region,
        endpoint_url=cred.endpoint_url,
        config=Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"max_attempts": 1}),
    )
    try:
        client.head_bucket(Bucket=cred.bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return ConnectionResult(False, f"Bucket {cred.bucket} does not exist.")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return ConnectionResult(False, f"Access to bucket {cred.bucket} was refused.")
        return ConnectionResult(False, f"Bucket {cred.bucket} check failed ({code}).")
    except BotoCoreError as exc:
        return ConnectionResult(False, f"Could not reach S3 ({_kind(exc)}).")
    return ConnectionResult(True, f"Bucket {cred.bucket} is reachable.")


def _kind(exc: BaseException) -> str:
    """A secret-free description of a network error: its class name only."""
    return type(exc).__name__


def check_credential(cred: CredentialModel, probe_url: str | None = None) -> ConnectionResult:
    """Try the credential against its counterpart; never raises for a refused or failed login.

    An address the egress guard refuses gives the guard's own words, as a run would get them.
    """
    try:
        return _check(cred, probe_url)
    except EgressRefused as exc:
        return ConnectionResult(False, str(exc), refused=exc)
    except TransientNodeError as exc:  # the host name does not resolve
        return ConnectionResult(False, str(exc))


def _check(cred: CredentialModel, probe_url: str | None) -> ConnectionResult:
    if isinstance(cred, SmtpCredential):
        return _smtp(cred)
    if isinstance(cred, OpenAICredential):
        return _openai(cred)
    if isinstance(cred, PostgresCredential):
        return _postgres(cred)
    if isinstance(cred, HttpAuthCredential):
        return _http_auth(cred, probe_url)
    if isinstance(cred, S3Credential):
        return _s3(cred)
    return ConnectionResult(False, "This kind of credential cannot be tested without using it.")


def check_connection(
    settings: Settings,
    principal: Principal,
    kind: str,
    *,
    data: dict[str, Any] | None = None,
    name: str | None = None,
    probe_url: str | None = None,
    client: str | None = None,
) -> ConnectionResult:
    """Test entered ``data``, or the client's stored credential ``name``; audited (no values)."""
    slug = scope_client(principal, client)
    if data is not None:
        cred = parse_credential(kind, data)
    elif name is not None:
        cred = load_credential(slug, kind, name)
    else:
        raise InputInvalid("Enter the credential or choose a stored one to test.")
    result = check_credential(cred, probe_url)
    with client_session(settings, slug) as session:
        audit(
            session,
            actor=principal.email,
            action="credential.test",
            target=f"{kind}/{name or '(entered)'}",
            client_id=get_client_record(session, slug).id,
            detail={"ok": result.ok},
        )
        if result.refused is not None:
            audit(
                session,
                actor=principal.email,
                action="egress.refused",
                target=result.refused.host[:200],
                client_id=get_client_record(session, slug).id,
                detail={"client": slug, "via": "credential.test", "reason": result.refused.reason},
            )
    return result


__all__ = ["TESTABLE_KINDS", "ConnectionResult", "check_connection", "check_credential"]
