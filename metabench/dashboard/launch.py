"""The Launch page's pieces: what can be launched, launching, and the live job list.

Nothing here imports torch: the catalogue of suites and algorithms (and which fits which) comes
from `python -m metabench.cli list --json` in a subprocess, cached for the server's lifetime
(about 2 s once, versus importing torch into the Streamlit process). A launch is
`python -m metabench.cli run ... --detach`, an argument list built from the catalogue's names and
validated numbers (never a shell string); the CLI validates the spec in `metabench.spec` (the one
place) and starts the job in its own session, so it outlives the page.

Overrides (issue 20): each chosen algorithm's Config fields, and the loop settings, are typed
inputs prefilled with the preset's values on the chosen suites (resolved from the catalogue by
`metabench.catalog`); only fields changed from that prefill, and typed sweeps (`FIELD = A,B`),
become `--set=ALGO.FIELD=VALUE` arguments. `preview` runs the same command with `--dry-run`, so
the page shows the CLI's own sentence for a bad value, or the cells it would run.

`METABENCH_READONLY=1` hides the form and makes `launch`, `cancel` and `resume` refuse; with
`METABENCH_TOKEN` set, they need that token (compared in constant time).
"""
from __future__ import annotations

import hmac
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from metabench.catalog import loop_values, preset_values
from metabench.engine import jobstore
from metabench.errors import MetabenchError
from metabench.overrides import format_value

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
            # one clause each: "rl2 handles rl-... tasks; sinusoid-5shot is regression; omniglot-5w1s is ..."
            greyed[a] = "; ".join(dict.fromkeys(part for s in suites for part in fits[s]["reason"].split("; ")))
    return ok, greyed


def unfit_list(greyed: dict[str, str]) -> str:
    """Markdown bullets, one per algorithm that fits none of the chosen suites, with the reason."""
    return "\n".join(f"- **{a}** {reason.removeprefix(a + ' ')}" if reason.startswith(a + " ")
                     else f"- **{a}** — {reason}" for a, reason in greyed.items())


def cell_time_estimates(runs: pd.DataFrame, preset: str) -> dict[tuple[str, str], tuple[float, int]]:
    """(suite, algorithm) -> (median wall time in s, number of finished runs) for `preset`."""
    if runs.empty:
        return {}
    done = runs[(runs["status"] == "finished") & (runs["preset"] == preset)]
    g = done.groupby(["suite", "algorithm"])["wall_time_s"]
    return {k: (float(m), int(n)) for (k, m), n in zip(g.median().items(), g.size())}


def run_argv(results_dir: Path, suites: list[str], algorithms: list[str], seeds: str, preset: str,
             device: str = "auto", executor: str = "local", workers: int = 0, ray_address: str = "",
             sets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """`metabench run ...` as an argument list; `sets` are ``--set=ALGO.FIELD=VALUE`` items."""
    # --opt=value: a value can never be read as another option.
    argv = [*CLI, "run", f"--suites={','.join(suites)}", f"--algorithms={','.join(algorithms)}",
            f"--seeds={seeds}", f"--preset={preset}", f"--device={device}", f"--executor={executor}",
            f"--workers={int(workers)}", f"--results-dir={results_dir}", *sets]
    if executor == "ray" and ray_address.strip():
        argv.append(f"--ray-address={ray_address.strip()}")
    return argv


def _run_cli(argv: list[str]) -> str:
    """The command's stdout; MetabenchError with the CLI's one `error:` sentence if it failed."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        raise MetabenchError(lines[-1].removeprefix("error: ") if lines else proc.stderr.strip()[-300:])
    return proc.stdout


def launch(results_dir: Path, suites: list[str], algorithms: list[str], seeds: str, preset: str, device: str,
           executor: str, workers: int, ray_address: str = "", token: str | None = None,
           sets: list[str] | tuple[str, ...] = ()) -> str:
    """Start a detached job through the CLI; its id. MetabenchError with the CLI's sentence if invalid."""
    _allowed(token)
    out = _run_cli([*run_argv(results_dir, suites, algorithms, seeds, preset, device, executor, workers,
                              ray_address, sets), "--detach"])
    return out.split()[1]


def preview(results_dir: Path, suites: list[str], algorithms: list[str], seeds: str, preset: str,
            sets: list[str] | tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str]]:
    """(the cells `metabench run --dry-run --json` lists: suite, entry, seed, state, run id; the
    incompatible pairs as 'ALGO on SUITE: reason'). MetabenchError with the CLI's sentence when
    the spec or an override is invalid."""
    out = json.loads(_run_cli([*run_argv(results_dir, suites, algorithms, seeds, preset, sets=sets),
                               "--dry-run", "--json"]))
    rows = [{"suite": c["suite"], "entry": c["entry"], "seed": c["seed"], "state": c["state"],
             "run id": c["run_id"]} for c in out["cells"]]
    skips = [f"{s['algorithm']} on {s['suite']}: {s['reason']}" for s in out["skipped"]]
    cells = pd.DataFrame(rows, columns=["suite", "entry", "seed", "state", "run id"])
    return cells.astype({"seed": "int64"}), skips


# --- overrides: typed fields prefilled with the preset's values ----------------------------------
def prefill(cat: dict[str, Any], algorithm: str, preset: str, suites: list[str]
            ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(field -> `algorithm`'s value under `preset` on the first chosen suite it fits,
    field -> {suite: value} for the fields whose value differs between the suites it fits)."""
    algo = next(a for a in cat["algorithms"] if a["name"] == algorithm)
    by_id = {s["id"]: s for s in cat["suites"]}
    per_suite = {s: preset_values(algo, preset, by_id[s]) for s in suites if cat["fits"][algorithm][s]["ok"]}
    return _first_and_differences(per_suite, [f["name"] for f in algo["config"]])


def loop_prefill(cat: dict[str, Any], algorithms: list[str], preset: str, suites: list[str]
                 ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The same for the loop settings, over every (algorithm, suite) pair that fits."""
    algos = {a["name"]: a for a in cat["algorithms"]}
    by_id = {s["id"]: s for s in cat["suites"]}
    per_pair = {f"{a} on {s}": loop_values(cat["loop"], algos[a], preset, by_id[s])
                for a in algorithms for s in suites if cat["fits"][a][s]["ok"]}
    return _first_and_differences(per_pair, [f["name"] for f in cat["loop"]["fields"]])


def _first_and_differences(values: dict[str, dict[str, Any]], fields: list[str]):
    if not values:
        return {}, {}
    first = next(iter(values.values()))
    differ = {f: {where: v[f] for where, v in values.items()} for f in fields
              if len({json.dumps(v[f]) for v in values.values()}) > 1}
    return first, differ


def parse_sweep(text: str) -> dict[str, str]:
    """'inner_steps = 1,3; inner_lr = 0.01,0.1' (';' or new lines between fields) ->
    {'inner_steps': '1,3', 'inner_lr': '0.01,0.1'}; the values are checked by the CLI."""
    out: dict[str, str] = {}
    for item in re.split(r"[;\n]", text or ""):
        if not item.strip():
            continue
        name, eq, values = item.partition("=")
        if not eq or not name.strip() or not values.strip():
            raise MetabenchError(f"a sweep is FIELD = VALUE,VALUE,... (e.g. inner_steps = 1,3), got {item.strip()[:60]!r}")
        out[name.strip()] = values.strip()
    return out


def _same(value: Any, preset_value: Any) -> bool:
    if isinstance(value, str) and not isinstance(preset_value, str):  # a tuple typed as 'a:b'
        return value.strip() == format_value(preset_value)
    return value == preset_value


def set_args(target: str, values: dict[str, Any], preset: dict[str, Any], sweep: str = "") -> list[str]:
    """``--set=TARGET.FIELD=VALUE`` for each field whose value differs from the preset's, and
    ``--set=TARGET.FIELD=A,B`` for each swept field (a sweep wins over the field's input)."""
    swept = {k.removeprefix(f"{target}."): v for k, v in parse_sweep(sweep).items()}
    out = [f"--set={target}.{k}={format_value(v)}" for k, v in values.items()
           if k not in swept and not _same(v, preset.get(k))]
    return out + [f"--set={target}.{k}={v}" for k, v in swept.items()]


def _step(value: Any) -> float:
    """A float input's +/- step: one unit of the value's leading digit (0.01 -> 0.01, 0.4 -> 0.1)."""
    import math

    v = abs(float(value or 0))
    return 10.0 ** math.floor(math.log10(v)) if v else 0.01


def _kind(f: dict[str, Any], value: Any) -> str:
    """Which input shows a field holding `value`: checkbox, select, int, float or text."""
    kind = f["type"].removesuffix(" | None")
    if kind == "bool" and isinstance(value, bool):
        return "checkbox"
    if f.get("choices") and isinstance(value, str):
        return "select"
    if kind == "int" and (value is None or (isinstance(value, int) and not isinstance(value, bool))):
        return "int"
    if kind == "float" and (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
        return "float"
    return "text"   # text, tuples ('a:b') and anything else: as the CLI would take it


def _shown(kind: str, value: Any) -> Any:
    """The input's value for a preset value: a float input gets a float, a text input text."""
    if kind == "float" and value is not None:
        return float(value)
    return format_value(value) if kind == "text" else value


def _field_input(f: dict[str, Any], kind: str, value: Any, key: str, help: str) -> Any:
    """One typed input; its value lives in st.session_state[key] (set by `_prefill_state`)."""
    hint = "empty = none" if f["type"].endswith(" | None") else None
    if kind == "checkbox":
        return st.checkbox(f["name"], key=key, help=help)
    if kind == "select":
        return st.selectbox(f["name"], list(dict.fromkeys([*f["choices"], value])), key=key, help=help)
    if kind == "int":
        return st.number_input(f["name"], value=None, step=1, key=key, help=help, placeholder=hint)
    if kind == "float":
        return st.number_input(f["name"], value=None, step=_step(value), format="%g", key=key, help=help,
                               placeholder=hint)
    return st.text_input(f["name"], key=key, help=help)


def _prefill_state(prefix: str, context: Any, shown: dict[str, Any]) -> None:
    """Put the preset's values into the inputs under `prefix` when the preset or suites change
    (and for inputs not yet shown). Through st.session_state, not the widgets' `value`: a keyed
    widget keeps what the browser holds when only its default changes."""
    ctx_key, ctx = f"{prefix}__ctx", json.dumps(context)
    fresh = st.session_state.get(ctx_key) != ctx
    for key, value in shown.items():
        if fresh or key not in st.session_state:
            st.session_state[key] = value
    st.session_state[ctx_key] = ctx


def _inputs(target: str, fields: list[dict[str, Any]], values: dict[str, Any], differ: dict[str, dict[str, Any]],
            prefix: str, context: Any, sweep_example: str) -> list[str] | None:
    """A grid of typed inputs plus a sweep box; the `--set` arguments (None: the sweep is malformed)."""
    kinds = {f["name"]: _kind(f, values.get(f["name"])) for f in fields}
    _prefill_state(prefix, context, {f"{prefix}_{n}": _shown(k, values.get(n)) for n, k in kinds.items()})
    got = {}
    for i, f in enumerate(fields):
        if i % 4 == 0:
            cols = st.columns(4)
        note = ""
        if f["name"] in differ:
            note = (" Differs between the chosen suites (" + ", ".join(f"{w}: {format_value(v)}" for w, v in
                    differ[f["name"]].items()) + "); prefilled from the first, and left unchanged each keeps its own.")
        with cols[i % 4]:
            got[f["name"]] = _field_input(f, kinds[f["name"]], values.get(f["name"]), f"{prefix}_{f['name']}",
                                          (f["doc"] or f["type"]) + f" ({f['type']})" + note)
    sweep = st.text_input("Sweep (comma lists; the cells are every combination)", key=f"{prefix}_sweep",
                          placeholder=sweep_example,
                          help="FIELD = A,B,... ; separate several fields with ';'. A swept field ignores its input above.")
    try:
        return set_args(target, got, values, sweep)
    except MetabenchError as exc:
        st.error(str(exc))
        return None


def settings_inputs(cat: dict[str, Any], algorithm: str, preset: str, suites: list[str]) -> list[str] | None:
    """An expander with `algorithm`'s Config fields prefilled with `preset` on `suites`."""
    algo = next(a for a in cat["algorithms"] if a["name"] == algorithm)
    values, differ = prefill(cat, algorithm, preset, suites)
    prefix = f"cfg_{algorithm}"
    # A constant label: a changed label would close the expander while the user is editing in it.
    with st.expander(f"{algorithm} settings"):
        fitting = [s for s in suites if cat["fits"][algorithm][s]["ok"]]
        st.caption(f"{algo['family']} · {algo['origin']} · prefilled with the **{preset}** preset on "
                   f"{', '.join(fitting)}; a changed value overrides it on every suite.")
        if differ:
            st.caption(f"Prefilled from {fitting[0]}; differs between the chosen suites: {', '.join(differ)} "
                       f"(hover a field's help for each suite's value).")
        if not algo["config"]:
            st.caption("No settings.")
            return []
        return _inputs(algorithm, algo["config"], values, differ, prefix, [preset, suites], "inner_steps = 1,3")


def loop_inputs(cat: dict[str, Any], algorithms: list[str], preset: str, suites: list[str]) -> list[str] | None:
    """An expander with the loop settings (`loop.FIELD`), shared by every algorithm of the run."""
    values, differ = loop_prefill(cat, algorithms, preset, suites)
    with st.expander("Loop settings (every algorithm)"):
        st.caption(f"How the engine drives each cell, prefilled with the **{preset}** preset"
                   + (f" for {next(iter(next(iter(differ.values()))))}" if differ else "")
                   + "; a changed value applies to every algorithm (not to the reference rows that do not train).")
        return _inputs("loop", cat["loop"]["fields"], values, differ, "loop", [preset, suites, algorithms],
                       "meta_steps = 6,12")


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
                        f"{sp.get('preset')} · {sp.get('executor', 'local')}"
                        + "".join(f" · `{k}={','.join(map(format_value, v if isinstance(v, list) else [v]))}`"
                                  for k, v in (sp.get("overrides") or {}).items()))
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
