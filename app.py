"""Entry point: `streamlit run app.py` serves the dashboard and, beside it, the export proxy."""

import streamlit as st

from secure_layers import proxy, state

app = st.App("dashboard.py", routes=proxy.routes(proxy.REGISTRY, session_alive=state.session_alive))
