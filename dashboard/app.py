"""FF Lab's dashboard: `streamlit run dashboard/app.py` (or `python -m dashboard`).

The entry point only sets up the page and the navigation; each page lives in dashboard/pages/.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.settings import get_settings

PAGES_DIR = Path(__file__).parent / "pages"

st.set_page_config(page_title="FF Lab", page_icon=":material/neurology:", layout="wide")

RUNS_PAGE = st.Page(PAGES_DIR / "runs.py", title="Runs", icon=":material/view_list:", default=True)
LIVE_PAGE = st.Page(PAGES_DIR / "live.py", title="Live run", icon=":material/monitoring:", url_path="live")
DRAW_PAGE = st.Page(PAGES_DIR / "draw.py", title="Draw", icon=":material/draw:", url_path="draw")

page = st.navigation([RUNS_PAGE, LIVE_PAGE, DRAW_PAGE], position="top")

with st.sidebar:
    st.markdown("### :material/neurology: FF Lab")
    st.caption("Train, watch and probe networks taught by Hinton's Forward-Forward algorithm on MNIST.")
    st.caption(f"API: `{get_settings().api_url}`")

page.run()
