"""FF Lab's dashboard: `streamlit run dashboard/app.py` (or `python -m dashboard`).

The entry point only sets up the page, the visitor's key (the sidebar, dashboard/access.py) and the
navigation; the pages are declared in dashboard/navigation.py and live in dashboard/views/. When the API
protects reads, a visitor without a right key sees no page, only what to do.
"""

from __future__ import annotations

import copy
from pathlib import Path

import streamlit as st

from dashboard.access import key_sidebar, read_lock
from dashboard.navigation import PAGES

LOGO = Path(__file__).parent / "assets" / "logo.svg"

st.set_page_config(page_title="FF Lab", page_icon=":material/neurology:", layout="wide")
st.logo(str(LOGO), size="large")
# st.navigation marks the page it picks as runnable on that Page object, and PAGES is shared by every
# session of the server: each run hands it copies of its own.
page = st.navigation([copy.copy(page) for page in PAGES], position="top")
key_sidebar()
if (lock := read_lock()) is not None:
    st.title(page.title)
    st.warning(lock, icon=":material/lock:")
else:
    page.run()
