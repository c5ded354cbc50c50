"""The `metabench` command. Only this module (and the dashboard) prints; the library raises."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from metabench.errors import MetabenchError

# The default benchmark: one image and one regression suite, one algorithm of each of the first two
# families; `metabench run` with no options runs it with the quick preset.
DEFAULT_SUITES = "omniglot-5w1s,sinusoid-5shot"
DEFAULT_ALGORITHMS = "maml,protonet"
EXAMPLE = "metabench run --suites omniglot-5w1s,sinusoid-5shot --algorithms maml,protonet --seeds 0 --preset quick"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="metabench", description="Benchmark meta-learning algorithms.",
                                 epilog=f"example: {EXAMPLE}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="suites, algorithms, and which algorithm fits which suite")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="meta-train and test every compatible (suite, algorithm, seed) cell")
    p.add_argument("--suites", default=DEFAULT_SUITES,
                   help=f"comma-separated suite ids (see `metabench list`; default: {DEFAULT_SUITES})")
    p.add_argument("--algorithms", default=DEFAULT_ALGORITHMS,
                   help=f"comma-separated algorithm names (default: {DEFAULT_ALGORITHMS})")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    p.add_argument("--preset", default="quick", help="smoke | quick | paper (default: quick)")
    p.add_argument("--results-dir", default="results", help="where results go (default: results)")
    p.add_argument("--data-dir", default=None, help="dataset root (default: $METABENCH_DATA, then a per-user cache)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--no-download", action="store_true", help="never download missing datasets")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--executor", default="local", help="local | ray (default: local)")
    p.add_argument("--workers", type=int, default=0,
                   help="cells at once (default 0 = automatic: one per GPU, else workers x threads = cores)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join with --executor ray (default: a local Ray)")
    p.add_argument("--detach", action="store_true",
                   help="start the job in the background and return at once (follow it with `metabench jobs show ID`)")

    p.add_argument("--spec", default=None, metavar="FILE",
                   help="a JSON or TOML run spec {suites, algorithms, seeds, preset, device, overrides} "
                        "instead of those options")
    p.add_argument("--set", action="append", default=[], metavar="ALGO.FIELD=VALUE",
                   help="override an algorithm's Config field (or loop.FIELD: meta_steps, eval_every, "
                        "n_val_tasks, n_test_tasks, log_every, checkpoint_every); repeatable; a comma "
                        "list sweeps (the cells are the product), e.g. --set maml.inner_steps=1,5")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cells the run would have (and which are already finished), run nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: the cells as JSON (for tools)")

    p = sub.add_parser("check", help="run the conformance checks on an algorithm (a plugin or a built-in)",
                       description="Hold an algorithm to the checks the built-ins pass: the class contract, one "
                                   "training step, evaluate and state_dict, then smoke cells on the CPU (finishes, "
                                   "declared finite metrics, no test tasks while training, same seed -> same rows, "
                                   "kill + resume -> same rows). Exit 0 if all pass, 1 if any fails, 2 on bad input.")
    p.add_argument("target", help="package.module:Class, an installed entry-point name, or a built-in name")
    p.add_argument("--suite", default=None,
                   help="suite id (or a folder holding metabench-suite.toml) to check on (default: the first of "
                        "sinusoid-5shot, bandit-k5-n10, omniglot-5w1s, navigation2d ... that the algorithm fits)")
    p.add_argument("--results-dir", default=None,
                   help="keep the smoke cells' results here (default: a temporary folder, removed afterwards)")
    p.add_argument("--data-dir", default=None, help="dataset root (default: $METABENCH_DATA, then a per-user cache)")
    p.add_argument("--no-download", action="store_true", help="never download missing datasets")

    p = sub.add_parser("jobs", help="list, show, cancel or resume jobs (runs started by `metabench run` or the dashboard)")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    j = jsub.add_parser("list", help="every job in the results folder, newest first")
    j.add_argument("--results-dir", default="results")
    j = jsub.add_parser("show", help="a job's cells, progress and log tail")
    j.add_argument("job_id")
    j.add_argument("--results-dir", default="results")
    j = jsub.add_parser("cancel", help="stop a job: running cells stop at their next step, checkpointed")
    j.add_argument("job_id")
    j.add_argument("--results-dir", default="results")
    j = jsub.add_parser("resume", help="run what a cancelled, failed or dead job left unfinished")
    j.add_argument("job_id")
    j.add_argument("--results-dir", default="results")
    j.add_argument("--detach", action="store_true", help="resume in the background and return at once")
    j.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("leaderboard", help="the leaderboard in the terminal")
    p.add_argument("--suite", default=None, help="one suite (default: every suite with results)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--format", default="table",
                   help="table | csv | markdown | latex | parquet (default: table); parquet needs --output")
    p.add_argument("--output", default=None, metavar="FILE", help="write to FILE instead of the terminal")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the reference runs shipped with metabench (shown by default, marked 'reference')")
    p.add_argument("--transductive", default="any", choices=("yes", "no", "any"),
                   help="only transductive entries (marked †), only the others, or both (default)")

    p = sub.add_parser("reproduce", help="re-run a stored cell from its configuration and compare its test rows")
    p.add_argument("run_id", help="a run id (a folder name in the results folder, or of the shipped reference set)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--scratch", default=None, metavar="DIR",
                   help="where the rerun writes (default: a new temporary folder); the stored run is never touched")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    p.add_argument("--no-download", action="store_true", help="never download missing datasets")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("reference", help="the reference result set shipped with metabench: add runs, status, README table")
    fsub = p.add_subparsers(dest="reference_command", metavar="ACTION")
    r = fsub.add_parser("add", help="copy finished, verified runs' Parquet tables (no checkpoints) into the shipped set")
    r.add_argument("results_dir", metavar="RESULTS_DIR", help="the results folder the runs are in (only read)")
    r.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="the runs to add (default: every run folder in it)")
    r.add_argument("--data-dir", default=None, help="dataset root, to fingerprint the suites' test tasks")
    r = fsub.add_parser("status", help="what the manifest intends, and what is finished, running or not run")
    r.add_argument("--watch", action="append", default=[], metavar="RESULTS_DIR",
                   help="a results folder producing cells for the set: its unfinished runs count as running")
    r.add_argument("--write", action="store_true", help="rewrite MANIFEST.toml and MANIFEST.md")
    r = fsub.add_parser("table", help="the README's measured-results table, from the shipped set")
    r.add_argument("--markdown", action="store_true", help="print the Markdown table (the default)")
    r.add_argument("--write", action="store_true", help="write it between the marker comments of --readme")
    r.add_argument("--readme", default=None, metavar="FILE", help="default: README.md beside the package")

    p = sub.add_parser("results", help="check a results folder")
    rsub = p.add_subparsers(dest="results_command", metavar="ACTION")
    r = rsub.add_parser("verify", help="check every results file and checkpoint; exit 1 if any is bad")
    r.add_argument("--results-dir", default="results")
    r.add_argument("--clean", action="store_true",
                   help="delete temporary files of killed writers instead of listing them")

    p = sub.add_parser("data", help="datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    f = dsub.add_parser("fetch", help="download a dataset (checksums verified) into the data folder")
    f.add_argument("dataset", help="omniglot | cifar100")
    f.add_argument("--data-dir", default=None)
    f.add_argument("--base-url", default=None, help="a mirror to download from instead of the official URLs")
    f.add_argument("--checksum", action="append", default=[], metavar="PATH=ALGO:HEX",
                   help="override a file's expected checksum, e.g. images_background.zip=sha256:69c2...")

    p = sub.add_parser("app", help="open the dashboard (streamlit run app.py)")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--port", default=None)
    return ap


def cmd_list(args) -> int:
    from metabench.algorithms import ALGORITHMS, named_variants
    from metabench.suites import SUITES, make_suite

    suites = [make_suite(s) for s in SUITES.names()]
    algos = [ALGORITHMS.get(a) for a in ALGORITHMS.names()]
    fits = {a.name: {s.id: a.fits(s) for s in suites} for a in algos}
    if args.json:
        from metabench.catalog import algorithm_settings, describe_loop, jsonable

        # Per algorithm its Config fields (type, default, doc) and the raw PRESETS / LOOPS tables,
        # so the Launch page can show every field's value under a preset on a suite without torch.
        print(json.dumps(jsonable({
            "suites": [dict(s.describe(), unavailable=s.unavailable(), origin=SUITES.origin(s.id)) for s in suites],
            "algorithms": [{"name": a.name, "family": a.family, "supports": sorted(a.supports),
                            "presets": sorted(a.PRESETS), "origin": ALGORITHMS.origin(a.name),
                            "variants": dict(a.VARIANTS), **algorithm_settings(a)} for a in algos],
            "loop": describe_loop(),
            "fits": {a: {s: {"ok": ok, "reason": r} for s, (ok, r) in row.items()} for a, row in fits.items()},
        }), indent=1))
        return 0
    print("Suites:")
    for s in suites:
        data = f", needs {s.needs_data} data" if s.needs_data else ""
        about = f"metric {s.primary_metric} (v{s.version}{data})"
        print(f"  {s.id:<20} {s.kind:<15} {about:<48}{SUITES.origin(s.id)}")
        if s.unavailable():   # e.g. the MuJoCo suites without the `rl` extra
            print(f"  {'':<20} not available: {s.unavailable()}")
    print("\nAlgorithms:")
    col = max(len(a.name) for a in algos) + 2
    fcol = max(len(a.family) for a in algos) + 2
    scol = max(len(", ".join(sorted(a.supports))) for a in algos) + 2
    for a in algos:
        print(f"  {a.name:<{col}}{a.family:<{fcol}}{', '.join(sorted(a.supports)):<{scol}}{ALGORITHMS.origin(a.name)}")
    named = sorted(named_variants().items())
    if named:
        print("\nNamed variants (tricks the papers did not use; run by name, shown as the entry; docs/variants.md):")
        ncol = max(len(n) for n, _ in named) + 2
        for n, e in named:
            print(f"  {n:<{ncol}}{e}")
    width = max(len(s.id) for s in suites) + 2
    print("\nFits (the algorithms that run on each suite):")
    for s in suites:
        names = [a.name for a in algos if fits[a.name][s.id][0]]
        print(f"  {s.id:<{width}}{', '.join(names) or '-'}")
    # Why not, beyond the task kinds listed above: one line per (algorithm, reason) with the suite
    # id taken out, and the suites it applies to (a full matrix does not fit a terminal).
    why: dict[tuple[str, str], list[str]] = {}
    for a in algos:
        for s in suites:
            ok, reason = fits[a.name][s.id]
            if not ok and s.kind in a.supports:
                why.setdefault((a.name, reason.replace(s.id, "the suite")), []).append(s.id)
    print("\nWhy not, beyond the task kinds above (`metabench list --json` gives the reason for every pair):")
    for (name, reason), ids in why.items():
        print(f"  - {reason}: {', '.join(ids)}")
    if not why:
        print("  (none)")
    return 0


def cmd_run(args) -> int:
    from metabench.data import resolve_data_root
    from metabench.engine.job import run_job
    from metabench.spec import RunSpec, load_spec, parse_list, parse_seeds, parse_sets

    from metabench.suites import add_data_root

    add_data_root(args.data_dir)   # image-folder suites declared under --data-dir (docs/plugins.md)
    sets = parse_sets(args.set)
    if args.spec:   # a spec file; --executor/--workers/--ray-address/--set still apply when given
        spec = load_spec(args.spec)
        extra = {k: v for k, v in (("executor", args.executor), ("workers", args.workers),
                                   ("ray_address", args.ray_address)) if v not in (None, "local", 0)}
        if sets:
            extra["overrides"] = {**spec.overrides, **sets}
        spec = dataclasses.replace(spec, **extra) if extra else spec
    else:
        spec = RunSpec(tuple(parse_list(args.suites, "suites")), tuple(parse_list(args.algorithms, "algorithms")),
                       tuple(parse_seeds(args.seeds)), args.preset, args.device, args.executor, args.workers,
                       args.ray_address, sets)
    spec.validate()
    if args.json and not args.dry_run:
        raise MetabenchError("--json only applies with --dry-run")
    if args.dry_run:
        return _dry_run(spec, Path(args.results_dir), as_json=args.json)
    data_root = resolve_data_root(args.data_dir)
    if args.detach:
        from metabench.engine.job import create_job
        from metabench.engine.jobstore import launch_detached

        job_id, incompatible = create_job(spec, Path(args.results_dir), data_root, allow_download=not args.no_download)
        for s, a, reason in incompatible:
            print(f"skip {a} on {s}: {reason}", file=sys.stderr)
        pid = launch_detached(Path(args.results_dir), job_id)
        print(f"job {job_id} started in the background (pid {pid}).")
        print(f"Follow it:  metabench jobs show {job_id} --results-dir {args.results_dir}")
        print(f"Stop it:    metabench jobs cancel {job_id} --results-dir {args.results_dir}")
        return 0
    report = run_job(spec, Path(args.results_dir), data_root, allow_download=not args.no_download,
                     progress=not args.quiet, say=lambda m: print(m, file=sys.stderr))
    return _report(report, args.results_dir)


def cmd_reproduce(args) -> int:
    from metabench.data import resolve_data_root
    from metabench.engine.reproduce import reproduce
    from metabench.spec import DEVICES

    if args.device not in DEVICES:
        raise MetabenchError(f"--device must be one of {', '.join(DEVICES)}, got {args.device!r}")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=None, desc=f"reproduce {args.run_id}", unit="step", file=sys.stderr, leave=False)

    def progress(info: dict) -> None:
        if bar is not None:
            bar.total = info.get("total") or bar.total
            bar.n = int(info.get("step") or 0)
            bar.set_postfix_str(str(info.get("phase", "")))
            bar.refresh()

    try:
        result = reproduce(args.results_dir, args.run_id, scratch=args.scratch, data_root=resolve_data_root(args.data_dir),
                           device=args.device, allow_download=not args.no_download, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.run_id}: {result.summary()}")
    if result.stored_in is not None and result.stored_in.resolve() != Path(args.results_dir).resolve():
        print(f"stored run: the shipped reference set ({result.stored_in})")
    print(f"rerun written to {result.scratch}")
    return 0 if result.identical or result.inside_spread else 1


def _dry_run(spec, results_dir: Path, as_json: bool = False) -> int:
    """What `metabench run` would do: every cell (its entry and run id) and whether it is done."""
    from metabench.engine.cell import cell_status

    cells, incompatible = spec.plan()
    if as_json:
        print(json.dumps({
            "preset": spec.preset,
            "cells": [{"suite": c.suite, "entry": c.variant, "seed": c.seed, "run_id": c.run_id,
                       "state": cell_status(results_dir, c.run_id) or "to run"} for c in cells],
            "skipped": [{"suite": s, "algorithm": a, "reason": r} for s, a, r in incompatible],
        }, indent=1))
        return 0
    done = 0
    width = max([len(c.variant) for c in cells] + [7])
    print(f"{len(cells)} cell(s), preset {spec.preset}:")
    for c in cells:
        state = cell_status(results_dir, c.run_id) or "to run"
        done += state == "finished"
        print(f"  {c.suite:<20} {c.variant:<{width}} seed {c.seed:<4} {state:<10} {c.run_id}")
    for s, a, reason in incompatible:
        print(f"  skip {a} on {s}: {reason}")
    print(f"{done} of {len(cells)} already finished in {results_dir}; nothing was run (--dry-run).")
    return 0


def _report(report, results_dir) -> int:
    done = len(report.finished) + len(report.skipped_done)
    print(f"job {report.job_id}: {len(report.finished)} cell(s) finished, {len(report.skipped_done)} already done, "
          f"{len(report.failed)} failed, {len(report.diverged)} diverged, {len(report.cancelled)} cancelled, "
          f"{len(report.incompatible)} incompatible, {len(report.unavailable)} suite(s) without data.")
    if report.cancelled:
        print(f"Resume:      metabench jobs resume {report.job_id} --results-dir {results_dir}")
    if done:
        print(f"Leaderboard: metabench leaderboard --results-dir {results_dir}")
        print(f"Dashboard:   METABENCH_RESULTS={results_dir} streamlit run app.py   (or: metabench app "
              f"--results-dir {results_dir})")
    return 1 if report.failed or not (done or report.diverged or report.cancelled) else 0


def _eta(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _latest_metric(cell: dict) -> str:
    """'test accuracy 0.97' for a finished cell, else the latest validation (or training) metric."""
    if cell.get("phase") == "done":
        where, metrics = "test", cell.get("metrics") or {}
    elif cell.get("val"):
        where, metrics = "val", {k: v for k, v in cell["val"].items() if not k.endswith("@0")} or cell["val"]
    else:
        where, metrics = "train", cell.get("metrics") or {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)):
            return f"{where} {k} {v:.4g}"
    return ""


def cmd_check(args) -> int:
    from metabench.conformance import format_result, run_checks
    from metabench.reference import refuse_if_reference

    if args.results_dir:
        refuse_if_reference(args.results_dir, "write the check's smoke cells into")

    def start(report) -> None:
        print(f"metabench check {report.target} ({report.origin}) on {report.suite}, CPU, preset smoke")

    report = run_checks(args.target, args.suite, results_dir=args.results_dir, data_root=args.data_dir,
                        allow_download=not args.no_download, on_start=start,
                        on_result=lambda r: print("  " + format_result(r), flush=True))
    passed = sum(r.ok is True for r in report.results)
    if args.results_dir:
        print(f"the smoke cells' results are in {args.results_dir} (run/, again/, killed/)")
    if report.ok:
        print(f"all {passed} checks passed")
        return 0
    print(f"{len(report.failed)} of {len(report.results)} checks failed: "
          f"{'; '.join(r.title for r in report.failed)}")
    return 1


def cmd_jobs(args) -> int:
    from metabench.engine import jobstore

    results = Path(args.results_dir)
    action = args.jobs_command
    if action == "list":
        jobs = jobstore.list_jobs(results)
        if not jobs:
            print(f"no jobs in {results / jobstore.JOBS}; start one with `{EXAMPLE} --detach`")
            return 0
        print(f"{'job':<24} {'state':<11} {'cells':>9}  {'created':<20} spec")
        for j in jobs:
            sp = j["spec"]
            what = f"{','.join(sp.get('suites', []))} x {','.join(sp.get('algorithms', []))} seeds " \
                   f"{','.join(map(str, sp.get('seeds', [])))} {sp.get('preset', '')} ({sp.get('executor', 'local')})"
            print(f"{j['job_id']:<24} {j['state']:<11} {j['done']:>4}/{j['total']:<4}  {j['created'][:19]:<20} {what}")
        return 0
    if action == "show":
        jdir = jobstore.existing_job_dir(results, args.job_id)
        st = jobstore.read_status(jdir)
        print(f"job {args.job_id}: {st.get('state')} ({st.get('done', 0)}/{st.get('total', 0)} cells done)"
              + (f", pid {st['pid']} on {st.get('host')}" if st.get("pid") else ""))
        if st.get("state") == "dead":
            print(f"  its process is gone (killed or the machine restarted); resume it with "
                  f"`metabench jobs resume {args.job_id} --results-dir {args.results_dir}`")
        for c in jobstore.cell_states(results, jdir, st):
            step = f"step {c.get('step')}/{c.get('total')}" if c.get("step") is not None else ""
            eta = f"eta {_eta(c.get('eta_s'))}" if c["state"] == "running" else ""
            print(f"  {c['run_id']:<48} {c['state']:<11} {step:<16} {_latest_metric(c):<24} {eta}"
                  f"{'  ' + c['error'] if c.get('error') else ''}".rstrip())
        tail = jobstore.log_tail(jdir, 10)
        if tail:
            print("log (last lines):\n" + "\n".join("  " + ln for ln in tail.splitlines()))
        return 0
    if action == "cancel":
        before = jobstore.request_cancel(results, args.job_id)
        if before in jobstore.LIVE or before == "cancelling":
            print(f"cancel requested: the running cells of {args.job_id} stop at their next step, checkpointed "
                  f"(resume with `metabench jobs resume {args.job_id} --results-dir {args.results_dir}`)")
        else:
            print(f"job {args.job_id} is not running ({before}); nothing to cancel")
        return 0
    if action == "resume":
        from metabench.engine.job import execute_job

        jdir = jobstore.existing_job_dir(results, args.job_id)
        state = jobstore.read_status(jdir).get("state")
        if state in jobstore.LIVE:
            raise MetabenchError(f"job {args.job_id} is still {state}; wait for it, or cancel it first")
        if args.detach:
            pid = jobstore.launch_detached(results, args.job_id)
            print(f"job {args.job_id} resumed in the background (pid {pid}).")
            print(f"Follow it:  metabench jobs show {args.job_id} --results-dir {args.results_dir}")
            return 0
        report = execute_job(results, args.job_id, progress=not args.quiet, say=lambda m: print(m, file=sys.stderr))
        return _report(report, args.results_dir)
    raise MetabenchError("usage: metabench jobs list|show ID|cancel ID|resume ID [--results-dir DIR]")


def cmd_leaderboard(args) -> int:
    from metabench.results.export import format_leaderboard
    from metabench.results.query import ResultsDB

    db = ResultsDB(args.results_dir, reference=not args.no_reference)
    if not Path(args.results_dir).is_dir() and not db.suites():
        raise MetabenchError(f"no results folder at {args.results_dir}; run `{EXAMPLE}` first "
                             f"or pass --results-dir")
    suites = [args.suite] if args.suite else db.suites()
    if args.suite and args.suite not in db.suites():
        from metabench.registry import Registry

        known = Registry("suite with results")
        for s in db.suites():
            known.add(s, s)
        raise MetabenchError(known.unknown_message(args.suite) if db.suites() else
                             f"no finished results in {args.results_dir}; run `{EXAMPLE}` first")
    if not suites:
        raise MetabenchError(f"no finished results in {args.results_dir}; run `{EXAMPLE}` first")
    from metabench.results.export import FILE_FORMATS, frame_bytes

    if args.format not in FILE_FORMATS:
        raise MetabenchError(f"unknown --format {args.format!r}; expected one of {' | '.join(FILE_FORMATS)}")
    only = {"yes": True, "no": False}.get(getattr(args, "transductive", "any"))   # issue 22: filter by protocol
    if args.format == "parquet":
        if not args.output:
            raise MetabenchError("--format parquet writes a binary file; add --output FILE (e.g. --output leaderboard.parquet)")
        import pandas as pd

        data = frame_bytes(pd.concat([db.leaderboard(s, transductive=only) for s in suites], ignore_index=True),
                           "parquet")
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output} ({len(suites)} suite(s))")
        return 0
    parts = []
    for i, s in enumerate(suites):
        board = db.leaderboard(s, transductive=only)
        table = format_leaderboard(board, args.format)
        if args.format == "table":
            table = ("\n" if i else "") + f"== {s} ==\n" + table
            # Entries not paired with the best (other fixed test tasks): one line each, why.
            table += "".join(f"\n  note: {v} ({s}): {n}" if (board["source"] != "yours").any() else f"\n  note: {v}: {n}"
                             for v, s, n in zip(board["variant"], board["source"], board["note"]) if n)
        elif args.format == "markdown":
            table = ("\n" if i else "") + f"### {s}\n\n" + table
        elif args.format == "latex" and i:
            table = "\n" + table
        elif args.format == "csv" and i:
            table = "\n".join(table.splitlines()[1:]) + "\n"  # one header for the whole CSV
        parts.append(table)
    text = "".join(parts)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(suites)} suite(s))")
    else:
        print(text.rstrip("\n"))
    return 0


def cmd_reference(args) -> int:
    from metabench.reference import manifest, reference_dir

    action = args.reference_command
    if action == "add":
        from metabench.data import resolve_data_root
        from metabench.reference.add import add_runs

        outcomes = add_runs(args.results_dir, args.run_ids or None, data_root=resolve_data_root(args.data_dir),
                            say=lambda o: print(o, flush=True))
        running = {o.run_id for o in outcomes if o.action == "running"}
        state = manifest.write_manifest(reference_dir(), manifest.previously_running() | running)
        added = sum(o.action in ("added", "replaced") for o in outcomes)
        refused = sum(o.action == "refused" for o in outcomes)
        print(f"{added} run(s) added, {refused} refused, {len(running)} still running; manifest: "
              f"{sum(v == 'finished' for v in state.values())} of {len(state)} intended cells finished "
              f"({manifest.MANIFEST_TOML})")
        readme = Path(__file__).resolve().parent.parent / "README.md"   # a checkout: keep its table current
        if added and readme.exists():
            from metabench.reference.table import BEGIN, update_readme

            if BEGIN in readme.read_text(encoding="utf-8") and update_readme(readme):
                print(f"updated the reference table in {readme}")
        return 1 if refused and not added else 0
    if action == "status":
        running = None
        if args.watch:
            running = {r for d in args.watch for r, s in manifest.shipped_states(Path(d)).items() if s == "running"}
        state = (manifest.write_manifest(reference_dir(), running) if args.write else
                 manifest.states(reference_dir(), manifest.previously_running() if running is None else running))
        cells = manifest.intended_cells()
        for tier in (1, 2):
            mine = [c for c in cells if c.tier == tier]
            counts = {k: sum(state[c.run_id] == k for c in mine) for k in manifest.STATES}
            print(f"tier {tier}: {len(mine)} cells, " + ", ".join(f"{n} {k}" for k, n in counts.items()))
            for c in mine:
                if state[c.run_id] != "not run" or tier == 1:
                    print(f"  {state[c.run_id]:<9} {c.run_id}")
        extra = sorted(set(manifest.shipped_states(reference_dir())) - set(state))
        if extra:
            print("shipped beyond the manifest: " + ", ".join(extra))
        print(f"shipped folder: {reference_dir()}" + (f"; wrote {manifest.MANIFEST_TOML}" if args.write else ""))
        return 0
    if action == "table":
        from metabench.reference.table import markdown_table, update_readme

        if args.write:
            readme = Path(args.readme) if args.readme else Path(__file__).resolve().parent.parent / "README.md"
            try:
                changed = update_readme(readme)
            except ValueError as exc:
                raise MetabenchError(str(exc)) from None
            print(f"{'updated' if changed else 'unchanged'}: the reference table in {readme}")
            return 0
        print(markdown_table(), end="")
        return 0
    raise MetabenchError("usage: metabench reference add RESULTS_DIR [RUN_ID...] | status [--watch DIR] [--write] "
                         "| table [--markdown] [--write]")


def cmd_results(args) -> int:
    from metabench.results.verify import format_report, verify_results

    if args.results_command != "verify":
        raise MetabenchError("usage: metabench results verify [--results-dir DIR] [--clean]")
    report = verify_results(Path(args.results_dir), clean=args.clean)
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_data(args) -> int:
    from metabench.data import fetch_command

    if args.data_command != "fetch":
        raise MetabenchError("usage: metabench data fetch omniglot|cifar100 [--data-dir DIR]")
    checksums = {}
    for item in args.checksum:
        if "=" not in item:
            raise MetabenchError(f"--checksum takes PATH=ALGO:HEX (e.g. images_background.zip=sha256:69c2...), got {item!r}")
        k, v = item.split("=", 1)
        checksums[k] = v
    path = fetch_command(args.dataset, args.data_dir, base_url=args.base_url, checksums=checksums or None)
    print(f"{args.dataset} is ready in {path}")
    return 0


def cmd_app(args) -> int:
    import subprocess

    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.exists():
        raise MetabenchError(f"app.py not found next to the package ({app}); run `streamlit run app.py` "
                             f"from the metabench checkout")
    env = dict(os.environ)
    if args.results_dir:
        env["METABENCH_RESULTS"] = str(Path(args.results_dir).resolve())
    cmd = [sys.executable, "-m", "streamlit", "run", str(app)]
    if args.port:
        cmd += ["--server.port", str(args.port)]
    return subprocess.call(cmd, env=env, cwd=app.parent)


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    handlers = {"list": cmd_list, "run": cmd_run, "jobs": cmd_jobs, "leaderboard": cmd_leaderboard,
                "data": cmd_data, "app": cmd_app, "results": cmd_results, "check": cmd_check,
                "reproduce": cmd_reproduce, "reference": cmd_reference}
    try:
        return handlers[args.command](args)
    except MetabenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `metabench jobs show ID | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: the running cells stopped at a checkpoint; `metabench jobs resume ID` (or the "
              "same command again) continues where they stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
