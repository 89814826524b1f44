"""The signed-in session: settings, the principal in ``st.session_state``, plain-sentence errors.

Pages never query anything themselves: they take the principal from here and call
``services``; errors become one sentence on the page, never a traceback.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import streamlit as st

from agency.errors import AgencyError, AuthFailed
from agency.settings import Settings, get_settings
from services.auth import Principal, check_session

PRINCIPAL_KEY = "principal"
ACTING_CLIENT_KEY = "acting_client"
FLASH_KEY = "flash"  # shown on the sign-in page
NOTICE_KEY = "notice"  # shown once (a toast) on the next page of a signed-in user
GO_HOME_KEY = "go_home"  # set to open the signed-in user's first page on the next run
log = logging.getLogger("agency.portal")


def settings() -> Settings:
    """The platform settings of this portal process."""
    return get_settings()


def current_principal() -> Principal | None:
    """The signed-in principal, re-checked against the platform DB, or ``None``.

    A session that is over (expired, user removed, password or role changed, client suspended)
    is dropped with its reason shown on the sign-in page. A user who must still replace a
    temporary password is returned (``must_change_password``): the router shows them only the
    password page, and every service refuses them anything else.
    """
    who = st.session_state.get(PRINCIPAL_KEY)
    if who is None:
        return None
    try:
        checked = check_session(who, allow_password_change=True)
    except AuthFailed as exc:
        st.session_state.pop(PRINCIPAL_KEY, None)
        st.session_state[FLASH_KEY] = str(exc)
        return None
    if checked is not who:
        st.session_state[PRINCIPAL_KEY] = checked
    return checked


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


def send_file(filename: str, content: bytes) -> None:
    """Hand ``content`` to this signed-in browser session only, as a download of ``filename``.

    Unlike ``st.download_button``, nothing goes to Streamlit's media store: that store serves
    every file it holds at ``/media/<id>`` to any request, signed in or not, until it collects
    the file. Here the bytes travel inside the page's own update over the session's websocket
    (an ``st.iframe`` of inline HTML) and become a ``blob:`` link that exists only in this
    browser tab. Call it only with bytes a service has just released to the principal.
    """
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    # the HTML carries only base64 and JSON strings with "<" escaped: no markup of ours to break
    name = json.dumps(filename).replace("<", "\\u003c")
    kind = json.dumps(mimetype).replace("<", "\\u003c")
    page = f"""<!doctype html><meta charset="utf-8">
<style>body{{margin:0;font:14px sans-serif}}a{{color:inherit}}</style>
<a id="save" href="#">Save {html.escape(filename)}</a>
<script>
const bytes = Uint8Array.from(atob("{base64.b64encode(content).decode()}"), (c) => c.charCodeAt(0));
const link = document.getElementById("save");
link.href = URL.createObjectURL(new Blob([bytes], {{type: {kind}}}));
link.download = {name};
link.click();
</script>"""
    st.iframe(page, height=28, alt=f"Download {filename}")
