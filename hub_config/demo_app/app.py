"""Demo app: sales overview (main page)."""

import numpy as np
import pandas as pd
import streamlit as st

st.set_page_config(page_title="Sales demo", layout="wide")
st.title("Sales demo")
viewer = st.user.get("name") if hasattr(st, "user") else None
if viewer:
    st.caption(f"Signed in as {viewer}")

rng = np.random.default_rng(7)
days = pd.date_range("2026-01-01", periods=30, freq="D")
sales = pd.DataFrame(
    {"day": days, "north": rng.integers(80, 120, 30), "south": rng.integers(60, 110, 30)}
)
st.subheader("Daily sales")
st.dataframe(sales, hide_index=True)
st.line_chart(sales, x="day", y=["north", "south"])
