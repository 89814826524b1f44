"""Notifications to clients' people and the agency: kinds, preferences, incidents, the sweep.

See docs/notifications.md. :func:`notify` records and delivers one incident (the credential
health check uses it); :func:`sweep` finds incidents on the Prefect API and delivers them.
"""

from services.notifications.delivery import (
    DeliveryReport,
    Incident,
    deliver_pending,
    notify,
    open_incident,
    send_digests,
)
from services.notifications.kinds import KINDS, Kind
from services.notifications.preferences import get_preferences, set_preferences
from services.notifications.sweep import SweepReport, detect, late_after, set_late_after, sweep

__all__ = [
    "KINDS",
    "DeliveryReport",
    "Incident",
    "Kind",
    "SweepReport",
    "deliver_pending",
    "detect",
    "get_preferences",
    "late_after",
    "notify",
    "open_incident",
    "send_digests",
    "set_late_after",
    "set_preferences",
    "sweep",
]
