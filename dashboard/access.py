"""The visitor's key: the sidebar's password field, what the API says it allows, and the locks on pages.

The dashboard lends no key. On every run app.py calls `key_sidebar`, which draws the field and asks the
API (GET /access, with the visitor's key) which requests need a key and what this key allows; the answer
stays in the session for the pages and their fragments. `read_lock` tells app.py to ask for the key
before drawing a page, `write_lock` tells pages to disable their controls that change something. These
are for the visitor's sake: the API refuses a request without the right key whatever the dashboard shows.
"""

from __future__ import annotations

import streamlit as st

from dashboard.api_session import VISITOR_KEY, get_client, visitor_key
from dashboard.client import READ_KEY_NEEDED, WRITE_KEY_NEEDED, ApiError
from dashboard.models import Access

ACCESS = "access"  # session key: what GET /access answered on the session's last full run
READ_ONLY_KEY = "Your key only reads: this API needs its API key to change anything; enter it in the sidebar."
WRONG_KEY = "The API did not accept your key: enter the right one in the sidebar"


def ask_access() -> Access | None:
    """GET /access with the visitor's key, kept in the session for the pages' fragments; None when the API
    did not answer it (unreachable, or an API without /access: the pages say what is wrong, and the API
    still refuses what a key guards)."""
    try:
        access = get_client().access()
    except ApiError:
        access = None
    st.session_state[ACCESS] = access
    return access


def current_access() -> Access:
    """What GET /access answered on this session's last run; unknown counts as open."""
    return st.session_state.get(ACCESS) or Access()


def read_lock() -> str | None:
    """Why this visitor may see nothing (None: they may)."""
    if current_access().can_read:
        return None
    return READ_KEY_NEEDED if visitor_key() is None else f"{WRONG_KEY} to see anything."


def write_lock() -> str | None:
    """Why this visitor may change nothing (None: they may)."""
    access = current_access()
    if access.can_write:
        return None
    if visitor_key() is None:
        return WRITE_KEY_NEEDED
    if access.reads_need_key and access.can_read:
        return READ_ONLY_KEY
    return f"{WRONG_KEY} to change anything."


def write_lock_notice() -> bool:
    """Say why the controls below are disabled, if they are; True when they are."""
    lock = write_lock()
    # Always a container, empty once the key is in: the elements below keep their places, so that the
    # browser swaps them in place instead of showing stale copies while the page reruns.
    with st.container():
        if lock is not None:
            st.info(lock, icon=":material/lock:")
    return lock is not None


def key_sidebar() -> None:
    """The key field and what the API makes of it, in the sidebar: only when the API asks for a key (or a
    key was entered), so that an open API's pages keep their whole width."""
    access = ask_access()
    if visitor_key() is None and (access is None or not access.writes_need_key):
        return
    with st.sidebar:
        st.text_input(
            "API key",
            type="password",
            key=VISITOR_KEY,
            placeholder="X-API-Key",
            help="Your key for this API, if it asks for one. The dashboard keeps it in this browser tab's "
            "session only and sends it with your requests; reloading the page forgets it.",
        )
        if access is None:
            return
        if not access.writes_need_key:
            st.caption("This API asks no key: anyone who reaches it may change anything.")
        elif access.can_write and visitor_key() is not None:
            st.success("Your key may change things.", icon=":material/lock_open:")
        elif lock := read_lock() or write_lock():
            st.warning(lock, icon=":material/lock:")
