"""The commands that show what exists and how it compares: `metabench list`, `leaderboard` and
`app` (the dashboard)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from metabench.cli.parser import EXAMPLE
from metabench.errors import MetabenchError

# The checkout the package sits in (app.py is beside the package, not inside it).
CHECKOUT = Path(__file__).resolve().parent.parent.parent


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


def cmd_app(args) -> int:
    import subprocess

    app = CHECKOUT / "app.py"
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
