"""Learned corrections added to every classical step by ``attsolver.solve(..., corrector=model)``.

* :class:`NeurVec` — ``C = N(y_n)``, one wide hidden layer (Sci. Rep. 2023);
* :class:`Hypersolver` — ``C = h^{p+1} g(h, y_n, Phi)`` (Poli et al., NeurIPS 2020);
* :class:`AttSolver` — body + bounded attention gate + additive or multiplicative combine
  (arXiv 2302.10184; the exact formula is this project's design, see docs/method.md);
* :class:`NeurVecConv`, :class:`AttSolverConv` — the same for periodic 1-D fields, with a
  translation-equivariant convolutional body that runs at any grid size (:mod:`.conv`);
* :class:`LocalNeurVec`, :class:`LocalHypersolver`, :class:`LocalAttSolver` — weight-shared
  local forms for states on a lattice (a ring or a chain): one small network at every site
  on a window of neighbours, its size independent of the number of sites (:mod:`.local`).

All record what they were trained for, start as an exact zero correction, and are saved /
loaded with :meth:`Corrector.save` / :func:`load_corrector`.  Train them with
:func:`attsolver.fit`.
"""

from .base import (
    CHECKPOINT_FORMAT, FEATURES, FIT_CHECKPOINT_FORMAT, SCHEMA_VERSION, Corrector, get_corrector_class,
    list_correctors, load_corrector, read_checkpoint, register_corrector,
)
from .neurvec import NeurVec
from .hypersolver import Hypersolver
from .att_solver import COMBINES, AttSolver, register_combine
from .conv import AttSolverConv, ConvCorrector, NeurVecConv, PeriodicConv1d
from .local import LocalAttSolver, LocalCorrector, LocalHypersolver, LocalNeurVec

__all__ = [
    "Corrector", "NeurVec", "Hypersolver", "AttSolver", "load_corrector",
    "list_correctors", "get_corrector_class", "register_corrector", "read_checkpoint",
    "COMBINES", "register_combine", "FEATURES", "CHECKPOINT_FORMAT", "FIT_CHECKPOINT_FORMAT",
    "SCHEMA_VERSION", "ConvCorrector", "NeurVecConv", "AttSolverConv", "PeriodicConv1d",
    "LocalCorrector", "LocalNeurVec", "LocalHypersolver", "LocalAttSolver",
]
