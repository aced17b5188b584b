"""attsolver.metrics: each metric against a value worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from attsolver.evaluate.metrics import (
    blow_up, mape, mse, normalized_error, nrmse, relative_l2, valid_prediction_time,
)


def test_mse_and_relative_l2_of_a_known_offset():
    true = torch.ones(2, 5, 3)
    pred = true.clone()
    pred[1] += 0.1  # every entry off by 0.1
    assert torch.allclose(mse(pred, true), torch.tensor([0.0, 0.01], dtype=torch.float64))
    # ‖0.1·1‖ / ‖1‖ = 0.1 whatever the size
    assert torch.allclose(relative_l2(pred, true), torch.tensor([0.0, 0.1], dtype=torch.float64))


def test_relative_l2_up_to_a_horizon_is_a_slice():
    true = torch.ones(1, 10, 2)
    pred = true.clone()
    pred[:, 5:] = 2.0  # wrong only in the second half
    assert float(relative_l2(pred[:, :5], true[:, :5])) == 0.0
    assert math.isclose(float(relative_l2(pred, true)), math.sqrt(0.5), rel_tol=1e-12)


def test_mape_plain_and_with_a_floor():
    true = torch.tensor([[[2.0, 0.01]]], dtype=torch.float64)
    pred = torch.tensor([[[2.2, 0.02]]], dtype=torch.float64)
    # plain: (0.2/2 + 0.01/0.01) / 2 = 55 %
    assert math.isclose(float(mape(pred, true)), 55.0, rel_tol=1e-9)
    # floor 1 on the denominators: (0.2/2 + 0.01/1) / 2 = 5.5 %
    assert math.isclose(float(mape(pred, true, floor=1.0)), 5.5, rel_tol=1e-9)
    per_comp = torch.tensor([0.0, 0.1], dtype=torch.float64)
    assert math.isclose(float(mape(pred, true, floor=per_comp)), 100 * (0.1 + 0.1) / 2, rel_tol=1e-9)
    with pytest.raises(ValueError, match="floor"):
        mape(pred, true, floor=torch.ones(3))


def test_nrmse_averages_the_per_time_relative_error():
    true = torch.ones(1, 2, 4)
    pred = true.clone()
    pred[0, 1] *= 1.5  # 0 at t0, 0.5 at t1
    assert math.isclose(float(nrmse(pred, true)), 0.25, rel_tol=1e-12)


def test_normalized_error_uses_each_components_spread():
    true = torch.zeros(1, 1, 2)
    pred = torch.tensor([[[1.0, 4.0]]])
    e = normalized_error(pred, true, torch.tensor([1.0, 2.0]))
    assert math.isclose(float(e), math.sqrt((1.0 + 4.0) / 2), rel_tol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        normalized_error(pred, true, 0.0)


def test_valid_prediction_time_on_synthetic_exponential_error_growth():
    # error e(t) = 1e-3 · exp(λ t) with λ = 0.9: it crosses 0.5 at t* = ln(500)/0.9 ≈ 6.905
    lam, dt = 0.9, 0.01
    t = torch.arange(0, 1001, dtype=torch.float64) * dt  # t in [0, 10]
    true = torch.zeros(1, len(t), 1, dtype=torch.float64)
    pred = (1e-3 * torch.exp(lam * t)).reshape(1, -1, 1)
    t_star = math.log(500) / lam
    vpt = float(valid_prediction_time(pred, true, t, 1.0))
    assert t_star <= vpt < t_star + dt + 1e-12  # the first grid time past the crossing
    in_lyapunov = float(valid_prediction_time(pred, true, t, 1.0, lyapunov_exponent=lam))
    assert math.isclose(in_lyapunov, lam * vpt, rel_tol=1e-12)
    # a larger spread halves the normalised error: the crossing moves by ln(2)/λ
    later = float(valid_prediction_time(pred, true, t, 2.0))
    assert math.isclose(later - vpt, math.log(2) / lam, abs_tol=2 * dt)


def test_valid_prediction_time_censored_at_the_horizon_and_nan_counts_as_failure():
    t = torch.linspace(0, 4, 5, dtype=torch.float64)
    true = torch.zeros(3, 5, 2)
    pred = torch.zeros(3, 5, 2)
    pred[1, 2:] = 10.0  # exceeds from t = 2
    pred[2, 3, 0] = float("nan")  # NaN at t = 3
    vpt = valid_prediction_time(pred, true, t, 1.0)
    assert vpt.tolist() == [4.0, 2.0, 3.0]


def test_blow_up_flags_non_finite_and_large_values():
    pred = torch.zeros(4, 3, 2)
    pred[1, 2, 1] = float("inf")
    pred[2, 0, 0] = float("nan")
    pred[3, 1, 1] = 1e4
    assert blow_up(pred, 1e3).tolist() == [False, True, True, True]
    assert blow_up(pred[:1], 1e3).tolist() == [False]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must match"):
        relative_l2(torch.zeros(2, 3), torch.zeros(2, 4))
