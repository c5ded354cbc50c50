"""The dashboard in a real browser: `streamlit run app.py` + Debian's Chromium via playwright.

Starts the server on 127.0.0.1 (a free port) over the fixture results folder, visits every page,
reads the leaderboard's numbers from the page, downloads the CSV export through the browser and
checks its bytes, and saves a screenshot per page. A second server shows what a new user first
sees (an empty results folder and the shipped reference set): every page, and each tier-1 suite's
leaderboard with every shipped entry marked 'reference'. Screenshots go to $METABENCH_SCREENSHOTS
when set, else a temp folder (printed; run with -s to see it).
Skips when playwright or /usr/bin/chromium is missing (CI installs both: see .ci/run). Never run
`playwright install`: it downloads a browser, which fails here.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from metabench.dashboard import widgets
from metabench.reference import REFERENCE_VAR, manifest, reference_dir
from metabench.results import ResultsDB, write_fixture_results

# Marked slow (1.5-3.5 min wall on the shared 2-core machine under load: the launch tests and their
# smoke jobs, and about a minute for the pages over the shipped reference set): .ci/run runs it explicitly after the default suite. Locally: python -m pytest -m slow tests/test_browser.py -s
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: A folder to keep the screenshots in (e.g. to look at them, or for CI's artifacts).
SHOTS_VAR = "METABENCH_SCREENSHOTS"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found; apt-get install chromium chromium-driver", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(folder: Path, tmp_path_factory, reference: bool = False):
    """`streamlit run app.py` over ``folder`` while the context lasts; gives its URL.
    ``reference``: as a new user sees it, the shipped reference set beside the folder (the
    tests' METABENCH_REFERENCE=off removed from the server's environment)."""
    port = _free_port()
    env = {**os.environ, widgets.ENV_VAR: str(folder), "PYTHONPATH": str(ROOT)}
    if reference:
        env.pop(REFERENCE_VAR, None)
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]  # fmt: skip
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not become healthy; log:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard over the fixture results folder alone."""
    folder = write_fixture_results(tmp_path_factory.mktemp("results"))
    with _serve(folder, tmp_path_factory) as url:
        yield url, folder


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory):
    """The dashboard as a new user first sees it: an empty results folder and the shipped
    reference set (issue 21)."""
    folder = tmp_path_factory.mktemp("empty-results")
    with _serve(folder, tmp_path_factory, reference=True) as url:
        yield url, folder


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2200}, accept_downloads=True)
    return context.new_page()


@pytest.fixture(scope="module")
def page(server, browser):
    return _new_page(browser)


@pytest.fixture(scope="module")
def reference_page(reference_server, browser):
    return _new_page(browser)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: $METABENCH_SCREENSHOTS when set (kept), else a temp folder."""
    kept = os.environ.get(SHOTS_VAR)
    folder = Path(kept) if kept else tmp_path_factory.mktemp("browser-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


def _open(page, url: str, text: str) -> None:
    page.goto(url)
    page.wait_for_selector("[data-testid=stAppViewContainer]", timeout=60_000)
    page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
    # the script has finished when the status widget stops showing "Running"
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
    # and the page is drawn when no element still waits for its code (Streamlit loads page links,
    # tables and charts lazily and shows a blank stSkeleton box meanwhile: the screenshots caught
    # Home's page links and overview table as blank boxes)
    page.wait_for_function("!document.querySelector('[data-testid=stSkeleton]')", timeout=60_000)


PAGES = [
    ("", "Pages"),
    ("leaderboard", "Mean and 95% CI are over"),
    ("across_suites", "interquartile mean of all"),
    ("curves", "Seeds per entry"),
    ("per_task", "Paired: A"),
    ("cost", "Per entry"),
    ("export", "Per-task values"),
]


@pytest.mark.parametrize(("path", "text"), PAGES)
def test_every_page_renders(server, page, shots, path, text):
    url, _ = server
    _open(page, f"{url}/{path}", text)
    assert page.locator("[data-testid=stException]").count() == 0, f"/{path} shows an exception"
    page.screenshot(path=str(shots / f"{path or 'home'}.png"), full_page=True)


def test_leaderboard_numbers_in_the_page(server, page):
    url, _ = server
    _open(page, f"{url}/leaderboard?suite=omniglot-5w1s", "Mean and 95% CI are over")
    cells = page.locator("[data-testid=stDataFrame]").first.locator("td")
    cells.first.wait_for(state="attached", timeout=30_000)
    text = " | ".join(cells.all_text_contents())
    for expected in ("protonet", "maml", "97.25% – 98.75%", "93.49% – 96.51%", "worse (p<0.001)", "0.71%"):
        assert expected in text, f"{expected!r} not in the leaderboard cells: {text[:500]}"


def test_csv_export_downloads_the_leaderboard(server, page):
    url, folder = server
    _open(page, f"{url}/export?suite=sinusoid-5shot", "Per-task values")
    with page.expect_download(timeout=30_000) as info:
        page.get_by_role("button", name="CSV", exact=True).click()
    download = info.value
    assert download.suggested_filename == "sinusoid-5shot-mse_at10-leaderboard.csv"
    data = Path(download.path()).read_bytes()
    got = pd.read_csv(io.BytesIO(data))
    expected = ResultsDB(folder).leaderboard("sinusoid-5shot")
    assert got["algorithm"].tolist() == ["maml", "reptile"]
    assert got["mean"].tolist() == pytest.approx([0.30, 0.50])
    assert got["mean"].tolist() == pytest.approx(expected["mean"].tolist())
    assert data.startswith(b"rank,algorithm,variant,changes,family,preset,mean,")


def _leaderboard_cells(page) -> list[str]:
    """Open the Leaderboard from the sidebar (same session) and return its table's cell texts."""
    page.locator("[data-testid=stSidebarNav]").get_by_role("link", name="Leaderboard").click()
    page.get_by_text("Mean and 95% CI are over", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
    cells = page.locator("[data-testid=stDataFrame]").first.locator("td")
    cells.first.wait_for(state="attached", timeout=30_000)
    return [c.strip() for c in cells.all_text_contents()]


def _maml_smoke_form(server, page, folder):
    """Open /launch on an empty results folder and fill the form: sinusoid-5shot (the default
    suite), maml, the smoke preset. Returns the folder."""
    url, _ = server
    _open(page, f"{url}/launch", "Jobs")
    box = page.locator(".st-key-results_dir input")
    box.fill(str(folder))
    box.press("Enter")
    page.get_by_text("No jobs yet in", exact=False).first.wait_for(timeout=60_000)
    page.locator(".st-key-launch_suites").get_by_text("sinusoid-5shot").wait_for(timeout=120_000)
    algorithms = page.locator(".st-key-launch_algorithms input")
    algorithms.click()
    algorithms.fill("maml")
    page.get_by_role("option", name="maml", exact=True).click()
    page.keyboard.press("Escape")
    page.locator(".st-key-launch_preset").click()
    page.get_by_role("option", name="smoke", exact=True).click()
    return folder


def test_launch_a_smoke_job_and_see_it_in_the_leaderboard(server, page, shots, tmp_path_factory):
    """Issue 6 in a real browser: in one session, point the sidebar at an empty folder, fill the
    Launch form (sinusoid-5shot + maml, smoke preset, seed 0), launch, watch the live job list
    until the job is finished, then open the Leaderboard and find its cell there."""
    folder = _maml_smoke_form(server, page, tmp_path_factory.mktemp("launched"))
    page.get_by_text("No finished smoke runs of this grid here yet", exact=False).wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "launch-form.png"), full_page=True)
    page.get_by_role("button", name="Launch", exact=True).click()
    started = page.get_by_text("Started job ", exact=False).first
    started.wait_for(timeout=120_000)
    job_id = started.inner_text().strip().removeprefix("Started job ").rstrip(".")
    assert (folder / "jobs" / job_id / "spec.json").is_file()
    # The job list refreshes itself every 2 s (a fragment): no reload, no click.
    job = page.locator(f".st-key-job-{job_id}")
    job.get_by_text("1/1 cells done").wait_for(timeout=300_000)
    assert "finished" in job.inner_text()
    page.screenshot(path=str(shots / "launch-finished.png"), full_page=True)
    # Same session (the sidebar's folder is kept): the Leaderboard shows the new cell.
    row = _leaderboard_cells(page)
    assert "maml" in row and "best" in row, row
    assert "n/a" in row, f"std over one seed should read n/a: {row}"  # Std (seeds) with seed 0 only
    # One row: its protocol (preset smoke, 1 seed) is said once under the table.
    assert page.get_by_text("Same protocol on every row: preset smoke", exact=False).count() == 1
    assert page.get_by_text("Suite sinusoid-5shot", exact=False).first.is_visible()
    page.screenshot(path=str(shots / "launch-leaderboard.png"), full_page=True)


def test_launch_a_sweep_from_the_form(server, page, shots, tmp_path_factory):
    """Issue 20 in a real browser: sinusoid-5shot + maml, smoke preset, the sweep
    `inner_steps = 1,2` typed in maml's settings; the preview lists two cells, the job runs both,
    and each becomes its own entry (run id) in the results folder."""
    folder = _maml_smoke_form(server, page, tmp_path_factory.mktemp("swept"))
    # maml's settings: prefilled with the smoke preset on sinusoid-5shot (hidden 16, not the default 64)
    page.get_by_text("maml settings", exact=True).click()
    hidden = page.locator(".st-key-cfg_maml_hidden input")
    playwright.expect(hidden).to_have_value("16", timeout=60_000)
    sweep = page.locator(".st-key-cfg_maml_sweep input")
    sweep.fill("inner_steps = 1,2")
    sweep.press("Enter")
    page.get_by_text("Overrides: maml.inner_steps=1,2", exact=False).wait_for(timeout=30_000)
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
    page.get_by_role("button", name="Preview cells", exact=True).click()
    page.get_by_text("2 cell(s)", exact=False).wait_for(timeout=120_000)
    page.mouse.move(0, 0)   # no tooltip over the screenshot
    table = page.locator("[data-testid=stDataFrame]").first   # the only table on the Launch page
    table.locator("td").first.wait_for(state="attached", timeout=30_000)
    cells = " | ".join(table.locator("td").all_text_contents())
    assert "maml[inner_steps=2]" in cells and "to run" in cells, cells
    page.screenshot(path=str(shots / "launch-sweep-preview.png"), full_page=True)
    page.get_by_role("button", name="Launch", exact=True).click()
    started = page.get_by_text("Started job ", exact=False).first
    started.wait_for(timeout=120_000)
    job_id = started.inner_text().strip().removeprefix("Started job ").rstrip(".")
    job = page.locator(f".st-key-job-{job_id}")
    job.get_by_text("2/2 cells done").wait_for(timeout=300_000)
    assert "finished" in job.inner_text() and "maml.inner_steps=1,2" in job.inner_text()
    page.wait_for_timeout(2500)   # the job list's next refresh, so the screenshot shows it settled
    page.screenshot(path=str(shots / "launch-sweep-finished.png"), full_page=True)
    runs = sorted(p.name for p in folder.iterdir() if p.name.startswith("sinusoid-5shot--maml--smoke--seed0"))
    assert len(runs) == 2 and runs[0] == "sinusoid-5shot--maml--smoke--seed0", runs
    # Both entries on the Leaderboard: the plain preset and the variant.
    row = _leaderboard_cells(page)
    page.screenshot(path=str(shots / "launch-sweep-leaderboard.png"), full_page=True)
    assert "maml[inner_steps=2]" in row and "maml" in row, row


# -- as a new user first sees it: an empty results folder, the shipped reference set (issue 21) --


# every page but the leaderboard, which the next test opens once per tier-1 suite
@pytest.mark.parametrize(("path", "text"), [*(p for p in PAGES if p[0] != "leaderboard"), ("launch", "Jobs")])
def test_every_page_over_the_shipped_reference_set(reference_server, reference_page, shots, path, text):
    url, _ = reference_server
    _open(reference_page, f"{url}/{path}", text)
    assert reference_page.locator("[data-testid=stException]").count() == 0, f"/{path} shows an exception"
    assert reference_page.get_by_text("No results yet", exact=False).count() == 0, f"/{path} shows nothing"
    if path == "":   # Home: a link to each suite's leaderboard, and to every page
        main = reference_page.locator("[data-testid=stMain]")
        for name in (*manifest.TIER1_SUITES, "Across suites"):
            playwright.expect(main.get_by_role("link", name=name)).to_have_count(1, timeout=30_000)
    reference_page.screenshot(path=str(shots / f"reference-{path or 'home'}.png"), full_page=True)


@pytest.mark.parametrize("suite", manifest.TIER1_SUITES)
def test_each_tier1_leaderboard_shows_the_reference_entries(reference_server, reference_page, shots, suite):
    """Every entry the shipped set holds for the suite is a row marked 'reference', and every
    tier-1 cell the manifest calls finished is among them."""
    url, folder = reference_server
    expected = ResultsDB(folder, reference=reference_dir()).leaderboard(suite)
    assert set(expected["source"]) == {"reference"}
    finished = {c["algorithm"] for c in manifest.read_manifest().values()
                if (c["tier"], c["suite"], c["state"]) == (1, suite, "finished")}  # fmt: skip
    assert finished and finished <= set(expected["algorithm"]), finished - set(expected["algorithm"])
    _open(reference_page, f"{url}/leaderboard?suite={suite}", "Mean and 95% CI are over")
    assert reference_page.get_by_text(f"Suite {suite} version", exact=False).count() == 1
    cells = reference_page.locator("[data-testid=stDataFrame]").first.locator("td")
    cells.first.wait_for(state="attached", timeout=30_000)
    texts = [c.strip() for c in cells.all_text_contents()]
    assert texts.count("reference") == len(expected), texts
    for entry in expected["entry"]:
        assert entry in texts, f"{entry!r} not in the {suite} leaderboard: {texts}"
    reference_page.mouse.move(0, 0)
    reference_page.screenshot(path=str(shots / f"reference-leaderboard-{suite}.png"), full_page=True)
