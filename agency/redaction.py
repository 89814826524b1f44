"""Mask secret values in log records.

Prefect does not redact secrets in logs: a revealed ``SecretStr`` passed to ``get_run_logger()`` or
printed with ``log_prints`` would reach the API's ``log`` table in plain text. Every secret loaded
in this process is registered here, and a filter on every logging handler replaces it with
``********`` before the record is formatted or shipped to the API.
"""

from __future__ import annotations

import logging
import threading

MASK = "********"
_MIN_LENGTH = 4  # masking 1-3 character "secrets" would garble ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Remember secret values so that any log record containing them is masked."""
    with _lock:
        for value in values:
            if isinstance(value, str) and len(value) >= _MIN_LENGTH:
                _secrets.add(value)
    install_redaction_filter()


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``MASK`` (longest first)."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites the record's message and traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_redaction_filter() -> None:
    """Attach the filter to every handler of every configured logger (idempotent)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
