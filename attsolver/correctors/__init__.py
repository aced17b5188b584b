"""Learned corrections added to every classical step by ``attsolver.solve(..., corrector=model)``.

A corrector is a *layout* (:mod:`.layouts`: how a state becomes the network's inputs) times a
*head* (:mod:`.heads`: the network and its h-scaling); fast evaluation forms
(:mod:`.evaluators`) exist for some exact (layout, head) pairs.  ``create(name, ...)`` builds
any of them by name (:func:`names`); today's classes build the pairs they always have:

* :class:`NeurVec` — ``C = N(y_n)``, one wide hidden layer (Sci. Rep. 2023);
* :class:`Hypersolver` — ``C = h^{p+1} g(h, y_n, Phi)`` (Poli et al., NeurIPS 2020);
* :class:`AttSolver` — body + bounded attention gate + additive or multiplicative combine
  (arXiv 2302.10184; the exact formula is this project's design, see docs/method.md);
* :class:`NeurVecConv`, :class:`AttSolverConv` — the same for periodic 1-D and 2-D fields, with
  translation-equivariant convolutions that run at any grid size (:class:`ConvCorrector`);
* :class:`LocalNeurVec`, :class:`LocalHypersolver`, :class:`LocalAttSolver` — weight-shared
  local forms for states on a lattice (a ring or a chain): one small network at every site
  on a window of neighbours, its size independent of the number of sites (:class:`LocalCorrector`).

All record what they were trained for, start as an exact zero correction, and are saved /
loaded with :meth:`Corrector.save` / :func:`load_corrector`.  Train them with
:func:`attsolver.fit`.
"""

from .base import (
    CHECKPOINT_FORMAT, FEATURES, FIT_CHECKPOINT_FORMAT, SCHEMA_VERSION, TIME_FEATURES, Corrector,
    get_corrector_class, list_correctors, load_corrector, read_checkpoint, register_corrector,
)
from .factory import REGISTRY, create, names, register_head, register_layout
from .heads import COMBINES, AttSolverHead, Head, HypersolverHead, NeurVecHead, register_combine
from .hosts import ConvCorrector, LocalCorrector
from .interpolation_host import InterpolationHost
from .layouts import DenseLayout, GridLayout, LatticeLayout, Layout, PeriodicConv1d, PeriodicConv2d
from .named import (
    AttSolver, AttSolverConv, Hypersolver, LocalAttSolver, LocalHypersolver, LocalNeurVec, NeurVec, NeurVecConv,
)

__all__ = [
    "Corrector", "NeurVec", "Hypersolver", "AttSolver", "load_corrector", "create", "names", "REGISTRY",
    "list_correctors", "get_corrector_class", "register_corrector", "register_head", "register_layout",
    "read_checkpoint", "COMBINES", "register_combine", "FEATURES", "TIME_FEATURES", "CHECKPOINT_FORMAT",
    "FIT_CHECKPOINT_FORMAT", "SCHEMA_VERSION", "ConvCorrector", "InterpolationHost", "NeurVecConv", "AttSolverConv", "PeriodicConv1d",
    "PeriodicConv2d", "LocalCorrector", "LocalNeurVec", "LocalHypersolver", "LocalAttSolver",
    "Layout", "DenseLayout", "LatticeLayout", "GridLayout", "Head", "NeurVecHead", "HypersolverHead",
    "AttSolverHead",
]
