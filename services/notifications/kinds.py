"""The kinds of notification, in words for the people who switch them on and off."""

from __future__ import annotations

from dataclasses import dataclass

from agency.db.models import NOTIFICATION_KINDS


@dataclass(frozen=True)
class Kind:
    """One kind of notification: its slug, title and a one-line description."""

    slug: str
    title: str
    description: str


KINDS: dict[str, Kind] = {
    k.slug: k
    for k in (
        Kind("run_failed", "A run failed", "A workflow run failed after all its retries."),
        Kind(
            "approval_waiting",
            "An approval is waiting",
            "A run waits for someone to approve it or answer a question.",
        ),
        Kind(
            "run_late",
            "A scheduled run is late",
            "A scheduled run has not started within the time it usually needs.",
        ),
        Kind(
            "credential_broken",
            "A connection stopped working",
            "A credential or connected account your workflows use stopped working.",
        ),
    )
}
assert tuple(KINDS) == NOTIFICATION_KINDS

__all__ = ["KINDS", "Kind"]
