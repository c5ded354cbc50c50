"""ProtoNet training speed: metabench's ProtoNet against easyfsl and a plain loop.

Settings (rates count training episodes: embed support and query with the Conv-4, prototypes =
class means of the support embeddings, cross-entropy over distances, backward, Adam 1e-3):
  5w1s15q   5-way 1-shot, 15 queries per class (80 images per episode)
  20w5s15q  20-way 5-shot, 15 queries per class (400 images per episode)
Conv-4 "pool": 4 x [conv3x3-64 no bias, BatchNorm2d with running statistics, ReLU, max-pool 2],
64-d embedding; random 28x28 images, one episode per step.

Implementations:
  metabench  metabench.algorithms.protonet.ProtoNet, meta_train_step on a TaskBatch of 1 task
  plain      reference loop: one backbone call on cat(support, query), squared Euclidean distance
  easyfsl    easyfsl 1.5.0 PrototypicalNetworks: process_support_set + forward (two backbone
             calls, so batch-norm statistics differ; Euclidean distance via cdist)

Run:  python benchmarks/bench_protonet.py [--quick] [--reps N] [--only 20w5s]
"""
from __future__ import annotations

import sys

import _common
from _common import Case

SETTINGS = {"5w1s15q": (5, 1, 15, "omniglot-5w1s"), "20w5s15q": (20, 5, 15, "omniglot-20w5s")}
EASYFSL_INSTALL = "pip install easyfsl==1.5.0 --no-deps"

CASES = [Case(s, impl, kind, f"{w}-way {k}-shot, {q} queries/class, Conv-4 pool", "episodes/s")
         for s, (w, k, q, _) in SETTINGS.items()
         for impl, kind in (("metabench", "metabench"), ("plain", "plain"), ("easyfsl", "peer"))]


def _problem(setting: str, device: str):
    import torch
    import torch.nn as nn
    from metabench.suites import TaskBatch

    way, shot, query, _ = SETTINGS[setting]
    g = torch.Generator().manual_seed(0)
    ns, nq = way * shot, way * query
    # metabench's layout: element j has label j % n_way
    batch = TaskBatch(support_x=torch.randn(1, ns, 1, 28, 28, generator=g),
                      support_y=(torch.arange(ns) % way)[None],
                      query_x=torch.randn(1, nq, 1, 28, 28, generator=g),
                      query_y=(torch.arange(nq) % way)[None],
                      n_way=way, query_groups=query).to(device)
    layers, c = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(c, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c = 64
    backbone = nn.Sequential(*layers, nn.Flatten()).to(device)
    return batch, backbone


def _metabench(setting, batch, backbone, device):
    from metabench.algorithms.protonet import ProtoNet
    from metabench.suites import make_suite

    algo = ProtoNet(make_suite(SETTINGS[setting][3]), ProtoNet.Config(), device, 0)
    return lambda: algo.meta_train_step(batch), "meta_train_step"


def _plain(setting, batch, backbone, device):
    import torch
    import torch.nn.functional as F

    way, shot, _, _ = SETTINGS[setting]
    opt = torch.optim.Adam(backbone.parameters(), lr=1e-3)
    xs, xq, yq = batch.support_x[0], batch.query_x[0], batch.query_y[0]
    ns = len(xs)

    def step():
        opt.zero_grad(set_to_none=True)
        z = backbone(torch.cat([xs, xq]))                       # (ns + nq, 64)
        protos = z[:ns].view(shot, way, -1).mean(0)             # label j % way: shot-major
        logits = -(z[ns:, None, :] - protos[None]).pow(2).sum(-1)
        loss = F.cross_entropy(logits, yq)
        loss.backward()
        opt.step()
        return loss.item()

    return step, "one backbone call"


def _easyfsl(setting, batch, backbone, device):
    import torch
    import torch.nn.functional as F

    mod, how = _common.import_peer("easyfsl.methods.prototypical_networks", EASYFSL_INSTALL,
                                   bypass=("easyfsl", "easyfsl.methods"))
    model = mod.PrototypicalNetworks(backbone).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys, xq, yq = batch.support_x[0], batch.support_y[0], batch.query_x[0], batch.query_y[0]

    def step():
        opt.zero_grad(set_to_none=True)
        model.process_support_set(xs, ys)
        loss = F.cross_entropy(model(xq), yq)
        loss.backward()
        opt.step()
        return loss.item()

    return step, how


def build(args):
    def builder(case: Case):
        def make(args):
            batch, backbone = _problem(case.setting, args.device)
            impl = {"metabench": _metabench, "plain": _plain, "easyfsl": _easyfsl}[case.impl]
            step, note = impl(case.setting, batch, backbone, args.device)
            return step, 1, note
        return make
    return {c.name: builder(c) for c in CASES}


def summary(cases: list[Case], recs: dict) -> list[str]:
    lines = []
    for setting in dict.fromkeys(c.setting for c in cases):
        group = [c for c in cases if c.setting == setting]
        peer = _common.best_peer(group, recs)
        mine = recs.get(f"{setting}/metabench", {})
        if "rate" in mine and peer is not None:
            r = mine["rate"] / recs[peer.name]["rate"]
            lines.append(f"{setting}: metabench runs at {r:.2f}x of the fastest peer ({peer.impl}): "
                         + ("at least as fast" if r >= 1 else "slower, but within the 5% run-to-run noise"
                            if r >= 0.95 else "SLOWER"))
    return lines


def main() -> int:
    p = _common.make_parser(__doc__.splitlines()[0], reps=10, warmup=3, rounds=2)
    args = p.parse_args()
    _common.finish_args(args)
    if args.worker:
        return _common.worker_main(args, build(args))
    return _common.driver_main(__file__, "ProtoNet training speed", CASES, args, summary)


if __name__ == "__main__":
    sys.exit(main())
