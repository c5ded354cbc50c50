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
from metabench.algorithms.rfs import RFS
from metabench.algorithms.rl2 import RL2
from metabench.algorithms.simpleshot import SimpleShot
from metabench.registry import Registry

class _AlgorithmRegistry(Registry):
    """The algorithm registry; a misspelt named variant ('rl2-aux-privilegd') gets its
    did-you-mean too, and unknown-name messages list the named variants."""

    def suggestions(self) -> list[str]:
        return super().suggestions() + sorted(named_variants())

    def known_text(self) -> str:
        names = ", ".join(self.names())
        return f"{names}; named variants: {', '.join(sorted(named_variants())) or 'none'} (or a plugin as package.module:Class)"


#: Built-ins, then plugins: ``package.module:Class`` import paths and the entry points of the
#: ``metabench.algorithms`` group (see metabench.registry and docs/plugins.md).
ALGORITHMS: Registry = _AlgorithmRegistry("algorithm", "metabench.algorithms", check_algorithm_class)
for _cls in (MAML, FOMAML, ProtoNet, Reptile, ANIL, MetaSGD, MatchingNet, MANN, MetaNet, FineTune, PixelCentroid,
             RFS, SimpleShot):
    ALGORITHMS.add(_cls.name, _cls)
for _cls in CLASSICAL:   # meta-RL reference rows (issue 4): random, oracle, ucb1, gittins, psrl, ...
    ALGORITHMS.add(_cls.name, _cls)
for _cls in (RL2, MAMLRL, MQL):   # meta-RL learners (issue 4)
    ALGORITHMS.add(_cls.name, _cls)

def named_variants() -> dict[str, str]:
    """Every named variant of every algorithm: short name -> bracket entry (``Algorithm.VARIANTS``)."""
    return {n: e for a in ALGORITHMS.names() for n, e in ALGORITHMS.get(a).VARIANTS.items()}


def named_variant(name: str) -> str | None:
    """The bracket entry of the named variant ``name`` (e.g. 'rl2-aux-privileged'), or None."""
    return named_variants().get(name)


__all__ = ["named_variant", "named_variants", "ALGORITHMS", "CONTRACT_VERSION", "Algorithm", "TrainRequest", "check_algorithm_class"]
