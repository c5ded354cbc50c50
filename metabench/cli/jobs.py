"""`metabench jobs list|show|cancel|resume`: the jobs in a results folder (runs started by
`metabench run` or the dashboard's Launch page)."""
from __future__ import annotations

import sys
from pathlib import Path

from metabench.cli.parser import EXAMPLE
from metabench.cli.run import print_report
from metabench.errors import MetabenchError


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
        return print_report(report, args.results_dir)
    raise MetabenchError("usage: metabench jobs list|show ID|cancel ID|resume ID [--results-dir DIR]")
