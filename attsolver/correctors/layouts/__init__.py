"""How a corrector sees a state: the dense, lattice and periodic-grid layouts.

A corrector is a layout times a head (:mod:`attsolver.correctors.heads`).  The layout turns
the step's states into the network's inputs and back (features, normalisation statistics,
the network's linear maps, the reference evaluation), records what it was trained for and
checks the states it is given.  Adding a layout: one file here (a :class:`Layout` subclass)
and one ``register_layout`` line in :mod:`attsolver.correctors.factory`.
"""

from .base import FEATURES, TIME_FEATURES, Layout, as_state_shape, get_layout, list_layouts, register_layout, time_feature
from .dense import DenseLayout
from .grid import GridLayout, PeriodicConv1d, PeriodicConv2d
from .lattice import LatticeLayout

__all__ = [
    "FEATURES", "TIME_FEATURES", "Layout", "DenseLayout", "LatticeLayout", "GridLayout", "PeriodicConv1d",
    "PeriodicConv2d", "as_state_shape", "time_feature", "register_layout", "get_layout", "list_layouts",
]
