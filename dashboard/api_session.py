"""The API client a Streamlit session uses, and how pages show the API's errors."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiClient, ApiError
from dashboard.settings import get_settings


@st.cache_resource(show_spinner=False)
def get_client() -> ApiClient:
    """One client (and connection pool) for the whole server process."""
    settings = get_settings()
    return ApiClient(settings.api_url, api_key=settings.api_key, timeout_s=settings.api_timeout_s)


def show_api_error(error: ApiError, action: str | None = None) -> None:
    """A readable error box; `action` says what the page was trying to do."""
    prefix = f"Could not {action}: " if action else ""
    if error.unreachable:
        st.error(f"{prefix}{error.message}", icon=":material/cloud_off:")
        st.caption(f"The dashboard looks for the API at `{get_settings().api_url}` (FF_API_URL).")
    else:
        st.error(f"{prefix}{error.message}", icon=":material/error:")
