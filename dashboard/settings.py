"""The dashboard's settings, read from `FF_*` environment variables.

The dashboard has its own small settings object (not fflab's): it runs in an image without
PyTorch or Redis and only needs to know where the REST API is. It holds no API key: each visitor enters
their own in the sidebar (dashboard/access.py), and FF_API_KEY in its environment is ignored.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FF_", extra="ignore")

    api_url: str = Field("http://127.0.0.1:8000", description="Base URL of the FF Lab REST API.")
    dashboard_host: str = Field(
        "127.0.0.1", description="Address `python -m dashboard` listens on (0.0.0.0 in a container)."
    )
    dashboard_port: int = Field(8501, ge=1, le=65535, description="Port `python -m dashboard` serves on.")
    api_timeout_s: float = Field(10.0, gt=0, description="How long one request to the API may take.")
    refresh_s: float = Field(
        1.0, gt=0, le=60, description="How often the live pages poll the API for new metrics."
    )


@lru_cache
def get_settings() -> DashboardSettings:
    return DashboardSettings()
