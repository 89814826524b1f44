"""SMTP and PostgreSQL connections to client-supplied hosts, pinned to the checked address.

``smtplib`` resolves a name when it opens its socket; :class:`GuardedSMTP` and
:class:`GuardedSMTP_SSL` open it to the address :meth:`EgressPolicy.check` answered instead, and
keep the name for the TLS server name (``SMTP_SSL``, ``STARTTLS``) and certificate checks.
For PostgreSQL, :func:`postgres_target` gives libpq both ``host`` (TLS, ``.pgpass``) and the
checked ``hostaddr`` (what it connects to); Unix-socket paths and host lists are refused.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Any

from agency.egress.policy import EgressPolicy, EgressRefused, egress_policy


class GuardedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` whose socket goes to the address the egress policy checked."""

    def __init__(self, *args: Any, policy: EgressPolicy | None = None, **kwargs: Any) -> None:
        self._policy = policy or egress_policy()
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        address = self._policy.check(host, port)[0]
        return socket.create_connection((str(address), port), timeout, self.source_address)


class GuardedSMTP_SSL(smtplib.SMTP_SSL):  # noqa: N801 - named like smtplib's class
    """``smtplib.SMTP_SSL`` whose socket goes to the checked address; TLS names ``host``."""

    def __init__(self, *args: Any, policy: EgressPolicy | None = None, **kwargs: Any) -> None:
        self._policy = policy or egress_policy()
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        address = self._policy.check(host, port)[0]
        raw = socket.create_connection((str(address), port), timeout, self.source_address)
        return self.context.wrap_socket(raw, server_hostname=host)


def open_smtp(
    host: str,
    port: int,
    *,
    security: str,
    context: ssl.SSLContext,
    timeout: float,
    policy: EgressPolicy | None = None,
) -> smtplib.SMTP:
    """A connected SMTP session (``security``: ``tls``, ``starttls`` or ``none``), STARTTLS done.

    Over the wire: connect (TLS first for ``tls``), ``EHLO``, and ``STARTTLS`` + ``EHLO`` for
    ``starttls``. Raises ``EgressRefused`` before any connection to a refused address.
    """
    if security == "tls":
        smtp: smtplib.SMTP = GuardedSMTP_SSL(
            host, port, timeout=timeout, context=context, policy=policy
        )
    else:
        smtp = GuardedSMTP(host, port, timeout=timeout, policy=policy)
    try:
        if security == "starttls":
            smtp.starttls(context=context)
    except BaseException:
        smtp.close()
        raise
    return smtp


def postgres_target(host: str, port: int, policy: EgressPolicy | None = None) -> dict[str, Any]:
    """libpq keywords ``host``, ``hostaddr`` and ``port`` for one checked server."""
    if not host or host.startswith(("/", "@")) or "," in host:
        raise EgressRefused(
            host or "(empty)", "only one network host name or address is accepted, not a socket"
        )
    address = (policy or egress_policy()).check(host, port)[0]
    return {"host": host, "hostaddr": str(address), "port": port}
