"""metabench dashboard: `streamlit run app.py`.

The router: page config, navigation over ``pages/``, the sidebar (results folder, reference
switch). Pages are listed once, in ``metabench.dashboard.PAGES``.
"""

import streamlit as st

from metabench.dashboard import data, routing, state, tables

st.set_page_config(page_title="metabench", layout="wide")
page = routing.enter(st.navigation(routing.navigation_pages()))
data.results_dir_input()
state.reference_switch()  # the shipped reference runs beside yours (URL: ?reference=0 hides them)
tables.problems_banner()  # corrupt or incompatible results files, on every page
page.run()
