"""The signed-in session: settings, the principal in ``st.session_state``, plain-sentence errors.

Pages never query anything themselves: they take the principal from here and call
``services``; errors become one sentence on the page, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import streamlit as st

from agency.errors import AgencyError, AuthFailed
from agency.settings import Settings, get_settings
from services.auth import Principal, check_session

PRINCIPAL_KEY = "principal"
ACTING_CLIENT_KEY = "acting_client"
FLASH_KEY = "flash"
log = logging.getLogger("agency.portal")


def settings() -> Settings:
    """The platform settings of this portal process."""
    return get_settings()


def current_principal() -> Principal | None:
    """The signed-in principal, or ``None`` (an expired session is dropped with a notice)."""
    who = st.session_state.get(PRINCIPAL_KEY)
    if who is None:
        return None
    try:
        return check_session(who)
    except AuthFailed as exc:
        del st.session_state[PRINCIPAL_KEY]
        st.session_state[FLASH_KEY] = str(exc)
        return None


def principal() -> Principal:
    """The signed-in principal; stop the page (back to sign-in) when there is none."""
    who = current_principal()
    if who is None:
        st.rerun()
    assert who is not None
    return who


def acting_client() -> str | None:
    """For agency staff, the client chosen in the sidebar; ``None`` for client users."""
    who = current_principal()
    if who is None or not who.is_agency:
        return None
    return st.session_state.get(ACTING_CLIENT_KEY)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Show platform errors as one plain sentence; never a traceback."""
    try:
        yield
    except AuthFailed as exc:
        st.session_state.pop(PRINCIPAL_KEY, None)
        st.session_state[FLASH_KEY] = str(exc)
        st.rerun()
    except AgencyError as exc:
        st.error(str(exc))
    except httpx.HTTPError:
        st.error("The workflow engine cannot be reached right now. Please try again shortly.")
    except Exception:
        log.exception("portal page failed")
        st.error("Something went wrong on our side. Please try again; we have been notified.")
