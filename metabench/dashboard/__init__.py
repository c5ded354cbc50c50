"""The Streamlit dashboard's shared pieces: the page list, and by concern

- ``routing``: the pages as ``st.Page`` objects and the router every page runs through;
- ``data``: the results folder and typed, cached queries (one function per query);
- ``state``: URL-mirrored widgets, the shared filter row, the empty-state messages;
- ``tables``: display tables, ``altair_chart``, the problems banner;
- ``charts``: Altair charts, pure functions of a query's frame;
- ``launch``: the Launch page's form and job list.

This package is the only one that imports Streamlit; this module itself stays import-free so
``app.py`` and the pages can read the page list cheaply. The plain pandas behind the views is in
``metabench.results.views``. Nothing here imports torch.
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
        "Who wins on each suite, by how much, and whether it is real (95% CIs, paired tests).",
    ),
    PageInfo(
        "pages/across_suites.py",
        "Across suites",
        "across_suites",
        "Which entries do well over every suite at once: mean rank, IQM of normalised scores, profiles.",
    ),
    PageInfo(
        "pages/curves.py",
        "Learning curves",
        "curves",
        "How each algorithm learns: a metric against meta-steps or wall time, mean and CI over seeds.",
    ),
    PageInfo(
        "pages/per_task.py",
        "Per task",
        "per_task",
        "On which test tasks each algorithm wins: distributions, breakdowns by task descriptor, A − B.",
    ),
    PageInfo(
        "pages/cost.py",
        "Cost",
        "cost",
        "What each point of accuracy costs in wall time and memory, with the Pareto front.",
    ),
    PageInfo(
        "pages/export.py",
        "Export",
        "export",
        "The leaderboard as CSV, Parquet, Markdown or LaTeX (paper-ready), and the raw tables.",
    ),
    PageInfo("pages/launch.py", "Launch", "launch", "Start a comparison run as a job and follow its progress."),
)
