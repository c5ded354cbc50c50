"""Time each dashboard page over a big results folder (see make_big_results.py), via AppTest.

    python benchmarks/make_big_results.py /tmp/big-results
    python benchmarks/bench_dashboard.py /tmp/big-results

Two parts, each printed with its ratio to the targets of issue 5 (first render < 1 s, filter
change < 300 ms; ratio < 1 meets the target):

1. *Query layer*: the ``ResultsDB`` calls each page makes (plus the pandas work on their
   results: aggregate, smoothing, export bytes), timed on their own in this process, with the
   tables already in memory (the dashboard loads them in the background when it opens a
   folder). *first* = nothing of the page computed yet; *filter* = the same calls after
   changing the family filter (the scans are remembered, so only the selection is redone).
2. *Pages through AppTest*: *app load* = the first run (Home; it starts the background load of
   the tables and the heavy imports, whose duration is printed too); then per page: *first
   render* = the first run of the page in the session (its queries not cached yet); *again* =
   the same page rerun (cached); *filter change* = a rerun after changing a filter to a
   combination not seen before, then *back* to a seen one. AppTest runs the script in-process
   without a browser, so these include Streamlit's script and element overhead but not the
   browser's drawing.

The load average is printed first and last: on a shared machine the numbers scale with it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["pages/leaderboard.py", "pages/curves.py", "pages/per_task.py", "pages/cost.py", "pages/export.py"]
FIRST_S, FILTER_S = 1.0, 0.3


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg() + f" on {os.cpu_count()} cores"


def ratio(seconds: float, target: float) -> str:
    return f"{seconds:7.3f} s ({seconds / target:4.2f}x)"


def query_layer(folder: str) -> None:
    from metabench.results import ResultsDB
    from metabench.results.aggregate import aggregate
    from metabench.results.export import frame_bytes, leaderboard_bytes
    from metabench.results.views import smooth_curves

    t = time.perf_counter()
    db = ResultsDB(folder, auto_refresh=False)
    db.refresh()
    db.preload().join()
    import scipy.stats  # noqa: F401  (the dashboard imports it in the background too)

    print(f"query layer: load the tables into memory {time.perf_counter() - t:.2f} s (once per folder)")
    s, m = "omniglot-5w1s", "accuracy"
    fam = db.facets(s)["families"]

    def calls(page: str, families):
        f = {"families": families, "presets": None, "split_scheme": "vinyals"}
        if page == "home":
            return [db.summary, db.runs]
        if page == "leaderboard":
            return [lambda: db.metrics(s), lambda: db.facets(s), lambda: db.leaderboard(s, m, **f),
                    lambda: aggregate(db.run_scores(families, None))]
        if page == "curves":
            return [lambda: db.curve_metrics(s), lambda: smooth_curves(db.curve_summary(s, m, "val", **f), 0),
                    lambda: db.curve_excluded_runs(s, **f)]
        if page == "per_task":
            return [lambda: db.task_values(s, m, **f), lambda: db.leaderboard(s, m, **f)]
        if page == "cost":
            return [lambda: db.run_costs(s, m, **f)]
        if page == "export":
            return [lambda: leaderboard_bytes(db.leaderboard(s, m, **f), "latex"),
                    lambda: frame_bytes(db.task_values(s, m, **f), "csv"), lambda: db.curve_metrics(s)]
        raise ValueError(page)

    print(f"{'page':12s} {'first (< 1 s)':>22s} {'filter (< 0.3 s)':>22s}")
    for page in ["home", "leaderboard", "curves", "per_task", "cost", "export"]:
        times = []
        for families in (None, fam[1:]):
            t = time.perf_counter()
            for call in calls(page, families):
                call()
            times.append(time.perf_counter() - t)
        print(f"{page:12s} {ratio(times[0], FIRST_S):>22s} {ratio(times[1], FILTER_S):>22s}")


def timed(at) -> float:
    t = time.perf_counter()
    at.run()
    assert not at.exception, at.exception
    return time.perf_counter() - t


def pages(folder: str) -> None:
    from streamlit.testing.v1 import AppTest

    from metabench.dashboard import data

    os.environ["METABENCH_RESULTS"] = folder
    at = AppTest.from_file(APP, default_timeout=120)
    t0 = time.perf_counter()
    app_load = timed(at)
    data._db(str(Path(folder).absolute()), True).warm_up.join()
    warm = time.perf_counter() - t0
    at.switch_page("pages/home.py")
    home_again = timed(at)
    print(f"pages (AppTest): app load (Home) {app_load:.2f} s; background load of tables and imports "
          f"done {warm:.2f} s after the start; Home again {home_again:.3f} s")
    print(f"{'page':22s} {'first render (< 1 s)':>22s} {'again':>8s} {'filter change (< 0.3 s)':>24s} {'back':>8s}")
    for page in PAGES:
        at.switch_page(page)
        first = timed(at)
        assert not at.info, [i.value for i in at.info]  # a real render, not an empty-state message
        again = timed(at)
        ms = at.multiselect(key="url_family")
        ms.unselect(ms.options[0])
        change = timed(at)
        assert not at.info, [i.value for i in at.info]
        at.multiselect(key="url_family").set_value(list(ms.options))
        back = timed(at)
        print(f"{page:22s} {ratio(first, FIRST_S):>22s} {again:8.3f} {ratio(change, FILTER_S):>24s} {back:8.3f}")


def main() -> None:
    folder = str(Path(sys.argv[1]).absolute())
    print(load())
    pages(folder)  # first: its app load includes the imports of a fresh process
    query_layer(folder)
    print(load())


if __name__ == "__main__":
    main()
