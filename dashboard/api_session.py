"""The API client a Streamlit session uses, the run options it caches, and how pages show the API's errors.

The dashboard holds no key of its own: each visitor types theirs into the sidebar (dashboard/access.py),
it stays in that browser session's st.session_state, and `get_client` sends it with that visitor's
requests only. The server process shares one connection pool, which carries no key.
"""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiClient, ApiError
from dashboard.models import RunOptions
from dashboard.settings import get_settings

# The run options change only when the API restarts with other limits; a minute keeps the form in step
# without asking the API on every rerun.
RUN_OPTIONS_TTL_S = 60
# st.session_state key of the visitor's key: the sidebar's password field (dashboard/access.py).
VISITOR_KEY = "api_key"


@st.cache_resource(show_spinner=False)
def shared_client() -> ApiClient:
    """One connection pool for the whole server process, without a key: never hand it out as it is."""
    settings = get_settings()
    return ApiClient(settings.api_url, timeout_s=settings.api_timeout_s)


def visitor_key() -> str | None:
    """The key this browser session's visitor entered in the sidebar, if any."""
    return (st.session_state.get(VISITOR_KEY) or "").strip() or None


def get_client() -> ApiClient:
    """A client for this session's visitor: the shared pool, with the visitor's key (or none)."""
    return shared_client().with_key(visitor_key())


@st.cache_data(ttl=RUN_OPTIONS_TTL_S, show_spinner=False)
def fetch_run_options(api_url: str, api_key: str | None) -> RunOptions:
    """GET /run-options of the API at `api_url` with `api_key` (both the cache's key: an API that protects
    reads answers a visitor with a key only); an ApiError is raised, not cached."""
    return shared_client().with_key(api_key).run_options()


def get_run_options() -> RunOptions:
    """The presets and the run schema with the server's limits, as the API answered them lately."""
    return fetch_run_options(get_settings().api_url, visitor_key())


def show_api_error(error: ApiError, action: str | None = None) -> None:
    """A readable error box; `action` says what the page was trying to do."""
    prefix = f"Could not {action}: " if action else ""
    if error.unreachable:
        st.error(f"{prefix}{error.message}", icon=":material/cloud_off:")
        st.caption(f"The dashboard looks for the API at `{get_settings().api_url}` (FF_API_URL).")
    elif error.status_code == 401:
        st.error(f"{prefix}{error.message}", icon=":material/lock:")
    else:
        st.error(f"{prefix}{error.message}", icon=":material/error:")
