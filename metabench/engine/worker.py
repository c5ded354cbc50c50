"""Entry point of a cell's own process: `python -m metabench.engine.worker --cell JSON ...`.

Each cell runs in a fresh process so that the engine can set the allocator and thread count for
it, so that a crash in one cell cannot take down the grid, and so that peak memory is per cell.
Progress goes to `RESULTS/<run_id>/progress.json` (atomically, at most once a second); the
parent process turns it into progress bars.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from metabench.fsutil import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="metabench-worker")
    ap.add_argument("--cell", required=True, help="the cell as JSON")
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--job-id", default=None)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from metabench.engine.cell import CellRunner
    from metabench.errors import MetabenchError
    from metabench.spec import Cell

    if args.threads:
        torch.set_num_threads(args.threads)
    cell = Cell.from_json(json.loads(args.cell))
    progress_path = Path(args.results_dir) / cell.run_id / "progress.json"
    last = [0.0]

    def progress(info: dict) -> None:
        t = time.monotonic()
        if info["phase"] == "train" and t - last[0] < 1.0:
            return
        last[0] = t
        atomic_write_json(progress_path, {**info, "run_id": cell.run_id, "updated": time.time()})

    try:
        runner = CellRunner(cell, Path(args.results_dir), args.data_dir, job_id=args.job_id, progress=progress)
        status = runner.run()
    except MetabenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the traceback is in the cell's error.log
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if status == "finished" else 3


if __name__ == "__main__":
    sys.exit(main())
