"""MAML meta-training speed: metabench's MAML (loop and vmap batching) against peers.

Settings (every rate counts meta-iterations: one meta-batch, one Adam step on the initial weights):
  conv4-o2  second-order MAML, Conv-4 "pool" (4 x [conv3x3-64 no bias, batch norm with batch
            statistics, ReLU, max-pool 2]), 5-way 1-shot, 15 queries per class, 32 tasks,
            1 inner SGD step (lr 0.4), Adam 1e-3; random 28x28 images.  The protocol under
            which the peers were timed.  All 75 queries of a task are normalised together
            (metabench: query_groups=1), as the peers do.
  conv4-o1  the same, first-order MAML.
  sine-o2   second-order MAML on sinusoid regression: MLP 1-40-40-1, 25 tasks, K=10 support
            and 10 query points (drawn by metabench's sinusoid-10shot suite), 1 inner step
            (lr 0.01), MSE.  One timed call is a block of 20 meta-iterations.

Implementations:
  metabench-loop   metabench.algorithms.maml.MAML, batching="loop" (what "auto" picks on CPU)
  metabench-vmap   batching="vmap", the whole meta-batch in one torch.func.vmap
  metabench-vmap8  batching="vmap", vmap_chunk=8 (backward per chunk of 8 tasks)
  plain            reference loop: functional_call + autograd.grad(create_graph) + backward per
                   task, one Adam step per meta-batch
  higher           higher 0.2.1, innerloop_ctx per task
  l2l              learn2learn 0.2.0, MAML.clone() / adapt() per task
The peers and `plain` use a torch.nn.Sequential network with the same layers and sizes as
metabench's (conv bias off, BatchNorm2d without running statistics).

Run:  python benchmarks/bench_maml.py [--quick] [--reps N] [--only conv4-o2,sine]
"""
from __future__ import annotations

import sys

import _common
from _common import Case, PeerMissing

WAY, SHOT, QUERY, TASKS = 5, 1, 15, 32
SINE_TASKS, SINE_K, SINE_BLOCK = 25, 10, 20

HIGHER_INSTALL = "pip install higher==0.2.1 --no-deps"
L2L_INSTALL = ("the cython recipe in benchmarks/README.md (learn2learn 0.2.0 is sdist-only "
               "and its shipped C files do not build on Python 3.11)")

CONV_CFG = "5w1s15q, 32 tasks, 1 step, Conv-4 pool"
SINE_CFG = "MLP 1-40-40-1, K=10, 25 tasks, 1 step"


def _cases() -> list[Case]:
    cases = []
    for setting, order in (("conv4-o2", "2nd-order"), ("conv4-o1", "1st-order")):
        cfg = f"{order}, {CONV_CFG}"
        cases += [Case(setting, "metabench-loop", "metabench", cfg, "meta-it/s"),
                  Case(setting, "metabench-vmap", "metabench", cfg, "meta-it/s"),
                  Case(setting, "metabench-vmap8", "metabench", cfg + ", vmap_chunk=8", "meta-it/s"),
                  Case(setting, "plain", "plain", cfg, "meta-it/s"),
                  Case(setting, "higher", "peer", cfg, "meta-it/s"),
                  Case(setting, "l2l", "peer", cfg, "meta-it/s")]
    cfg = f"2nd-order, {SINE_CFG}"
    cases += [Case("sine-o2", "metabench-loop", "metabench", cfg, "meta-it/s"),
              Case("sine-o2", "metabench-vmap", "metabench", cfg, "meta-it/s"),
              Case("sine-o2", "plain", "plain", cfg, "meta-it/s"),
              Case("sine-o2", "higher", "peer", cfg, "meta-it/s"),
              Case("sine-o2", "l2l", "peer", cfg, "meta-it/s")]
    return cases


CASES = _cases()


# ------------------------------------------------------------------------------------ problems
def _conv_problem(device: str):
    """(suite, batch, reference network, loss) for the Conv-4 settings."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from metabench.suites import TaskBatch, make_suite

    g = torch.Generator().manual_seed(0)
    ns, nq = WAY * SHOT, WAY * QUERY
    # metabench's layout: element j has label j % n_way.  query_groups=1: all 75 queries of a
    # task are normalised together, like the peers (metabench's default test protocol uses 15).
    batch = TaskBatch(support_x=torch.randn(TASKS, ns, 1, 28, 28, generator=g),
                      support_y=(torch.arange(ns) % WAY).expand(TASKS, -1).contiguous(),
                      query_x=torch.randn(TASKS, nq, 1, 28, 28, generator=g),
                      query_y=(torch.arange(nq) % WAY).expand(TASKS, -1).contiguous(),
                      n_way=WAY, query_groups=1).to(device)
    layers, c = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(c, 64, 3, padding=1, bias=False),
                   nn.BatchNorm2d(64, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2)]
        c = 64
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, WAY)).to(device)
    return make_suite("omniglot-5w1s"), batch, net, F.cross_entropy


def _sine_problem(device: str):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from metabench.suites import make_suite

    suite = make_suite("sinusoid-10shot").prepare(device="cpu", progress=False)
    batch = suite.sample("train", SINE_TASKS, torch.Generator().manual_seed(0),
                         n_shot=SINE_K, n_query=SINE_K).to(device)
    net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                        nn.Linear(40, 1)).to(device)
    return suite, batch, net, F.mse_loss


# ------------------------------------------------------------------------------ implementations
def _metabench(batch, suite, cfg: dict, device: str):
    from metabench.algorithms.maml import MAML

    algo = MAML(suite, MAML.Config(**cfg), device, seed=0)
    return lambda: algo.meta_train_step(batch), f"batching={algo.batching}"


def _plain(batch, net, loss_fn, inner_lr: float, second_order: bool):
    """The reference loop every MAML tutorial writes, with torch.func.functional_call."""
    import torch
    from torch.func import functional_call

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs, ys, xq, yq = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    T = batch.n_tasks

    def step():
        opt.zero_grad(set_to_none=True)
        params = dict(net.named_parameters())
        total = 0.0
        for t in range(T):
            ls = loss_fn(functional_call(net, params, (xs[t],)), ys[t])
            grads = torch.autograd.grad(ls, list(params.values()), create_graph=second_order)
            fast = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
            lq = loss_fn(functional_call(net, fast, (xq[t],)), yq[t])
            (lq / T).backward()
            total += lq.item()
        opt.step()
        return total / T

    return step, "functional_call + autograd.grad"


def _higher(batch, net, loss_fn, inner_lr: float, second_order: bool):
    import torch

    try:
        import higher
    except ImportError as e:
        raise PeerMissing(f"higher not installed; install with: {HIGHER_INSTALL}") from e
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    inner_opt = torch.optim.SGD(net.parameters(), lr=inner_lr)
    params = list(net.parameters())
    xs, ys, xq, yq = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    T = batch.n_tasks

    def step():
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for t in range(T):
            with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False,
                                      track_higher_grads=second_order) as (fnet, diffopt):
                diffopt.step(loss_fn(fnet(xs[t]), ys[t]))
                lq = loss_fn(fnet(xq[t]), yq[t]) / T
                if second_order:
                    lq.backward()
                else:
                    # track_higher_grads=False detaches the fast weights: first-order MAML adds
                    # the gradient with respect to them to the initial weights by hand.
                    for p, g in zip(params, torch.autograd.grad(lq, list(fnet.parameters()))):
                        p.grad = g if p.grad is None else p.grad + g
            total += lq.item()
        opt.step()
        return total

    return step, "innerloop_ctx"


def _l2l(batch, net, loss_fn, inner_lr: float, second_order: bool):
    import torch

    algorithms, how = _common.import_peer("learn2learn.algorithms", L2L_INSTALL, bypass=("learn2learn",))
    maml = algorithms.MAML(net, lr=inner_lr, first_order=not second_order)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
    xs, ys, xq, yq = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    T = batch.n_tasks

    def step():
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for t in range(T):
            learner = maml.clone()
            learner.adapt(loss_fn(learner(xs[t]), ys[t]))
            lq = loss_fn(learner(xq[t]), yq[t]) / T
            lq.backward()
            total += lq.item()
        opt.step()
        return total

    return step, how


def build(args):
    """name -> builder(args) -> (call, units per call, note), for _common.worker_main."""
    def builder(case: Case):
        def make(args):
            dev = args.device
            if case.setting.startswith("conv4"):
                suite, batch, net, loss_fn = _conv_problem(dev)
                second, inner_lr, block = case.setting == "conv4-o2", 0.4, 1
                mb_cfg = dict(arch="pool", meta_batch_size=TASKS, n_query=QUERY, first_order=not second)
            else:
                suite, batch, net, loss_fn = _sine_problem(dev)
                second, inner_lr, block = True, 0.01, SINE_BLOCK
                mb_cfg = dict(inner_lr=inner_lr, meta_batch_size=SINE_TASKS, train_shot=SINE_K,
                              n_query=SINE_K, hidden=40)
            if case.impl.startswith("metabench"):
                mb_cfg["batching"] = "loop" if case.impl == "metabench-loop" else "vmap"
                mb_cfg["vmap_chunk"] = 8 if case.impl == "metabench-vmap8" else 0
                step, note = _metabench(batch, suite, mb_cfg, dev)
            else:
                impl = {"plain": _plain, "higher": _higher, "l2l": _l2l}[case.impl]
                step, note = impl(batch, net, loss_fn, inner_lr, second)

            def call():
                for _ in range(block):
                    step()
            return call, block, note
        return make
    return {c.name: builder(c) for c in CASES}


def summary(cases: list[Case], recs: dict) -> list[str]:
    lines = []
    for setting in dict.fromkeys(c.setting for c in cases):
        rate = {c.impl: recs[c.name]["rate"] for c in cases
                if c.setting == setting and "rate" in recs[c.name]}
        vmaps = {k: v for k, v in rate.items() if k.startswith("metabench-vmap")}
        if "metabench-loop" in rate and vmaps:
            best = max(vmaps, key=vmaps.get)
            r = vmaps[best] / rate["metabench-loop"]
            verdict = ("a tie (within 5%, the run-to-run noise)" if abs(r - 1) < 0.05
                       else "vmap is faster" if r > 1 else "loop is faster")
            lines.append(f"{setting}: batching on this device: {verdict}; {best} runs at {r:.2f}x "
                         "of metabench-loop (batching='auto' times both on a cell's first meta-batch and keeps the faster)")
        peer = _common.best_peer([c for c in cases if c.setting == setting], recs)
        if "metabench-loop" in rate and peer is not None:
            r = rate["metabench-loop"] / recs[peer.name]["rate"]
            lines.append(f"{setting}: metabench-loop runs at {r:.2f}x of the "
                         f"fastest peer ({peer.impl}): "
                         + ("at least as fast" if r >= 1 else "slower, but within the 5% run-to-run noise"
                            if r >= 0.95 else "SLOWER"))
            mine = max((k for k in rate if k.startswith("metabench")), key=rate.get)
            if mine != "metabench-loop":
                lines.append(f"{setting}: the fastest metabench batching ({mine}) runs at "
                             f"{rate[mine] / recs[peer.name]['rate']:.2f}x of the fastest peer")
    return lines


def _reference_name(name: str) -> str:
    """metabench parameter name -> the name of the same tensor in the nn.Sequential network."""
    if name.startswith("head."):
        return "17." + name.split(".")[1]
    kind, i, leaf = name.split(".")
    return {"convs": f"{4 * int(i)}.{leaf}", "norms": f"{4 * int(i) + 1}.{leaf}",
            "layers": f"{2 * int(i)}.{leaf}"}[kind]


def check(args) -> int:
    """Same initial weights and data, float64: every implementation's meta-gradient must match
    metabench-loop's (same maths -> ~1e-15 relative).  Shows the race is like for like."""
    import copy
    from dataclasses import replace

    import torch
    from metabench.algorithms.maml import MAML

    torch.set_num_threads(args.threads)
    ok = True
    for setting in ("conv4-o2", "conv4-o1", "sine-o2"):
        if setting.startswith("conv4"):
            suite, batch, net, loss_fn = _conv_problem("cpu")
            n = 4  # tasks: enough to mix tasks, small enough to be quick
            second, lr = setting == "conv4-o2", 0.4
            cfg = dict(arch="pool", meta_batch_size=n, n_query=QUERY, first_order=not second)
        else:
            suite, batch, net, loss_fn = _sine_problem("cpu")
            n, second, lr = SINE_TASKS, True, 0.01
            cfg = dict(inner_lr=lr, meta_batch_size=n, train_shot=SINE_K, n_query=SINE_K, hidden=40)
        f64 = (lambda x: x.double()) if setting == "sine-o2" else (lambda x: x)
        batch = replace(batch, support_x=batch.support_x[:n].double(), query_x=batch.query_x[:n].double(),
                        support_y=f64(batch.support_y[:n]), query_y=f64(batch.query_y[:n]))
        init, ref = None, None
        for case in [c for c in CASES if c.setting == setting]:
            if case.impl.startswith("metabench"):
                algo = MAML(suite, MAML.Config(**cfg, batching="loop" if case.impl.endswith("loop") else "vmap",
                                               vmap_chunk=2 if case.impl.endswith("8") else 0), "cpu", seed=0)
                model = algo.model.double()
                if init is None:
                    init = {k: v.detach().clone() for k, v in model.named_parameters()}
                model.load_state_dict(init, strict=False)
                algo.meta_train_step(batch)
                grads = {k: p.grad for k, p in model.named_parameters()}
            else:
                ref_net = copy.deepcopy(net).double()
                ref_net.load_state_dict({_reference_name(k): v for k, v in init.items()}, strict=False)
                try:
                    step, _ = {"plain": _plain, "higher": _higher, "l2l": _l2l}[case.impl](
                        batch, ref_net, loss_fn, lr, second)
                except PeerMissing as e:
                    print(f"[check] {case.name}: skipped ({e})")
                    continue
                step()  # the gradients stay in .grad after the Adam step
                named = dict(ref_net.named_parameters())
                grads = {k: named[_reference_name(k)].grad for k in init}
            flat = torch.cat([grads[k].flatten() for k in init])
            ref = flat if ref is None else ref
            rel = ((flat - ref).abs().max() / ref.abs().max()).item()
            ok &= rel < 1e-9
            print(f"[check] {case.name:26s} float64 meta-gradient vs metabench-loop: rel diff {rel:.1e}"
                  + ("" if rel < 1e-9 else "  MISMATCH"), flush=True)
    return 0 if ok else 1


def main() -> int:
    p = _common.make_parser(__doc__.splitlines()[0], reps=3, warmup=2, rounds=2)
    p.add_argument("--check", action="store_true",
                   help="compare every implementation's meta-gradient in float64 (one process) and exit")
    args = p.parse_args()
    _common.finish_args(args)
    if args.check:
        return check(args)
    if args.worker:
        return _common.worker_main(args, build(args))
    return _common.driver_main(__file__, "MAML meta-training speed", CASES, args, summary)


if __name__ == "__main__":
    sys.exit(main())
