"""The dashboard's pages and the session keys they share: the one place where pages find each other.

Pages link with these Page objects (`st.switch_page(LIVE_PAGE)`, `st.page_link(RUNS_PAGE)`), never
with paths to their files. st.Page needs a running Streamlit script, so only the app and its pages
import this module.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).with_name("views")

RUNS_PAGE = st.Page(VIEWS / "runs.py", title="Runs", icon=":material/view_list:", default=True)
LIVE_PAGE = st.Page(VIEWS / "live.py", title="Live run", icon=":material/monitoring:", url_path="live")
DRAW_PAGE = st.Page(VIEWS / "draw.py", title="Draw", icon=":material/draw:", url_path="draw")
EXPERIMENTS_PAGE = st.Page(
    VIEWS / "experiments.py", title="Experiments", icon=":material/science:", url_path="experiments"
)
PAGES = (RUNS_PAGE, LIVE_PAGE, DRAW_PAGE, EXPERIMENTS_PAGE)

# st.session_state keys one page sets for another.
LIVE_RUN_ID = "live_run_id"  # the run the Live page shows (Runs' "Watch live" sets it)
DRAW_RUN_ID = "draw_run_id"  # the model the Draw page asks (Runs' "Draw or upload" sets it)
# The URL query parameter naming an experiment: the one Experiments shows, and the one whose runs Runs
# lists (Experiments' "Its runs" links there with it).
EXPERIMENT_QUERY = "experiment"
