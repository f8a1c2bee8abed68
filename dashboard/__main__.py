"""`python -m dashboard`: serve the Streamlit app headless on FF_DASHBOARD_PORT (default 8501)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from dashboard.settings import get_settings

APP = Path(__file__).with_name("app.py")

logger = logging.getLogger("dashboard")


def streamlit_command(port: int, address: str) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", address,
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    address = settings.dashboard_host
    command = streamlit_command(settings.dashboard_port, address)
    logger.info(
        "serving the dashboard on http://%s:%d (API: %s)", address, settings.dashboard_port, settings.api_url
    )
    # Replace this process so that signals from honcho/docker reach Streamlit directly.
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
