"""The `metabench` command. Only this module (and the dashboard) prints; the library raises."""
from __future__ import annotations

import argparse
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

    p = sub.add_parser("leaderboard", help="the leaderboard in the terminal")
    p.add_argument("--suite", default=None, help="one suite (default: every suite with results)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--format", default="table",
                   help="table | csv | markdown | latex | parquet (default: table); parquet needs --output")
    p.add_argument("--output", default=None, metavar="FILE", help="write to FILE instead of the terminal")

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
    from metabench.algorithms import ALGORITHMS
    from metabench.suites import SUITES, make_suite

    suites = [make_suite(s) for s in SUITES.names()]
    algos = [ALGORITHMS.get(a) for a in ALGORITHMS.names()]
    fits = {a.name: {s.id: a.fits(s) for s in suites} for a in algos}
    if args.json:
        print(json.dumps({
            "suites": [dict(s.describe(), unavailable=s.unavailable()) for s in suites],
            "algorithms": [{"name": a.name, "family": a.family, "supports": sorted(a.supports),
                            "presets": sorted(a.PRESETS)} for a in algos],
            "fits": {a: {s: {"ok": ok, "reason": r} for s, (ok, r) in row.items()} for a, row in fits.items()},
        }, indent=1))
        return 0
    print("Suites:")
    for s in suites:
        data = f", needs {s.needs_data} data" if s.needs_data else ""
        print(f"  {s.id:<20} {s.kind:<15} metric {s.primary_metric} (v{s.version}{data})")
        if s.unavailable():   # e.g. the MuJoCo suites without the `rl` extra
            print(f"  {'':<20} not available: {s.unavailable()}")
    print("\nAlgorithms:")
    for a in algos:
        print(f"  {a.name:<10} {a.family:<13} {', '.join(sorted(a.supports))}")
    print("\nFits (yes / - with the reason):")
    width = max(len(s.id) for s in suites)
    aw = max([10] + [len(a.name) + 1 for a in algos])   # column width: the longest algorithm name
    print(" " * (width + 4) + "".join(f"{a.name:<{aw}}" for a in algos))
    for s in suites:
        print(f"  {s.id:<{width}}  " + "".join(f"{'yes' if fits[a.name][s.id][0] else '-':<{aw}}" for a in algos))
    reasons = sorted({r for row in fits.values() for ok, r in row.values() if not ok})
    for r in reasons:
        print(f"  - {r}")
    return 0


def cmd_run(args) -> int:
    from metabench.data import resolve_data_root
    from metabench.engine.job import run_job
    from metabench.spec import RunSpec, parse_list, parse_seeds

    spec = RunSpec(tuple(parse_list(args.suites, "suites")), tuple(parse_list(args.algorithms, "algorithms")),
                   tuple(parse_seeds(args.seeds)), args.preset, args.device)
    spec.validate()
    data_root = resolve_data_root(args.data_dir)
    report = run_job(spec, Path(args.results_dir), data_root, allow_download=not args.no_download,
                     progress=not args.quiet, say=lambda m: print(m, file=sys.stderr))
    done = len(report.finished) + len(report.skipped_done)
    print(f"job {report.job_id}: {len(report.finished)} cell(s) finished, {len(report.skipped_done)} already done, "
          f"{len(report.failed)} failed, {len(report.diverged)} diverged, "
          f"{len(report.incompatible)} incompatible, {len(report.unavailable)} suite(s) without data.")
    if done:
        print(f"Leaderboard: metabench leaderboard --results-dir {args.results_dir}")
        print(f"Dashboard:   METABENCH_RESULTS={args.results_dir} streamlit run app.py   (or: metabench app "
              f"--results-dir {args.results_dir})")
    return 1 if report.failed or not (done or report.diverged) else 0


def cmd_leaderboard(args) -> int:
    from metabench.results.export import format_leaderboard
    from metabench.results.query import ResultsDB

    if not Path(args.results_dir).is_dir():
        raise MetabenchError(f"no results folder at {args.results_dir}; run `{EXAMPLE}` first "
                             f"or pass --results-dir")
    db = ResultsDB(args.results_dir)
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
    if args.format == "parquet":
        if not args.output:
            raise MetabenchError("--format parquet writes a binary file; add --output FILE (e.g. --output leaderboard.parquet)")
        import pandas as pd

        data = frame_bytes(pd.concat([db.leaderboard(s) for s in suites], ignore_index=True), "parquet")
        Path(args.output).write_bytes(data)
        print(f"wrote {args.output} ({len(suites)} suite(s))")
        return 0
    parts = []
    for i, s in enumerate(suites):
        table = format_leaderboard(db.leaderboard(s), args.format)
        if args.format == "table":
            table = ("\n" if i else "") + f"== {s} ==\n" + table
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
    handlers = {"list": cmd_list, "run": cmd_run, "leaderboard": cmd_leaderboard, "data": cmd_data,
                "app": cmd_app}
    try:
        return handlers[args.command](args)
    except MetabenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
