"""FF Lab's dashboard: `streamlit run dashboard/app.py` (or `python -m dashboard`).

The entry point only sets up the page and the navigation; each page lives in dashboard/pages/.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).parent / "pages"
LOGO = Path(__file__).parent / "assets" / "logo.svg"

st.set_page_config(page_title="FF Lab", page_icon=":material/neurology:", layout="wide")

RUNS_PAGE = st.Page(PAGES_DIR / "runs.py", title="Runs", icon=":material/view_list:", default=True)
LIVE_PAGE = st.Page(PAGES_DIR / "live.py", title="Live run", icon=":material/monitoring:", url_path="live")
DRAW_PAGE = st.Page(PAGES_DIR / "draw.py", title="Draw", icon=":material/draw:", url_path="draw")

st.logo(str(LOGO), size="large")
page = st.navigation([RUNS_PAGE, LIVE_PAGE, DRAW_PAGE], position="top")

page.run()
