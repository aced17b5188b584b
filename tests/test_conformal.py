"""Split-conformal error bounds (evaluate/conformal.py)."""

import math

import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec
from attsolver.data import generate_trajectories
from attsolver.evaluate.conformal import (calibrate, conformal_quantile, conformal_rank, coverage_of,
                                          min_calibration_size)
from attsolver.systems import Lorenz63


@pytest.mark.parametrize("n,coverage,k", [(19, 0.9, 18), (9, 0.9, 9), (99, 0.95, 95), (10, 0.5, 6), (4, 0.8, 4)])
def test_exact_conformal_rank(n, coverage, k):
    assert conformal_rank(n, coverage)[0] == k == math.ceil((n + 1) * round(coverage, 9) - 1e-9)
    scores = torch.randperm(n).double()[:, None] + 1.0  # 1..n shuffled: the k-th smallest is k
    assert float(conformal_quantile(scores, coverage)[0]) == k


def test_minimum_calibration_size_and_bad_coverage():
    assert min_calibration_size(0.9) == 9 and min_calibration_size(0.95) == 19 and min_calibration_size(0.5) == 1
    with pytest.raises(ValueError, match="at least ceil\\(1/alpha\\) - 1 = 9"):
        conformal_quantile(torch.ones(8, 3), 0.9)
    conformal_quantile(torch.ones(9, 3), 0.9)
    for bad in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="coverage must be"):
            conformal_quantile(torch.ones(50, 3), bad)


def test_coverage_on_exchangeable_data_is_nominal():
    # k / (n + 1) = 45 / 50 = 0.9 exactly is the expected coverage over calibration draws
    g = torch.Generator().manual_seed(1)
    n, trials, n_test, widths = 49, 400, 200, torch.tensor([0.1, 1.0, 5.0])
    hits = torch.zeros(3, dtype=torch.float64)
    for _ in range(trials):
        cal = (torch.randn(n, 3, generator=g, dtype=torch.float64) * widths).abs()
        test = (torch.randn(n_test, 3, generator=g, dtype=torch.float64) * widths).abs()
        hits += (test <= conformal_quantile(cal, 0.9)).double().mean(0)
    cover = hits / trials
    # per trial the coverage is Beta(45, 5) (sd 0.042); over 400 trials the mean's sd is 0.0021
    assert torch.all((cover - 0.9).abs() < 0.01), cover


def test_calibrate_bounds_the_solve_error_per_time():
    system = Lorenz63()
    data = generate_trajectories(system, 30, t_final=0.5, dt=0.05, spin_up=2.0, seed=3, progress=False)
    model = NeurVec(3, method="rk4", step_size=0.05, dtype=torch.float64)
    cal, test = data.split([20, 10], seed=0)
    bounds = calibrate(model, cal, coverage=0.9)
    pred = attsolver.solve(system, cal.y[:, 0], cal.t, step_size=0.05, corrector=model)
    err = torch.linalg.vector_norm(pred.transpose(0, 1) - cal.y, dim=-1)  # [20, T]
    k = conformal_rank(20, 0.9)[0]
    assert torch.equal(bounds.bound, err.sort(0).values[k - 1])
    assert float(bounds.bound[0]) == 0.0 and bounds.n_calibration == 20
    assert torch.equal(bounds.at(test.t[:5] + 7.0), bounds.bound[:5])  # elapsed time, any start
    with pytest.raises(ValueError, match="not calibrated at"):
        bounds.at(torch.tensor([0.0, 0.025]))
    out = attsolver.solve(system, test.y[:, 0], test.t, step_size=0.05, corrector=model)
    assert coverage_of(bounds, out, test.y.transpose(0, 1)).shape == (len(test.t),)
    with pytest.raises(ValueError, match="too small for coverage=0.9"):
        calibrate(model, cal.split([5, 15], seed=0)[0], coverage=0.9)
