"""The GPU path, measured (issue 23 §2): one script for a short loan of a GPU machine.

    bash benchmarks/gpu_check.sh                 # on the GPU machine (under 8 minutes on one H100-class GPU)
    python benchmarks/gpu_check.py --cpu-baseline   # here: the 2-core CPU numbers the report compares with

Writes `benchmarks/results/gpu-check-<device>-<date>.md` (and prints it). Sections:

1. every built-in algorithm's smoke cell through `metabench run --device cuda` (each cell's status);
2. MAML second order on omniglot-5w1s with 32 tasks per meta-batch: `loop` vs `vmap` meta-steps/s
   and peak memory, and which one `batching=auto` picks;
3. 500 meta-steps of the `quick` `maml` and `protonet` cells (the algorithm and sampler as the
   engine drives them): steps/s on this device against the 2-core CPU's, read from
   `benchmarks/results/cpu-2core.json` (written by `--cpu-baseline` on the project's CPU machine);
4. host-device synchronisations inside one training step (`torch.cuda.set_sync_debug_mode`) for
   `maml`, `protonet` and `reptile` (target: zero);
5. the smoke grid through `--executor ray` with one GPU (skipped when Ray is not installed);
6. several cells per GPU: 8 short Omniglot cells packed automatically vs one cell per GPU
   (`METABENCH_CELLS_PER_GPU=1`), grid throughput (target: at least 4x).

Without CUDA every GPU section says why it was skipped, and the CPU-runnable parts run on the CPU
(`--device cpu`), so the script itself is tested on machines without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # measure the checkout's metabench, not some installed copy
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
CPU_BASELINE = RESULTS / "cpu-2core.json"
SMOKE_SUITES = "omniglot-5w1s,sinusoid-5shot,bandit-k5-n100,tabular-mdp-n10,navigation2d"


def _env() -> dict[str, str]:
    return {**os.environ, "METABENCH_REFERENCE": "off",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def smoke_grid(device: str, executor: str, data_root: str | None, workdir: Path) -> list[str]:
    """Run every built-in algorithm's smoke cells on ``device``; a table of statuses."""
    from metabench.algorithms import ALGORITHMS

    out = workdir / f"smoke-{executor}"
    cmd = [sys.executable, "-m", "metabench.cli", "run", "--suites", SMOKE_SUITES,
           "--algorithms", ",".join(ALGORITHMS.names()), "--preset", "smoke", "--device", device,
           "--executor", executor, "--results-dir", str(out), "--quiet"]
    if data_root:
        cmd += ["--data-dir", data_root]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    import pandas as pd

    rows = [pd.read_parquet(p).iloc[0] for p in sorted(out.glob("*/runs.parquet"))]
    lines = [f"`{' '.join(cmd[2:])}`: exit {proc.returncode}, {len(rows)} cells in {wall:.0f} s", "",
             "| cell | status | device | wall s |", "|---|---|---|---|"]
    lines += [f"| {r['run_id']} | {r['status']} | {r['device']} | {r['wall_time_s']:.1f} |" for r in rows]
    bad = [r["run_id"] for r in rows if r["status"] != "finished"]
    lines.append(f"\n{len(rows) - len(bad)} of {len(rows)} finished" + (f"; not finished: {', '.join(bad)}" if bad else ""))
    if proc.returncode:
        lines.append("\n```\n" + proc.stderr[-2000:] + "\n```")
    return lines


def packing(data_root: str | None, workdir: Path) -> list[str]:
    """The reference Omniglot grid (maml and protonet, 4 seeds, short loops) with one cell per GPU
    and with the automatic packing: grid throughput in cells per minute."""
    lines = ["| cells per GPU | cells | wall s | cells/min |", "|---|---|---|---|"]
    rates = {}
    for label, per_gpu in (("1", "1"), ("auto", "")):
        out = workdir / f"pack-{label}"
        cmd = [sys.executable, "-m", "metabench.cli", "run", "--suites", "omniglot-5w1s", "--algorithms", "maml,protonet",
               "--seeds", "0,1,2,3", "--preset", "quick", "--device", "cuda", "--results-dir", str(out), "--quiet",
               "--set", "loop.meta_steps=100", "--set", "loop.n_val_tasks=20", "--set", "loop.n_test_tasks=40"]
        if data_root:
            cmd += ["--data-dir", data_root]
        env = {**_env(), "METABENCH_CELLS_PER_GPU": per_gpu} if per_gpu else {
            k: v for k, v in _env().items() if k != "METABENCH_CELLS_PER_GPU"}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        n = len(list(out.glob("*/tasks.parquet")))
        rates[label] = n / wall * 60
        lines.append(f"| {label} | {n} | {wall:.0f} | {rates[label]:.2f} |")
    lines.append(f"\npacked / one per GPU = {rates['auto'] / max(rates['1'], 1e-9):.2f}x (target: at least 4x)")
    return lines


def _algorithm(name: str, suite_id: str, device, data_root, preset: str = "quick", **config):
    import torch

    from metabench.algorithms import ALGORITHMS
    from metabench.suites import make_suite

    suite = make_suite(suite_id)
    suite.prepare(data_root, device, allow_download=False, progress=False)
    cls = ALGORITHMS.get(name)
    algo = cls(suite, cls.preset_config(preset, suite, config or None), device, 0)
    return suite, algo, torch.Generator().manual_seed(0)


def _steps_per_s(suite, algo, gen, steps: int, warmup: int = 3) -> float:
    import torch

    req = algo.train_request()

    def one():
        batch = suite.sample("train", req.n_tasks, gen, n_way=req.n_way, n_shot=req.n_shot, n_query=req.n_query)
        algo.meta_train_step(batch)

    for _ in range(warmup):
        one()
    if algo.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()   # meta_train_step returns floats: every step ends synchronised, as in the engine
    return steps / (time.perf_counter() - t0)


def maml_batching(device, data_root, steps: int) -> list[str]:
    import torch

    lines = ["| batching | meta-steps/s | peak memory MiB |", "|---|---|---|"]
    rates = {}
    for batching in ("loop", "vmap"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        suite, algo, gen = _algorithm("maml", "omniglot-5w1s", device, data_root, meta_batch_size=32,
                                      batching=batching, first_order=False)
        rates[batching] = _steps_per_s(suite, algo, gen, steps)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        lines.append(f"| {batching} | {rates[batching]:.2f} | {peak:.0f} |")
    suite, algo, gen = _algorithm("maml", "omniglot-5w1s", device, data_root, meta_batch_size=32,
                                  batching="auto", first_order=False)
    _steps_per_s(suite, algo, gen, 1, warmup=0)
    lines.append(f"\nvmap / loop = {rates['vmap'] / rates['loop']:.2f}x (target on a GPU: at least 3x); "
                 f"`auto` picked **{algo.batching}** (timings {getattr(algo, 'batching_timings', None)})")
    return lines


def quick_cells(device, data_root, steps: int) -> dict[str, float]:
    out = {}
    for name in ("maml", "protonet"):
        suite, algo, gen = _algorithm(name, "omniglot-5w1s", device, data_root)
        out[name] = _steps_per_s(suite, algo, gen, steps)
    return out


def sync_counts(device, data_root) -> list[str]:
    import torch

    lines = ["| algorithm | synchronisations in one training step |", "|---|---|"]
    for name in ("maml", "protonet", "reptile"):
        suite, algo, gen = _algorithm(name, "omniglot-5w1s", device, data_root)
        req = algo.train_request()
        batch = suite.sample("train", req.n_tasks, gen, n_way=req.n_way, n_shot=req.n_shot, n_query=req.n_query)
        algo.meta_train_step(batch)   # warm-up (auto batching times itself on the first step)
        batch = suite.sample("train", req.n_tasks, gen, n_way=req.n_way, n_shot=req.n_shot, n_query=req.n_query)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                algo.meta_train_step(batch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        where = sorted({str(w.message).splitlines()[0][:80] for w in caught})
        # meta_train_step returns Python floats (the engine's contract), so at least the final
        # read-back of the metrics synchronises; each extra one is a stall inside the step.
        lines.append(f"| {name} | {len(caught)} ({'; '.join(where[:3]) or 'none'}) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("METABENCH_DATA"))
    ap.add_argument("--steps", type=int, default=500, help="meta-steps timed per quick cell (default 500)")
    ap.add_argument("--cpu-baseline", action="store_true",
                    help=f"measure the quick cells on this CPU and write {CPU_BASELINE.relative_to(REPO)}")
    ap.add_argument("--skip-smoke", action="store_true", help="leave out the smoke grids (sections 1 and 5)")
    args = ap.parse_args(argv)
    import torch

    if args.cpu_baseline:
        rates = quick_cells(torch.device("cpu"), args.data_dir, args.steps)
        RESULTS.mkdir(parents=True, exist_ok=True)
        CPU_BASELINE.write_text(json.dumps({
            "machine": f"{os.cpu_count()} CPUs ({cpu_model()}), torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads, alone on the machine", "measured": time.strftime("%Y-%m-%d"),
            "steps": args.steps, "meta_steps_per_s": rates,
            "command": f"python benchmarks/gpu_check.py --cpu-baseline --steps {args.steps}"}, indent=1) + "\n")
        print(CPU_BASELINE.read_text())
        return 0

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else "no CUDA device"
    workdir = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    report = [f"# GPU check: {name}", "",
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; "
              f"{os.cpu_count()} CPUs; command `bash benchmarks/gpu_check.sh`", ""]
    if not cuda:
        report += ["**No CUDA device here** (`torch.cuda.is_available()` is False): the GPU sections are "
                   "skipped; sections 2 and 3 ran on the CPU to test this script.", ""]

    def section(title: str, fn) -> None:
        report.extend([f"## {title}", ""])
        t0 = time.perf_counter()
        try:
            report.extend(fn())
        except Exception as exc:   # one broken section must not lose the others' numbers
            report.append(f"failed: {type(exc).__name__}: {exc}")
        report.extend(["", f"_{time.perf_counter() - t0:.0f} s_", ""])
        print("\n".join(report[-8:]), flush=True)

    if args.skip_smoke:
        pass
    elif cuda:
        section("1. Smoke cells on cuda (`metabench run --device cuda`)",
                lambda: smoke_grid("cuda", "local", args.data_dir, workdir))
    else:
        report += ["## 1. Smoke cells on cuda", "", "skipped: no CUDA device", ""]
    section("2. MAML second order, omniglot-5w1s, 32 tasks: loop vs vmap",
            lambda: maml_batching(device, args.data_dir, steps=10 if cuda else 2))

    def quick() -> list[str]:
        rates = quick_cells(device, args.data_dir, args.steps if cuda else 5)
        base = json.loads(CPU_BASELINE.read_text()) if CPU_BASELINE.exists() else None
        lines = ["| cell | meta-steps/s here | 2-core CPU | ratio |", "|---|---|---|---|"]
        for k, v in rates.items():
            b = (base or {}).get("meta_steps_per_s", {}).get(k)
            lines.append(f"| omniglot-5w1s {k} quick | {v:.2f} | {b if b is None else f'{b:.2f}'} | "
                         f"{'n/a' if not b else f'{v / b:.1f}x'} |")
        lines.append("" if base is None else f"\nCPU baseline: {base['machine']}, {base['measured']} (`{base['command']}`); "
                     "target for maml: at least 10x")
        return lines

    section(f"3. Quick cells, {args.steps if cuda else 5} meta-steps", quick)
    if cuda:
        section("4. Host-device synchronisations in one training step", lambda: sync_counts(device, args.data_dir))
    else:
        report += ["## 4. Host-device synchronisations", "", "skipped: no CUDA device", ""]
    if cuda and not args.skip_smoke:
        try:
            import ray  # noqa: F401
            section("5. Smoke cells through Ray with one GPU", lambda: smoke_grid("cuda", "ray", args.data_dir, workdir))
        except ImportError:
            report += ["## 5. Ray", "", "skipped: ray is not installed (`pip install -e .[ray]`)", ""]
    else:
        report += ["## 5. Smoke cells through Ray with one GPU", "", "skipped: no CUDA device", ""]
    if cuda and not args.skip_smoke:
        section("6. Several cells per GPU: the Omniglot grid packed vs one cell per GPU",
                lambda: packing(args.data_dir, workdir))
    else:
        report += ["## 6. Several cells per GPU", "", "skipped: no CUDA device", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    path = RESULTS / f"gpu-check-{slug}-{time.strftime('%Y%m%d')}.md"
    path.write_text("\n".join(report) + "\n")
    print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
