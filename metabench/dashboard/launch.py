"""The Launch page's pieces: what can be launched, launching, and the live job list.

Nothing here imports torch: the catalogue of suites and algorithms (and which fits which) comes
from `python -m metabench.cli list --json` in a subprocess, cached for the server's lifetime
(about 2 s once, versus importing torch into the Streamlit process). A launch is
`python -m metabench.cli run ... --detach`, an argument list built from the catalogue's names and
validated numbers (never a shell string); the CLI validates the spec in `metabench.spec` (the one
place) and starts the job in its own session, so it outlives the page.

`METABENCH_READONLY=1` hides the form and makes `launch`, `cancel` and `resume` refuse; with
`METABENCH_TOKEN` set, they need that token (compared in constant time).
"""
from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from metabench.engine import jobstore
from metabench.errors import MetabenchError

READONLY_VAR, TOKEN_VAR = "METABENCH_READONLY", "METABENCH_TOKEN"
CLI = [sys.executable, "-m", "metabench.cli"]


def readonly() -> bool:
    return os.environ.get(READONLY_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def token_required() -> bool:
    return bool(os.environ.get(TOKEN_VAR))


def token_ok(given: str | None) -> bool:
    expected = os.environ.get(TOKEN_VAR)
    if not expected:
        return True
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _allowed(token: str | None) -> None:
    if readonly():
        raise MetabenchError(f"launching is turned off on this dashboard ({READONLY_VAR}=1)")
    if not token_ok(token):
        raise MetabenchError("the access token is missing or wrong")


@st.cache_data(show_spinner="Reading the suites and algorithms...")
def catalog() -> dict[str, Any]:
    """`metabench list --json`: suites, algorithms and fits (with the reason when not)."""
    proc = subprocess.run([*CLI, "list", "--json"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise MetabenchError(f"`metabench list --json` failed: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def fitting(cat: dict[str, Any], suites: list[str]) -> tuple[list[str], dict[str, str]]:
    """(algorithms fitting at least one of `suites`, {algorithm: why it fits none})."""
    ok, greyed = [], {}
    for a in (x["name"] for x in cat["algorithms"]):
        fits = cat["fits"][a]
        if any(fits[s]["ok"] for s in suites):
            ok.append(a)
        elif suites:
            greyed[a] = "; ".join(dict.fromkeys(fits[s]["reason"] for s in suites))
    return ok, greyed


def cell_time_estimates(runs: pd.DataFrame, preset: str) -> dict[tuple[str, str], tuple[float, int]]:
    """(suite, algorithm) -> (median wall time in s, number of finished runs) for `preset`."""
    if runs.empty:
        return {}
    done = runs[(runs["status"] == "finished") & (runs["preset"] == preset)]
    g = done.groupby(["suite", "algorithm"])["wall_time_s"]
    return {k: (float(m), int(n)) for (k, m), n in zip(g.median().items(), g.size())}


def launch(results_dir: Path, suites: list[str], algorithms: list[str], seeds: str, preset: str, device: str,
           executor: str, workers: int, ray_address: str = "", token: str | None = None) -> str:
    """Start a detached job through the CLI; its id. MetabenchError with the CLI's sentence if invalid."""
    _allowed(token)
    # --opt=value: a value can never be read as another option.
    argv = [*CLI, "run", f"--suites={','.join(suites)}", f"--algorithms={','.join(algorithms)}",
            f"--seeds={seeds}", f"--preset={preset}", f"--device={device}", f"--executor={executor}",
            f"--workers={int(workers)}", f"--results-dir={results_dir}", "--detach"]
    if executor == "ray" and ray_address.strip():
        argv.append(f"--ray-address={ray_address.strip()}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        raise MetabenchError(lines[-1].removeprefix("error: ") if lines else proc.stderr.strip()[-300:])
    return proc.stdout.split()[1]


def cancel(results_dir: Path, job_id: str, token: str | None = None) -> None:
    _allowed(token)
    jobstore.request_cancel(results_dir, job_id)


def resume(results_dir: Path, job_id: str, token: str | None = None) -> None:
    _allowed(token)
    jobstore.existing_job_dir(results_dir, job_id)
    proc = subprocess.run([*CLI, "jobs", "resume", job_id, f"--results-dir={results_dir}", "--detach"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise MetabenchError(proc.stderr.strip().splitlines()[-1].removeprefix("error: "))


def _eta(s: float | None) -> str:
    if s is None:
        return ""
    s = int(s)
    return f"ETA {s // 60}m{s % 60:02d}s"


def _metric(c: dict[str, Any]) -> str:
    src = "test" if c.get("phase") == "done" else "val" if c.get("val") else "train"
    values = (c.get("metrics") if src != "val" else c.get("val")) or {}
    for k, v in values.items():
        if isinstance(v, (int, float)) and not k.endswith("@0"):
            return f"{src} {k} {v:.4g}"
    return ""


def job_list(results_dir: Path, can_act: bool, token: str | None, limit: int = 10) -> None:
    """The newest jobs with progress bars, running cells (step, metric, ETA), log tail and buttons."""
    jobs = jobstore.list_jobs(results_dir)
    if not jobs:
        st.caption(f"No jobs yet in `{results_dir / jobstore.JOBS}`.")
        return
    for j in jobs[:limit]:
        jid, state, sp = j["job_id"], j["state"], j["spec"]
        with st.container(border=True, key=f"job-{jid}"):
            st.markdown(f"**{jid}** · `{state}` · {', '.join(sp.get('suites', []))} × "
                        f"{', '.join(sp.get('algorithms', []))} · seeds {', '.join(map(str, sp.get('seeds', [])))} · "
                        f"{sp.get('preset')} · {sp.get('executor', 'local')}")
            total = max(int(j["total"] or 0), 1)
            st.progress(min(int(j["done"] or 0), total) / total, text=f"{j['done']}/{j['total']} cells done")
            jdir = results_dir / jobstore.JOBS / jid
            cells = jobstore.cell_states(results_dir, jdir, j["status"])
            for c in cells:
                if c["state"] == "running":
                    frac = (c.get("step") or 0) / max(c.get("total") or 1, 1)
                    st.progress(min(frac, 1.0), text=f"{c['run_id']}: step {c.get('step') or 0}/{c.get('total') or '?'}"
                                f" {_metric(c)} {_eta(c.get('eta_s'))}")
            # Counts per state; cells are named only when they need attention (not finished).
            counts = pd.Series([c["state"] for c in cells if c["state"] != "running"], dtype=object).value_counts()
            if len(counts):
                st.caption(" · ".join(f"{n} {state}" for state, n in counts.items()))
            other = [f"{c['run_id']}: {c['state']}" for c in cells if c["state"] not in ("running", "finished")]
            if other:
                st.caption(" · ".join(other))
            with st.expander("Log"):
                st.code(jobstore.log_tail(jdir, 20) or "(empty)", language=None)
            if can_act:
                left, right = st.columns(2)
                if state in jobstore.LIVE and left.button("Cancel", key=f"cancel-{jid}"):
                    _act(cancel, results_dir, jid, token, f"Cancel requested for {jid}.")
                unfinished = any(c["state"] not in jobstore.FINAL_CELL + ("skipped", "unavailable") for c in cells)
                if state not in jobstore.LIVE + ("cancelling",) and unfinished and right.button("Resume", key=f"resume-{jid}"):
                    _act(resume, results_dir, jid, token, f"Resumed {jid}.")


def _act(fn, results_dir: Path, job_id: str, token: str | None, done: str) -> None:
    try:
        fn(results_dir, job_id, token)
        st.toast(done)
        time.sleep(0.3)
    except MetabenchError as exc:
        st.error(str(exc))
