"""Sales overview: an example app to deploy with `streamlit-hub deploy examples/sales --app sales`.

It needs one package the platform does not ship (humanize, in requirements.txt): the hub builds
the app its own environment at deploy time.
"""

import humanize
import pandas as pd
import streamlit as st

st.title("Sales overview")

data = pd.DataFrame(
    {
        "month": pd.date_range("2026-01-01", periods=12, freq="MS"),
        "revenue": [812_000, 790_500, 901_200, 955_000, 1_020_400, 998_100,
                    1_105_000, 1_150_700, 1_090_300, 1_210_900, 1_305_000, 1_402_600],
    }
)  # fmt: skip
total = int(data["revenue"].sum())
st.metric("Revenue this year", humanize.intword(total), humanize.intcomma(total))
st.line_chart(data, x="month", y="revenue")
st.caption("Made-up numbers. The Details page shows the table.")
