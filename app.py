"""metabench dashboard: `streamlit run app.py`.

The router: page config, the sidebar's results folder, and navigation over ``pages/``.
Pages are listed once, in ``metabench.dashboard.PAGES``.
"""

import streamlit as st

from metabench.dashboard import data, routing, tables

st.set_page_config(page_title="metabench", layout="wide")
data.results_dir_input()
tables.problems_banner()  # corrupt or incompatible results files, on every page
routing.run(st.navigation(routing.navigation_pages()))
