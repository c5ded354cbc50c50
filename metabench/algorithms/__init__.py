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

__all__ = ["ALGORITHMS", "CONTRACT_VERSION", "Algorithm", "TrainRequest", "check_algorithm_class"]
