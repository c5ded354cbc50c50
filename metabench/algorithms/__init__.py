"""Meta-learning algorithms, registered by name."""
from __future__ import annotations

from metabench.algorithms.anil import ANIL
from metabench.algorithms.base import CONTRACT_VERSION, Algorithm, TrainRequest, check_algorithm_class
from metabench.algorithms.classical import CLASSICAL
from metabench.algorithms.finetune import FineTune
from metabench.algorithms.maml import FOMAML, MAML
from metabench.algorithms.maml_rl import MAMLRL
from metabench.algorithms.mann import MANN
from metabench.algorithms.matchingnet import MatchingNet
from metabench.algorithms.metanet import MetaNet
from metabench.algorithms.metasgd import MetaSGD
from metabench.algorithms.mql import MQL
from metabench.algorithms.pixel_centroid import PixelCentroid
from metabench.algorithms.protonet import ProtoNet
from metabench.algorithms.reptile import Reptile
from metabench.algorithms.rl2 import RL2
from metabench.registry import Registry

#: Built-ins, then plugins: ``package.module:Class`` import paths and the entry points of the
#: ``metabench.algorithms`` group (see metabench.registry and docs/plugins.md).
ALGORITHMS: Registry = Registry("algorithm", "metabench.algorithms", check_algorithm_class)
for _cls in (MAML, FOMAML, ProtoNet, Reptile, ANIL, MetaSGD, MatchingNet, MANN, MetaNet, FineTune, PixelCentroid):
    ALGORITHMS.add(_cls.name, _cls)
for _cls in CLASSICAL:   # meta-RL reference rows (issue 4): random, oracle, ucb1, gittins, psrl, ...
    ALGORITHMS.add(_cls.name, _cls)
for _cls in (RL2, MAMLRL, MQL):   # meta-RL learners (issue 4)
    ALGORITHMS.add(_cls.name, _cls)

# Named variants live next to each algorithm (module-level VARIANTS); the class carries them.
from metabench.algorithms import mann as _mann, matchingnet as _matchingnet, metanet as _metanet, rl2 as _rl2  # noqa: E402

for _cls, _mod in ((MANN, _mann), (MatchingNet, _matchingnet), (MetaNet, _metanet), (RL2, _rl2)):
    _cls.VARIANTS = dict(_mod.VARIANTS)


def named_variant(name: str) -> str | None:
    """The bracket entry of the named variant ``name`` (e.g. 'rl2-aux-privileged'), or None."""
    for algo in ALGORITHMS.names():
        entry = ALGORITHMS.get(algo).VARIANTS.get(name)
        if entry is not None:
            return entry
    return None


__all__ = ["named_variant", "ALGORITHMS", "CONTRACT_VERSION", "Algorithm", "TrainRequest", "check_algorithm_class"]
