"""Demo app: second page."""

import pandas as pd
import streamlit as st

st.title("Details")
st.write("Totals by region.")
st.bar_chart(pd.DataFrame({"region": ["north", "south"], "total": [3010, 2545]}), x="region")
