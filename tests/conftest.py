"""Shared fixtures for the solver and system tests (kept small on purpose).

Parametrisation lists (which methods, which systems) are computed in each test module from
the registries, so a newly registered method or system is tested automatically.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
