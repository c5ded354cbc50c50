"""metabench dashboard: `streamlit run app.py`.

The router: page config, the sidebar's results folder, and navigation over ``pages/``.
Pages are listed once, in ``metabench.dashboard.PAGES``.
"""

import streamlit as st

from metabench.dashboard import PAGES
from metabench.dashboard import widgets

st.set_page_config(page_title="metabench", layout="wide")
widgets.results_dir_input()
pages = [
    st.Page(p.path, title=p.title, url_path=p.url_path, default=p.url_path == "") for p in PAGES
]
st.navigation(pages).run()
