"""metabench dashboard: `streamlit run app.py`.

The router: page config, the sidebar's results folder, and navigation over ``pages/``.
Pages are listed once, in ``metabench.dashboard.PAGES``.
"""

import streamlit as st

from metabench.dashboard import widgets

st.set_page_config(page_title="metabench", layout="wide")
widgets.results_dir_input()
widgets.mark_routed()
widgets.problems_banner()  # corrupt or incompatible results files, on every page
st.navigation(widgets.navigation_pages()).run()
