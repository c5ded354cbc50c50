"""The Streamlit dashboard's shared pieces: the page list, widgets and Altair charts.

This package is the only one that imports Streamlit (in ``widgets``); this module itself stays
import-free so ``app.py`` and the pages can read the page list cheaply. Nothing here imports
torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    """One dashboard page: its script, title, URL path and the question it answers."""

    path: str
    """Script path relative to the repository root, e.g. 'pages/leaderboard.py'."""
    title: str
    url_path: str
    """'' for the default page; otherwise the URL segment, e.g. 'leaderboard'."""
    question: str
    """One line shown next to the page's link on Home."""


#: Every page, in navigation order. Add a page by adding a line here and a script under pages/.
PAGES: tuple[PageInfo, ...] = (
    PageInfo("pages/home.py", "Home", "", "What is in the results folder."),
    PageInfo(
        "pages/leaderboard.py",
        "Leaderboard",
        "leaderboard",
        "Which algorithm wins on each suite, with 95% confidence intervals over test tasks.",
    ),
    PageInfo("pages/launch.py", "Launch", "launch", "Start a comparison run as a job and follow its progress."),
)
