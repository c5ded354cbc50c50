"""The commands that train cells: `metabench run` (and its --dry-run), `reproduce` and `check`.
`jobs resume` reports through `print_report` here too, so a job reads the same however it was run."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from metabench.errors import MetabenchError


def cmd_run(args) -> int:
    from metabench.datafiles import resolve_data_root
    from metabench.engine.job import run_job
    from metabench.overrides import parse_sets
    from metabench.spec import RunSpec, load_spec, parse_list, parse_seeds

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
        return dry_run(spec, Path(args.results_dir), as_json=args.json)
    data_root = resolve_data_root(args.data_dir)
    if args.detach:
        from metabench.engine.job import create_job
        from metabench.engine.jobstore import launch_detached

        job_id, incompatible = create_job(spec, Path(args.results_dir), data_root, allow_download=not args.no_download,
                                          deterministic=args.deterministic)
        for s, a, reason in incompatible:
            print(f"skip {a} on {s}: {reason}", file=sys.stderr)
        pid = launch_detached(Path(args.results_dir), job_id)
        print(f"job {job_id} started in the background (pid {pid}).")
        print(f"Follow it:  metabench jobs show {job_id} --results-dir {args.results_dir}")
        print(f"Stop it:    metabench jobs cancel {job_id} --results-dir {args.results_dir}")
        return 0
    report = run_job(spec, Path(args.results_dir), data_root, allow_download=not args.no_download,
                     progress=not args.quiet, say=lambda m: print(m, file=sys.stderr),
                     deterministic=args.deterministic)
    return print_report(report, args.results_dir)


def cmd_reproduce(args) -> int:
    from metabench.datafiles import resolve_data_root
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


def dry_run(spec, results_dir: Path, as_json: bool = False) -> int:
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


def print_report(report, results_dir) -> int:
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
