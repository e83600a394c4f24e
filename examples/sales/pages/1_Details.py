import humanize
import pandas as pd
import streamlit as st

st.title("Details")
months = pd.date_range("2026-01-01", periods=12, freq="MS")
st.dataframe(
    pd.DataFrame(
        {
            "month": months.strftime("%B"),
            "orders": [humanize.intcomma(1200 + 37 * i) for i in range(12)],
        }
    ),
    hide_index=True,
)
