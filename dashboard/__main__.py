"""`python -m dashboard`: serve the Streamlit app headless on FF_DASHBOARD_PORT (default 8501)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from dashboard.settings import get_settings

APP = Path(__file__).with_name("app.py")
PRIMARY_COLOUR = "#2a9d8f"  # the teal of positive goodness in the charts and the logo

logger = logging.getLogger("dashboard")


def streamlit_args(port: int, address: str, app: Path = APP) -> list[str]:
    """`streamlit run` of `app` (the dashboard; a benchmark serves another page the same way)."""
    return [
        "streamlit", "run", str(app),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", address,
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--theme.primaryColor", PRIMARY_COLOUR,
    ]  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API request is noise
    settings = get_settings()
    address = settings.dashboard_host
    logger.info(
        "serving the dashboard on http://%s:%d (API: %s)", address, settings.dashboard_port, settings.api_url
    )
    from streamlit.web import cli

    sys.argv = streamlit_args(settings.dashboard_port, address)
    cli.main()


if __name__ == "__main__":
    main()
