"""Reference trajectories, observation noise, datasets and HDF5 I/O.

* :func:`generate_trajectories` — fine reference solves sampled on a coarse output grid,
  with optional spin-up and relative observation noise (:func:`add_noise`).
* :class:`TrajectoryDataset` — the trajectories, their time grid, the system config and
  the full config that produced them; ``split``/``subset``/``to``.
* :func:`save_h5` / :func:`load_h5` — our versioned HDF5 schema, written atomically.
* :func:`read_pdebench` / :func:`write_pdebench` — PDEBench's 1-D Burgers layout.
* :func:`inspect_file` — a summary of either kind of file (``attsolver data info``).
* :mod:`attsolver.data.coarse_fine` — fine references restricted to a coarse grid (PDEs).
"""

from .dataset import TrajectoryDataset
from .generate import SYSTEM_DEFAULTS, generate_trajectories
from .h5 import SCHEMA, SCHEMA_VERSION, load_h5, save_h5
from .inspect import inspect_file
from .noise import add_noise, component_std
from .pdebench import read_pdebench, write_pdebench

__all__ = [
    "TrajectoryDataset", "generate_trajectories", "SYSTEM_DEFAULTS", "add_noise", "component_std",
    "SCHEMA", "SCHEMA_VERSION", "save_h5", "load_h5", "inspect_file",
    "read_pdebench", "write_pdebench",
]
