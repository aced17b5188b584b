"""Shared fixtures for the solver and system tests (kept small on purpose).

Parametrisation lists (which methods, which systems) are computed in each test module from
the registries, so a newly registered method or system is tested automatically.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from attsolver.correctors import NeurVec
from attsolver.data import generate_trajectories
from attsolver.systems import Lorenz63
from attsolver.training import FitCheckWarning, fit, record_domain

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


#: the training tests' step on the linear system (exact in binary: every window takes exactly the same steps)
LINEAR_DT = 0.125


@pytest.fixture(scope="module")
def linear_data():
    """6 trajectories of the built-in linear system over 2.5 time units at ``LINEAR_DT`` (seed 3):
    the small data set of the fit-schedule and early-stopping tests."""
    return generate_trajectories("linear", 6, t_final=2.5, dt=LINEAR_DT, seed=3, progress=False)


def linear_model() -> NeurVec:
    """A fresh Euler NeurVec (width 16, float64, seed 0) for :func:`linear_data`."""
    torch.manual_seed(0)
    return NeurVec(2, method="euler", step_size=LINEAR_DT, width=16, dtype=torch.float64)


def quiet_fit(m, d, **kw):
    """``fit`` on :func:`linear_data` without progress bars, early stopping or the fit check (its
    warning silenced): ``lr=3e-3, batch_size=32``; ``kw`` sets the rest (``epochs`` among them)."""
    args = dict(lr=3e-3, batch_size=32, progress=False, patience=None, check=False)
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitCheckWarning)
        return fit(m, d, **args)
