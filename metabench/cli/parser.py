"""The `metabench` command's argument parser: every subcommand, option and help text in one place,
so `metabench --help` and docs/cli.md can be checked against one function."""
from __future__ import annotations

import argparse

# The default benchmark: one image and one regression suite, one algorithm of each of the first two
# families; `metabench run` with no options runs it with the quick preset.
DEFAULT_SUITES = "omniglot-5w1s,sinusoid-5shot"
DEFAULT_ALGORITHMS = "maml,protonet"
EXAMPLE = "metabench run --suites omniglot-5w1s,sinusoid-5shot --algorithms maml,protonet --seeds 0 --preset quick"


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--deterministic", action="store_true",
                   help="torch deterministic algorithms in every cell (CUDA runs are not bit-reproducible "
                        "without it; slower; recorded in each run's config)")

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
