"""Why a run failed, in one sentence a client understands, with what to do about it.

Prefect keeps a failure as the state's message: ``"Flow run encountered an exception:
CredentialMissing: Client 'acme' has no 'smtp' credential named 'default'. ..."`` (flow) or
``"Task run encountered an exception PermanentNodeError: ..."`` (task). :func:`explain` maps
such a message (or :func:`explain_exception` an exception) to plain words. The sentence never
carries an exception's class name, a traceback or the raw message: what is not recognised
becomes :data:`OUR_SIDE`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from blocks.words import kind_words

OUR_SIDE = "The run failed on our side; your agency has been told."
CANCELLED = "The run was cancelled before it finished: press Retry to run it again."

#: what a client calls each credential kind

_PREFIXES = (
    "Flow run encountered an exception:",
    "Task run encountered an exception",
    "Execution was interrupted by an unexpected exception:",
)
_CLASS = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*):\s+(.*)$", re.S)
_MISSING = re.compile(r"has no '([\w-]+)' credential named '([^']+)'")
_RECONNECT = re.compile(
    r"Your (.+?) connection '[^']*' is no longer authori[sz]ed|(.+?) refused the connection"
)
_REFUSING = re.compile(r"Refusing to connect to (.+?): ")
_ANSWERED = re.compile(r"^(.*?) answered (\d{3})\b")
_URL = re.compile(r"https?://[^\s'\"()<>,;]+")
_HOST = re.compile(r"(?:SMTP server|Cannot resolve|LLM endpoint) \[?([\w.-]+)")
_TRANSIENT_HINTS = (
    "timed out",
    "did not answer",
    "cannot reach",
    "cannot talk to",
    "disconnected",
    "connecterror",
    "connecttimeout",
    "readtimeout",
    "remoteprotocolerror",
    "connection reset",
    "connection refused",
    "cannot resolve",
)


def _kind_words(kind: str) -> str:
    return kind_words(kind).title


def _a(words: str) -> str:
    return f"{'an' if words[:1].lower() in 'aeiou' else 'a'} {words}"


def _split(message: str) -> tuple[str | None, str]:
    """``(exception class name or None, the rest)`` of a Prefect state message."""
    text = message.strip()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    found = _CLASS.match(text)
    if found:
        return found.group(1), found.group(2).strip()
    return None, text


def _service(text: str) -> str:
    """The host a message names (the URL's, or the SMTP server's), else ``"the service"``."""
    url = _URL.search(text)
    if url:
        return urlsplit(url.group(0)).hostname or "the service"
    host = _HOST.search(text)
    if host:
        return host.group(1)
    return "the service"


def _address(text: str) -> str:
    url = _URL.search(text)
    return url.group(0).rstrip(".:") if url else "the address in the workflow's settings"


def _unreachable(service: str, retries: int) -> str:
    tries = {0: "", 1: "; the run was retried once"}.get(
        retries, f"; the run was retried {retries} times"
    )
    return (
        f"The service {service} did not answer{tries}. "
        f"It will work again when {service} is back — press Retry."
    )


def _http(status: int, where: str, text: str, retries: int) -> str | None:
    service = _service(where or text)
    if where.startswith("SMTP server"):
        if status == 535:
            return "Your mail server refused the login: check the password in Credentials."
        return _unreachable(service, retries) if 400 <= status < 500 else None
    if status in (401, 403):
        return f"Your API ({service}) answered {status}: check the key in Credentials."
    if status == 404:
        return (
            f"The address {_address(where)} was not found (404): "
            "check it in the workflow's settings."
        )
    if status in (408, 425, 429) or status >= 500:
        return _unreachable(service, retries)
    return None


def explain(message: str | None, *, retries: int = 0) -> str:
    """One plain sentence for a failed run's state message; ``retries``: how often the failing
    step was tried again. Unknown failures answer :data:`OUR_SIDE`."""
    if not message:
        return OUR_SIDE
    name, text = _split(message)
    missing = _MISSING.search(text)
    if missing or name == "CredentialMissing":
        kind, cred = missing.groups() if missing else ("needed", "default")
        return (
            f"The workflow needs {_a(_kind_words(kind))} credential named “{cred}”: "
            "add it under Credentials."
        )
    reconnect = _RECONNECT.search(text)
    if reconnect:
        provider = (reconnect.group(1) or reconnect.group(2) or "").strip()
        return (
            f"Your {provider} connection needs reconnecting: open Credentials and press Reconnect."
        )
    refusing = _REFUSING.search(text)
    if refusing or name == "EgressRefused":
        host = refusing.group(1) if refusing else "you gave"
        return (
            f"The address {host} is not reachable from the platform (private network). "
            "Ask your agency."
        )
    if "rejected the login" in text or "SMTPAuthenticationError" in text:
        return "Your mail server refused the login: check the password in Credentials."
    if name == "CredentialInvalid":
        kind = re.search(r"Invalid '([\w-]+)' credential", text)
        what = _kind_words(kind.group(1)) if kind else "a"
        return f"Your {what} credential is not complete or not valid: check it under Credentials."
    answered = _ANSWERED.search(text)
    if answered:
        words = _http(int(answered.group(2)), answered.group(1), text, retries)
        if words:
            return words
    lowered = text.lower()
    if name == "TransientNodeError" or any(hint in lowered for hint in _TRANSIENT_HINTS):
        return _unreachable(_service(text), retries)
    return OUR_SIDE


def explain_exception(exc: BaseException, *, retries: int = 0) -> str:
    """:func:`explain` for an exception, as Prefect would have written it into the state."""
    return explain(f"{type(exc).__name__}: {exc}", retries=retries)


__all__ = ["CANCELLED", "OUR_SIDE", "explain", "explain_exception"]
