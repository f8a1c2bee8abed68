"""Not a benchmark: the floor under the Live page's first chart (bench/dashboard_live_load.py serves it).

A Streamlit page that draws one small Altair chart and nothing else, with no API call: the time from
its navigation start to that chart drawn is what Streamlit's frontend, its connection and one Vega
chart cost in this browser on this machine, which no change to the Live page itself can go below.
"""

import altair as alt
import pandas as pd
import streamlit as st

st.title("Floor")
frame = pd.DataFrame({"epoch": range(1, 11), "error": [0.1 / epoch for epoch in range(1, 11)]})
st.altair_chart(alt.Chart(frame).mark_line(point=True).encode(x="epoch", y="error"), height=280)
