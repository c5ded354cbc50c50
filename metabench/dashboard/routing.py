"""Routing: the page list as ``st.Page`` objects, and making sure every page runs inside app.py.

``app.py`` calls ``enter(page)`` for the page ``st.navigation`` chose; it records which page is
running (the URL widgets of ``state`` restore their values when the page changes) and marks the
session as routed. A page's first call is ``require_router()``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from metabench.dashboard import PAGES, PageInfo

_ROUTED = "_metabench_routed"
_REROUTED = "_metabench_rerouted"
#: Session-state key holding the URL path of the page running now (read by ``state``).
PAGE_KEY = "_metabench_page"


def available_pages() -> list[PageInfo]:
    """The entries of ``PAGES`` whose script exists next to app.py."""
    root = Path(__file__).resolve().parents[2]
    return [p for p in PAGES if (root / p.path).is_file()]


def navigation_pages() -> list[st.Page]:
    """``st.Page`` objects for every entry of ``metabench.dashboard.PAGES`` whose script exists
    (a page listed ahead of its script appears once the script lands)."""
    return [
        st.Page(p.path, title=p.title, url_path=p.url_path, default=p.url_path == "")
        for p in available_pages()
    ]


def enter(page: st.Page) -> st.Page:
    """Called by app.py with the page ``st.navigation`` chose, before any widget: mark this
    session's pages as routed and remember which page runs (the URL widgets, the sidebar's
    included, restore their values when it changes). Returns ``page``."""
    st.session_state[_ROUTED] = True
    by_url = {p.url_path: p.path for p in PAGES}
    st.session_state[PAGE_KEY] = by_url.get(page.url_path, page.url_path)
    return page


def require_router(script: str | None = None) -> None:
    """First call of every page, ``require_router(__file__)``: make sure the page runs inside
    app.py, not on its own, and remember which page runs (``script``; as ``enter`` does, for
    a page run without app.py around it, e.g. by Streamlit's AppTest.switch_page).

    Streamlit still honours its old ``pages/``-folder convention until some session has called
    ``st.navigation``: after a server start, a first visit straight to ``/leaderboard`` runs
    ``pages/leaderboard.py`` alone (no sidebar, no page config, auto-named pages). Calling
    ``st.navigation`` switches the server to app.py's routing for good; the rerun then goes
    through app.py and lands on the same page, query string included.
    """
    if script is not None:
        root = Path(__file__).resolve().parents[2]
        path = Path(script).resolve()
        st.session_state[PAGE_KEY] = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    if not st.session_state.get(_ROUTED) and not st.session_state.get(_REROUTED):
        st.session_state[_REROUTED] = True  # once: a page run as the main script must not loop
        st.navigation(navigation_pages(), position="hidden")
        st.rerun()
