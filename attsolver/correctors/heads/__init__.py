"""A corrector's network and its h-scaling, independent of the layout it runs on.

A corrector is a layout (:mod:`attsolver.correctors.layouts`) times a head.  Adding a head:
one file here (a :class:`Head` subclass) and one ``register_head`` line in
:mod:`attsolver.correctors.factory`; the factory then builds it on every layout and the
parametrised tests pick it up.
"""

from .attsolver import COMBINES, AttSolverHead, register_combine
from .base import Head, MLPHead, as_head, get_head, list_heads, mlp, register_head_class
from .hypersolver import HypersolverHead
from .neurvec import NeurVecHead

__all__ = [
    "Head", "MLPHead", "NeurVecHead", "HypersolverHead", "AttSolverHead", "COMBINES", "register_combine",
    "mlp", "as_head", "get_head", "list_heads", "register_head_class",
]
