"""Shared fixtures for the solver and system tests (kept small on purpose).

Parametrisation lists (which methods, which systems) are computed in each test module from
the registries, so a newly registered method or system is tested automatically.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attsolver.correctors import NeurVec
from attsolver.data import generate_trajectories
from attsolver.systems import Lorenz63
from attsolver.training import record_domain

# One intra-op thread per test process: pytest-xdist already runs one worker per core, and
# oversubscribed threads made single tests up to 25x slower on a loaded machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_threads():
    """Benchmarks' ``main`` and some tests change torch's thread count: restore it after each test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _fit_order(h, err) -> float:
    """Least-squares slope of ``log err`` against ``log h``: the observed order of accuracy."""
    return float(np.polyfit(np.log(np.asarray(h, float)), np.log(np.asarray(err, float)), 1)[0])


@pytest.fixture
def observed_order():
    """``observed_order(h, err)`` -> slope of the log-log fit (needs >= 3 points)."""
    return _fit_order


#: the guard tests' step (Lorenz-63, RK4)
GUARD_H = 0.02


@pytest.fixture(scope="module")
def guard_setting():
    """``(system, data, model)`` for the guard tests: Lorenz-63, 6 trajectories over 2 time units at
    ``GUARD_H``, and a NeurVec with an exact zero correction whose domain is recorded from them
    (one per test module: a module may change its model's domain)."""
    system = Lorenz63()
    data = generate_trajectories(system, 6, t_final=2.0, dt=GUARD_H, spin_up=2.0, seed=0, progress=False)
    model = NeurVec(3, method="rk4", step_size=GUARD_H, dtype=torch.float64)  # an exact zero correction
    record_domain(model, data)
    return system, data, model
