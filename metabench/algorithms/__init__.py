"""Meta-learning algorithms, registered by name."""
from __future__ import annotations

from metabench.algorithms.base import Algorithm, TrainRequest
from metabench.algorithms.classical import CLASSICAL
from metabench.algorithms.maml import FOMAML, MAML
from metabench.algorithms.protonet import ProtoNet
from metabench.algorithms.maml_rl import MAMLRL
from metabench.algorithms.mql import MQL
from metabench.algorithms.rl2 import RL2
from metabench.registry import Registry

ALGORITHMS: Registry = Registry("algorithm")
for _cls in (MAML, FOMAML, ProtoNet):
    ALGORITHMS.add(_cls.name, _cls)
for _cls in CLASSICAL:   # meta-RL reference rows (issue 4): random, oracle, ucb1, gittins, psrl, ...
    ALGORITHMS.add(_cls.name, _cls)
for _cls in (RL2, MAMLRL, MQL):   # meta-RL learners (issue 4)
    ALGORITHMS.add(_cls.name, _cls)

__all__ = ["ALGORITHMS", "Algorithm", "TrainRequest"]
