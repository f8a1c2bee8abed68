"""The API client a Streamlit session uses, the run options it caches, and how pages show the API's errors."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiClient, ApiError
from dashboard.models import RunOptions
from dashboard.settings import get_settings

# The run options change only when the API restarts with other limits; a minute keeps the form in step
# without asking the API on every rerun.
RUN_OPTIONS_TTL_S = 60


@st.cache_resource(show_spinner=False)
def get_client() -> ApiClient:
    """One client (and connection pool) for the whole server process."""
    settings = get_settings()
    return ApiClient(settings.api_url, api_key=settings.api_key, timeout_s=settings.api_timeout_s)


@st.cache_data(ttl=RUN_OPTIONS_TTL_S, show_spinner=False)
def fetch_run_options(api_url: str) -> RunOptions:
    """GET /run-options of the API at `api_url` (the cache's key); an ApiError is raised, not cached."""
    return get_client().run_options()


def get_run_options() -> RunOptions:
    """The presets and the run schema with the server's limits, as the API answered them lately."""
    return fetch_run_options(get_settings().api_url)


def show_api_error(error: ApiError, action: str | None = None) -> None:
    """A readable error box; `action` says what the page was trying to do."""
    prefix = f"Could not {action}: " if action else ""
    if error.unreachable:
        st.error(f"{prefix}{error.message}", icon=":material/cloud_off:")
        st.caption(f"The dashboard looks for the API at `{get_settings().api_url}` (FF_API_URL).")
    else:
        st.error(f"{prefix}{error.message}", icon=":material/error:")
