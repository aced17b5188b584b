"""benchmarks/stiff.py: the equal-accuracy helper interpolates log t linearly in log err between
the two ladder points that bracket the target, and never extrapolates."""

from __future__ import annotations

import math

import pytest

from _scripts import load_script


@pytest.fixture(scope="module")
def stiff():
    return load_script("benchmarks/stiff.py")


def test_geometric_midpoint_gives_geometric_mean_time(stiff):
    # errors 1e-4 -> 1e-6 at times 1 -> 4: error 1e-5 is half-way in log, so time is sqrt(1*4) = 2
    assert stiff.time_at_error([1e-4, 1e-6], [1.0, 4.0], 1e-5) == pytest.approx(2.0, rel=1e-12)


def test_power_law_is_recovered_exactly(stiff):
    # a fifth-order method: error = k^-5 at cost k; at error 3^-5 the cost is 3 on any bracketing pair
    ks = [1.0, 2.0, 4.0, 8.0]
    assert stiff.time_at_error([k ** -5 for k in ks], ks, 3.0 ** -5) == pytest.approx(3.0, rel=1e-12)


def test_ladder_point_and_non_monotone_ladder(stiff):
    assert stiff.time_at_error([1e-3, 1e-4, 1e-5], [1.0, 2.0, 5.0], 1e-4) == pytest.approx(2.0)
    # the error rises between the 2nd and 3rd points: the first bracketing pair (1e-3 -> 1e-5) is used
    t = stiff.time_at_error([1e-3, 1e-5, 2e-5], [1.0, 3.0, 4.0], 1e-4)
    assert t == pytest.approx(math.sqrt(3.0), rel=1e-12)


def test_outside_the_ladder_is_none(stiff):
    assert stiff.time_at_error([1e-4, 1e-6], [1.0, 4.0], 1e-7) is None
    assert stiff.time_at_error([1e-4, 1e-6], [1.0, 4.0], 1e-3) is None
