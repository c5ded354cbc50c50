"""Shared machinery of the hand-run speed comparisons in `benchmarks/` (never part of pytest).

Every script is both a driver and a worker.  The driver runs each measurement ("case") in its
own fresh Python process (`--worker NAME`), with the tuned glibc malloc that metabench's engine
uses for its cells, collects one `RESULT {json}` line per process and prints a markdown table
of ratios against baselines measured in the same run.  A worker builds its case, warms it up,
times `reps` calls and reports the median rate and the process's peak RSS.

Peer libraries are optional: a missing one is reported as skipped, with the command that
installs it (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # measure the checkout's metabench, not some installed copy
    sys.path.insert(0, str(REPO))

# glibc hands every freed block above 32 MiB back to the kernel, so each iteration page-faults
# its activations back in (10-80% slower, measured on the peer
# libraries' loops).  metabench's engine
# sets this for its cells, so every measured process here gets it too.
TUNED_MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"

# A case whose process shared the machine with more than this much foreign CPU work is measured
# again (up to --retries times) and flagged in the table if it stays disturbed.
DISTURBED = 0.05

PEER_DISTS = ("torch", "numpy", "higher", "learn2learn", "easyfsl")


class PeerMissing(Exception):
    """A peer library is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Case:
    """One measurement.  Rows of one `setting` are compared with each other."""

    setting: str   # e.g. "conv4-o2"
    impl: str      # e.g. "metabench-loop"
    kind: str      # "metabench", "peer" (a library) or "plain" (the hand-written reference loop)
    config: str    # human-readable protocol, shown in the table
    unit: str      # what the rate counts, e.g. "meta-it/s"

    @property
    def name(self) -> str:
        return f"{self.setting}/{self.impl}"


# --------------------------------------------------------------------------------- worker side
def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux); includes ~300 MiB
    for importing torch."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], warmup: int, reps: int, device: str) -> list[float]:
    """Wall-clock seconds of `reps` calls of `fn`, after `warmup` untimed calls (the first
    calls page-fault fresh memory and fill allocator caches)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def import_peer(module: str, install: str, bypass: tuple[str, ...] = ()):
    """Import a peer library's submodule.

    A normal import first.  learn2learn and easyfsl import torchvision (and learn2learn gym) in
    their package `__init__`; the only torchvision wheels on PyPI are CUDA builds that cannot load
    next to a CPU torch.  So on failure the packages in `bypass` are replaced by bare namespace
    modules (their `__init__` never runs) and the submodule, which needs neither, is loaded.
    Raises PeerMissing(`install`) when the library is not installed.
    """
    if module in sys.modules:  # imported before in this process (possibly with the bypass)
        return sys.modules[module], "already imported"
    top = module.split(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        raise PeerMissing(f"{top} not installed; install with: {install}")
    try:
        return importlib.import_module(module), "normal import"
    except Exception as e:  # noqa: BLE001 - any failure of the package __init__
        first_error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            del sys.modules[name]
    root = list(importlib.util.find_spec(top).submodule_search_locations)[0]
    for pkg in bypass:
        parts = pkg.split(".")
        mod = types.ModuleType(pkg)
        mod.__path__ = [os.path.join(root, *parts[1:])]
        mod.__package__ = pkg
        sys.modules[pkg] = mod
        if len(parts) > 1:
            setattr(sys.modules[".".join(parts[:-1])], parts[-1], mod)
    return importlib.import_module(module), f"package __init__ bypassed ({first_error})"


def worker_main(args, builders: dict[str, Callable]) -> int:
    """Build case `args.worker`, time it and print one RESULT line.

    A builder takes `args` and returns `(call, units_per_call, note)`: `call()` runs one timed
    unit of work (e.g. one meta-iteration, or a block of them), `units_per_call` is how many
    units of the rate one call is.
    """
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rec: dict = {"name": args.worker, "threads": torch.get_num_threads(),
                 "malloc": os.environ.get("GLIBC_TUNABLES", "default")}
    try:
        call, units, note = builders[args.worker](args)
    except PeerMissing as e:
        rec["skipped"] = str(e)
        print("RESULT " + json.dumps(rec), flush=True)
        return 0
    times = time_calls(call, args.warmup, args.reps, args.device)
    med = statistics.median(times)
    rec.update(rate=units / med, median_s=med, times_s=[round(t, 4) for t in times],
               units_per_call=units, note=note, peak_rss_mib=round(peak_rss_mib(), 1))
    if args.device.startswith("cuda"):
        rec["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print("RESULT " + json.dumps(rec), flush=True)
    return 0


# --------------------------------------------------------------------------------- driver side
def make_parser(description: str, reps: int, warmup: int, rounds: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="1 round, 1 warm-up call, 2 reps: a smoke check, not a measurement")
    p.add_argument("--reps", type=int, default=reps, help=f"timed calls per process (default {reps})")
    p.add_argument("--rounds", type=int, default=rounds,
                   help=f"processes per case, interleaved with the other cases; the rate is the median "
                        f"of all rounds x reps timed calls (default {rounds})")
    p.add_argument("--warmup", type=int, default=warmup, help=f"untimed calls first (default {warmup})")
    p.add_argument("--only", default="",
                   help="comma-separated substrings of case names (see --list); the plain-loop "
                        "baseline of every selected setting always runs too")
    p.add_argument("--list", action="store_true", help="print the case names and exit")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per process")
    p.add_argument("--device", default="cpu", help="cpu (measured) or cuda (untested)")
    p.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                   help="tuned: GLIBC_TUNABLES as metabench's engine sets it for cells")
    p.add_argument("--timeout", type=int, default=600, help="seconds per case before it is killed")
    p.add_argument("--retries", type=int, default=2,
                   help="measure a case again (after waiting for a quiet spell) when other processes "
                        f"used more than {DISTURBED:.0%} of the CPUs while it ran (default 2)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def finish_args(args) -> None:
    if args.quick:
        args.reps, args.warmup, args.rounds = 2, 1, 1
    if args.reps < 1 or args.rounds < 1 or args.warmup < 0:
        raise SystemExit(f"--reps and --rounds must be >= 1 and --warmup >= 0, "
                         f"got {args.reps}, {args.rounds} and {args.warmup}")


def select(cases: list[Case], only: str) -> list[Case]:
    if not only:
        return cases
    keys = [k.strip() for k in only.split(",") if k.strip()]
    chosen = {c.name for c in cases if any(k in c.name for k in keys)}
    if not chosen:
        raise SystemExit(f"--only {only!r} matches no case; cases: {', '.join(c.name for c in cases)}")
    settings = {c.setting for c in cases if c.name in chosen}
    chosen |= {c.name for c in cases if c.setting in settings and c.kind == "plain"}
    return [c for c in cases if c.name in chosen]


def run_cases(script: str, cases: list[Case], args) -> dict[str, dict]:
    """Run every case in its own process, `args.rounds` times, cases interleaved (so a slow
    spell of the machine or an unlucky process does not land on one case); name -> record."""
    runs: dict[str, list[dict]] = {c.name: [] for c in cases}
    for r in range(args.rounds):
        for name, rec in _run_round(script, cases, args, f"round {r + 1}/{args.rounds}").items():
            runs[name].append(rec)
    out = {}
    for name, recs in runs.items():
        good = [r for r in recs if "rate" in r]
        if len(good) < len(recs):
            out[name] = next(r for r in recs if "rate" not in r)
            continue
        times = [t for r in good for t in r["times_s"]]
        units = good[0]["units_per_call"]
        out[name] = {**good[0], "rate": units / statistics.median(times), "times_s": times,
                     "round_rates": [r["rate"] for r in good],
                     "peak_rss_mib": max(r["peak_rss_mib"] for r in good),
                     "others_cpu_share": max(r["others_cpu_share"] for r in good)}
    return out


def _run_round(script: str, cases: list[Case], args, label: str) -> dict[str, dict]:
    env = dict(os.environ)
    if args.malloc == "tuned":
        env["GLIBC_TUNABLES"] = TUNED_MALLOC
    else:
        env.pop("GLIBC_TUNABLES", None)
    out = {}
    for i, case in enumerate(cases, 1):
        for attempt in range(args.retries + 1):
            rec, share, wall = _run_case(script, case, args, env)
            print(f"[{label}, {i}/{len(cases)}] {case.name}: " + (
                f"{rec['rate']:.3f} {case.unit}, peak RSS {rec['peak_rss_mib']:.0f} MiB" if "rate" in rec
                else rec.get("skipped") or rec.get("error")) + f"  ({wall:.0f} s)", file=sys.stderr, flush=True)
            if "rate" not in rec or share <= DISTURBED or attempt == args.retries:
                break
            print(f"    disturbed: other processes used {share:.0%} of the CPUs meanwhile; "
                  "waiting for a quiet spell, then measuring again", file=sys.stderr, flush=True)
            _wait_quiet(300)
        out[case.name] = rec
    return out


def _run_case(script: str, case: Case, args, env) -> tuple[dict, float, float]:
    """One worker process: (record, share of the CPUs used by other processes meanwhile, wall s)."""
    cmd = [sys.executable, script, "--worker", case.name, "--reps", str(args.reps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device]
    t0, busy0, mine0 = time.perf_counter(), _busy_cpu_s(), _children_cpu_s()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode == 0 and lines:
            rec = json.loads(lines[-1][len("RESULT "):])
        else:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            rec = {"name": case.name, "error": f"exit {proc.returncode}: {tail[:200]}"}
    except subprocess.TimeoutExpired:
        rec = {"name": case.name, "error": f"timed out after {args.timeout} s"}
    wall = time.perf_counter() - t0
    share = _others_share(busy0, mine0, wall)
    rec["others_cpu_share"] = round(share, 3)
    return rec, share, wall


def _others_share(busy0: float, mine0: float, wall: float) -> float:
    """Share of the machine's CPUs used since (busy0, mine0) by processes other than our workers."""
    others = (_busy_cpu_s() - busy0) - (_children_cpu_s() - mine0)
    return max(others, 0.0) / (max(wall, 1e-9) * (os.cpu_count() or 1))


def _wait_quiet(max_s: float) -> None:
    """Sleep until a 10 s spell in which other processes use under DISTURBED of the CPUs."""
    end = time.perf_counter() + max_s
    while time.perf_counter() < end:
        busy0, mine0 = _busy_cpu_s(), _children_cpu_s()
        time.sleep(10)
        if _others_share(busy0, mine0, 10) < DISTURBED:
            return


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes, /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _fmt_rate(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def best_peer(setting_cases: list[Case], recs: dict[str, dict]) -> Case | None:
    done = [c for c in setting_cases if c.kind in ("peer", "plain") and "rate" in recs[c.name]]
    return max(done, key=lambda c: recs[c.name]["rate"], default=None)


def table(cases: list[Case], recs: dict[str, dict]) -> str:
    """Markdown table: one row per case; ratios within each setting."""
    rows = ["| setting | implementation | config | rate (median) | per process | vs fastest peer "
            "| vs plain loop | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|"]
    for setting in dict.fromkeys(c.setting for c in cases):
        group = [c for c in cases if c.setting == setting]
        peer = best_peer(group, recs)
        plain = next((c for c in group if c.kind == "plain" and "rate" in recs[c.name]), None)
        for c in group:
            r = recs[c.name]
            if "rate" not in r:
                why = r.get("skipped") or r.get("error")
                rows.append(f"| {setting} | {c.impl} | {c.config} | {why} | - | - | - | - |")
                continue
            vs_peer = f"{r['rate'] / recs[peer.name]['rate']:.2f}x" if peer else "-"
            vs_plain = f"{r['rate'] / recs[plain.name]['rate']:.2f}x" if plain else "-"
            label = f"**{c.impl}**" if c.kind == "metabench" else c.impl
            if r["others_cpu_share"] > DISTURBED:
                label += " (disturbed)"
            per = " / ".join(_fmt_rate(x) for x in r["round_rates"])
            rows.append(f"| {setting} | {label} | {c.config} | {_fmt_rate(r['rate'])} {c.unit} | {per} | "
                        f"{vs_peer} | {vs_plain} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(rows)


def header(args, title: str) -> str:
    import torch

    versions = []
    for dist in PEER_DISTS:
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    return "\n".join([
        f"## {title}",
        "",
        f"- {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, `{cmd}`",
        f"- {cpu}, {os.cpu_count()} logical CPUs, device {args.device}, {args.threads} torch threads, "
        f"Python {platform.python_version()}, {', '.join(versions)}",
        f"- each case in its own process, malloc {args.malloc}"
        + (f" (`GLIBC_TUNABLES={TUNED_MALLOC}`)" if args.malloc == "tuned" else "")
        + f", {args.rounds} process(es) per case (rounds, cases interleaved), each {args.warmup} "
        f"warm-up call(s) then {args.reps} timed; rate = median of the {args.rounds * args.reps} timed calls"
        + ("  **(--quick: a smoke check, not a measurement)**" if args.quick else ""),
        f"- torch MKL {torch.backends.mkl.is_available()}, oneDNN {torch.backends.mkldnn.is_available()}",
    ])


def driver_main(script: str, title: str, cases: list[Case], args, summary: Callable) -> int:
    cases = select(cases, args.only)
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    recs = run_cases(script, cases, args)
    print(header(args, title))
    shares = [r["others_cpu_share"] for r in recs.values() if "others_cpu_share" in r]
    worst = max(shares, default=0.0)
    print(f"- other processes used at most {worst:.0%} of the CPUs while a kept measurement ran"
          + (f"  **WARNING: rows marked (disturbed) shared the machine; rerun on a quiet one**"
             if worst > DISTURBED else ""))
    print()
    print(table(cases, recs))
    print()
    for line in summary(cases, recs):
        print(f"- {line}")
    errors = [n for n, r in recs.items() if "error" in r]
    if errors:
        print(f"\nFAILED: {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0
