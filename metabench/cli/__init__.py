"""The `metabench` command. Only this package (and the dashboard) prints; the library raises.

One module per concern: `parser` (every option), `run` (run, reproduce, check), `jobs`,
`browse` (list, leaderboard, app) and `files` (reference, results verify, data fetch). `main` is the
console entry point (pyproject's [project.scripts]) and `python -m metabench.cli` runs it too."""
from __future__ import annotations

import os
import sys

from metabench.cli.browse import cmd_app, cmd_leaderboard, cmd_list
from metabench.cli.files import cmd_data, cmd_reference, cmd_results
from metabench.cli.jobs import cmd_jobs
from metabench.cli.parser import build_parser
from metabench.cli.run import cmd_check, cmd_reproduce, cmd_run
from metabench.errors import MetabenchError


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
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
