"""Time each dashboard page over a big results folder (see make_big_results.py), via AppTest.

    python benchmarks/make_big_results.py /tmp/big-results
    python benchmarks/bench_dashboard.py /tmp/big-results

For each page: *first render* = the first run of the page in a session whose app is already
loaded (imports done; this page's queries not cached yet, so DuckDB scans the files);
*again* = the same page rerun (cached queries); *filter change* = a rerun after changing a
filter to a combination not seen before (new queries), then back to a seen one (cached).
AppTest adds its own overhead (the script runs in-process, no browser), so these are upper
bounds on the server-side time. Targets (issue 5): first render < 1 s, filter change < 300 ms.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["pages/leaderboard.py", "pages/curves.py", "pages/per_task.py", "pages/cost.py", "pages/export.py"]


def timed(at: AppTest) -> float:
    t = time.perf_counter()
    at.run()
    assert not at.exception, at.exception
    return time.perf_counter() - t


def main() -> None:
    os.environ["METABENCH_RESULTS"] = sys.argv[1]
    at = AppTest.from_file(APP, default_timeout=120)
    load = timed(at)
    at.switch_page("pages/home.py")
    home_again = timed(at)
    print(f"{'page':22s} {'first':>8s} {'again':>8s} {'filter':>8s} {'filter back':>12s}")
    print(f"{'home (app load)':22s} {load:8.3f} {home_again:8.3f}")
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
        print(f"{page:22s} {first:8.3f} {again:8.3f} {change:8.3f} {back:12.3f}")


if __name__ == "__main__":
    main()
