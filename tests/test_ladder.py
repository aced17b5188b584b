"""Equal accuracy on a classical ladder (attsolver.evaluate.ladder): time-until-threshold with
censoring, brackets between neighbouring measured rungs, censored rungs never an upper bracket,
and the |k| <= kmax band.  Synthetic ladders with exact expected values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attsolver.evaluate.ladder import Rung, band_limit, place_on_ladder, time_until


def test_time_until_linear_crossing_censoring_and_nan():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    assert time_until(t, [1.0, 0.97, 0.93, 0.5]) == pytest.approx((1.5, False))  # half-way 0.97 -> 0.93
    assert time_until(t, [1.0, 0.99, 0.98, 0.96]) == (3.0, True)  # never below: censored at the horizon
    assert time_until(t, [0.9, 0.99, 0.98, 0.96]) == (0.0, False)  # below from the start
    assert time_until(t, [1.0, 0.99, float("nan"), 0.99]) == (2.0, False)  # a blow-up counts as below
    assert time_until(t, [1.0, 0.98, 0.94, 0.9], threshold=0.9) == (3.0, True)  # exactly at it: not below


# a convex ladder: t95 rises faster than n; costs 1, 2, 4, 8, 16
LADDER = [Rung(32, 0.3, False, 1.0), Rung(48, 0.8, False, 2.0), Rung(64, 2.0, False, 4.0),
          Rung(96, 4.0, False, 8.0), Rung(128, 8.0, True, 16.0)]


def test_interpolates_between_neighbouring_rungs_only():
    # t95 = 1.4 lies half-way between the 48 and 64 rungs (0.8, 2.0): n = 56, cost sqrt(2 * 4)
    p = place_on_ladder(LADDER, 1.4)
    assert p["how"] == "interpolated"
    assert p["n"] == pytest.approx(56.0) and p["cost"] == pytest.approx(math.sqrt(8.0))
    assert (p["n_lo"], p["n_hi"], p["cost_lo"], p["cost_hi"]) == (48.0, 64.0, 2.0, 4.0)
    # a straight line from 32 to 96 would have given n = 32 + 64 * (1.4 - 0.3) / 3.7 = 51.0: not used
    assert abs(p["n"] - (32 + 64 * 1.1 / 3.7)) > 4
    # on a rung: that rung exactly (either bracket gives it)
    p = place_on_ladder(LADDER, 2.0)
    assert p["n"] == pytest.approx(64.0) and p["cost"] == pytest.approx(4.0)
    # unsorted input: the same answer
    assert place_on_ladder(LADDER[::-1], 1.4)["n"] == pytest.approx(56.0)


def test_censored_rung_is_never_an_upper_bracket():
    # 6.0 is above the finest measured rung (96: 4.0) and below the horizon (8): between 96 and the
    # cheapest censored rung (128); the point figure is the lower end (96's cost), the range reaches 128
    p = place_on_ladder(LADDER, 6.0)
    assert p["how"] == "between"
    assert (p["n"], p["cost"]) == (96.0, 8.0)
    assert (p["n_hi"], p["cost_hi"]) == (128.0, 16.0)
    # two censored rungs: the bracket's upper end is the cheapest of them, not the finest
    ladder = LADDER + [Rung(192, 8.0, True, 64.0)]
    assert place_on_ladder(ladder, 6.0)["n_hi"] == 128.0


def test_censored_solver_is_only_at_least_the_finest_measured_rung():
    # censored solver and censored rungs: a tie says nothing; >= the finest measured rung, unbounded above
    ladder = LADDER + [Rung(192, 8.0, True, 64.0)]
    p = place_on_ladder(ladder, 8.0, censored=True)
    assert p["how"] == "above"
    assert (p["n"], p["cost"], p["n_hi"], p["cost_hi"]) == (96.0, 8.0, None, None)
    # a censored solver never interpolates, even when its horizon value sits inside the ladder
    assert place_on_ladder(LADDER[:4], 3.0, censored=True)["how"] == "above"
    # no rung censored, value past the finest: >= the finest rung
    p = place_on_ladder(LADDER[:4], 5.0)
    assert (p["how"], p["n"], p["cost"]) == ("above", 96.0, 8.0)


def test_below_the_coarsest_rung_and_bad_input():
    p = place_on_ladder(LADDER, 0.1)
    assert (p["how"], p["n"], p["cost"]) == ("below", 32.0, 1.0)
    with pytest.raises(ValueError, match="ladder"):
        place_on_ladder([], 1.0)


def test_non_monotone_ladder_uses_the_first_neighbouring_crossing():
    # noise makes 64 worse than 48; 1.0 lies between 32 (0.5) and 48 (1.5): n = 32 + 16 * 0.5 = 40
    ladder = [Rung(32, 0.5, False, 1.0), Rung(48, 1.5, False, 4.0), Rung(64, 1.2, False, 16.0)]
    p = place_on_ladder(ladder, 1.0)
    assert p["how"] == "interpolated" and p["n"] == pytest.approx(40.0) and p["cost"] == pytest.approx(2.0)


def test_band_limit_keeps_exactly_the_modes_inside_the_disc():
    n = 32
    x = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    X, Y = torch.meshgrid(x, x, indexing="xy")  # X varies along the last axis
    inside = torch.cos(6 * X + 8 * Y)  # |k| = 10: kept
    outside = torch.sin(7 * X + 8 * Y) + torch.cos(11 * Y)  # |k| = sqrt(113), 11: removed
    w = inside + outside
    assert torch.allclose(band_limit(w, 10.0), inside, atol=1e-12)
    assert torch.allclose(band_limit(w, 100.0), w, atol=1e-12)  # everything inside
    assert torch.allclose(band_limit(outside, 10.0), torch.zeros_like(w), atol=1e-12)
    # batched and float32 in, same dtype out
    b = band_limit(torch.stack([w, 2 * w]).float(), 10.0)
    assert b.dtype == torch.float32 and torch.allclose(b[1], 2 * inside.float(), atol=1e-5)
