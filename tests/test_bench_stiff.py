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


def test_pareto_drops_points_less_accurate_than_a_looser_one(stiff):
    pts = [{"error": e, "median_s": t} for e, t in ((1e-4, 1.0), (1e-6, 2.0), (2e-6, 4.0), (1e-7, 8.0))]
    assert [p["error"] for p in stiff.pareto(pts)] == [1e-4, 1e-6, 1e-7]


def test_equal_accuracy_row_and_verdicts(stiff):
    def pts(rows):
        return [{"rtol": r, "error": e, "min_s": t, "median_s": t, "max_s": t} for r, e, t in rows]
    target = 10 ** -6.5
    ladders = {"attsolver_kvaerno5": pts([(1e-6, target, 4.0)]),
               "scipy_radau_loop": pts([(1e-3, 1e-4, 10.0), (1e-4, 1e-7, 80.0)]),
               # rtol 1e-5 is less accurate than rtol 1e-4: on all points the target falls between
               # errors 1e-5 and 1e-7 (times 4 and 16), on the Pareto points between 1e-6 and 1e-7 (2 and 16)
               "diffrax_kvaerno5_jit": pts([(1e-3, 1e-4, 1.0), (1e-4, 1e-6, 2.0), (1e-5, 1e-5, 4.0),
                                            (1e-6, 1e-7, 16.0)])}
    (row,) = stiff.equal_accuracy_table(ladders, [1e-6])
    assert row["scipy_radau_loop_median_s"] == pytest.approx(2 ** 2.5 * 10, rel=1e-12)  # 10 * 8^(5/6)
    assert row["diffrax_kvaerno5_jit_median_s"] == pytest.approx(2 ** 3.5, rel=1e-12)  # 4 * 4^(3/4)
    assert row["diffrax_kvaerno5_jit_pareto_median_s"] == pytest.approx(2 ** 2.5, rel=1e-12)  # 2 * 8^(1/2)
    assert row["diffrax_kvaerno5_jit_pareto_ratio"] == pytest.approx(2 ** 2.5 / 4, rel=1e-12)
    assert stiff.verdicts([row]) == ("True", "True")  # 14.1x faster than Radau; 4 / 2^2.5 = 0.71x diffrax
    ladders["attsolver_kvaerno5"] = pts([(1e-6, target, 20.0)])  # now 3.5x the Pareto diffrax time
    assert stiff.verdicts(stiff.equal_accuracy_table(ladders, [1e-6])) == ("True", "False")
