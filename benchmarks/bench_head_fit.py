"""Where `rfs` spends its test time: the backbone's forward passes against the per-task
scikit-learn LogisticRegression fits (issue 25). Not a comparison with peers.

    python benchmarks/bench_head_fit.py [--suite omniglot-5w1s] [--preset quick] [--steps 300] \
        [--tasks 600] [--threads 2] [--device cpu]

Builds `rfs` with the preset's Config, pre-trains it for `--steps` minibatches (a partly trained
backbone: lbfgs needs more iterations on better-separated features than on random ones, so an
untrained model would understate the fits), then walks the suite's first `--tasks` fixed test
tasks in the engine's batches of 25 and times, per batch: the eval-mode forward passes
(`embed_tasks`), and the head fits (`logistic_heads`) twice, with BLAS/OpenMP limited to one
thread (what `rfs` does) and with the libraries' default thread pools, checking that both give the
same probabilities. Prints seconds in total and per task. Sets OMP_WAIT_POLICY=PASSIVE and the
thread count as the engine's workers do (metabench.engine.local_executor.worker_env).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="omniglot-5w1s")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--steps", type=int, default=300, help="pre-training minibatches before timing")
    ap.add_argument("--tasks", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import numpy as np
    import torch
    import torch.nn.functional as F

    from metabench.algorithms import ALGORITHMS
    from metabench.algorithms.pretrain import embed_tasks
    from metabench.algorithms.rfs import logistic_heads
    from metabench.engine.cell import EVAL_BATCH
    from metabench.suites import make_suite

    torch.set_num_threads(args.threads)
    suite = make_suite(args.suite).prepare(device=args.device, progress=False)
    cls = ALGORITHMS.get("rfs")
    config = cls.preset_config(args.preset, suite)
    algo = cls(suite, config, args.device, 0)
    req, gen = algo.train_request(), torch.Generator().manual_seed(12345)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        algo.meta_train_step(suite.sample("train", req.n_tasks, gen, n_way=req.n_way, n_shot=req.n_shot,
                                          n_query=req.n_query))
    train_s = time.perf_counter() - t0

    forward = fit_one = fit_default = 0.0
    acc, worst = [], 0.0
    for batch in suite.fixed_tasks("test", args.tasks, batch_size=EVAL_BATCH):
        t0 = time.perf_counter()
        zs, zq = embed_tasks(algo.model, batch)
        if zs.is_cuda:
            torch.cuda.synchronize()
        forward += time.perf_counter() - t0
        zs, zq = F.normalize(zs, dim=-1).cpu().numpy(), F.normalize(zq, dim=-1).cpu().numpy()
        ys = batch.support_y.cpu().numpy()
        t0 = time.perf_counter()
        p1 = logistic_heads(zs, ys, zq, config.C, config.max_iter)
        fit_one += time.perf_counter() - t0
        t0 = time.perf_counter()
        p2 = _default_threads_heads(zs, ys, zq, config.C, config.max_iter)
        fit_default += time.perf_counter() - t0
        worst = max(worst, float(np.abs(p1 - p2).max()))
        acc.extend((p1.argmax(-1) == batch.query_y.cpu().numpy()).mean(1).tolist())

    n = len(acc)
    print(f"rfs on {args.suite}, {args.preset} preset, {args.steps} pre-training steps ({train_s:.0f} s), "
          f"{n} fixed test tasks, {args.threads} threads, device {args.device}; accuracy {100 * np.mean(acc):.2f}%")
    print()
    print("| part | seconds | ms per task |")
    print("|---|---|---|")
    for name, s in (("backbone forward passes (embed_tasks)", forward),
                    ("head fits, 1 BLAS/OpenMP thread (rfs)", fit_one),
                    ("head fits, default thread pools", fit_default)):
        print(f"| {name} | {s:.2f} | {1000 * s / n:.1f} |")
    print()
    print(f"largest difference between the two fits' probabilities: {worst:.2e}")


def _default_threads_heads(zs, ys, zq, C, max_iter):
    """`logistic_heads` without the thread limit (the same fits, the libraries' thread pools)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    out = []
    for t in range(len(zs)):
        clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=0).fit(zs[t], ys[t])
        proba = np.zeros((zq.shape[1], int(ys[t].max()) + 1))
        proba[:, clf.classes_] = clf.predict_proba(zq[t])
        out.append(proba)
    return np.stack(out)


if __name__ == "__main__":
    main()
