"""``compare``'s error bars: a split-conformal bound on the corrected solve's e(t) per output
time, from a split of the test trajectories or from calibration data (evaluate/conformal.py)."""

import json

import pytest
import torch

import attsolver
from attsolver.data import generate_trajectories
from attsolver.evaluate import compare
from attsolver.evaluate.conformal import SPLIT_SEED, conformal_quantile, error_bars_line
from attsolver.evaluate.metrics import normalized_error, reference_scale
from attsolver.systems import Lorenz63

H = 0.1
LADDERS = {"refinements": (1, 2), "rk4_refinements": (), "dopri_rtols": (1e-4,), "lyapunov_exponent": 0.906,
           "rounds": 2, "max_rounds": 2, "progress": False}


@pytest.fixture(scope="module")
def problem():
    s = Lorenz63()
    data = generate_trajectories(s, 40, t_final=1.5, dt=H, spin_up=3.0, seed=5, progress=False)
    test, cal = data.split([20, 20], seed=0)
    # an untrained corrector is exactly zero: the corrected solve is the coarse RK4 solve
    zero = attsolver.AttSolver(3, method="rk4", step_size=H, dtype=torch.float64)
    return s, test, cal, zero


def _e(s, data, scale):
    true = data.y_true.double()
    pred = attsolver.solve(s, true[:, 0], data.t, step_size=H).transpose(0, 1)
    return normalized_error(pred, true, scale)


def test_the_bound_is_the_conformal_quantile_of_half_the_test_set(problem, tmp_path):
    s, test, _, zero = problem
    res = compare(s, data=test, corrector=zero, out=tmp_path, name="bars", **LADDERS)
    bars = res.error_bars
    e = _e(s, test, reference_scale(test.y_true.double()))
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(SPLIT_SEED))
    expected = conformal_quantile(e[perm[:10]], 0.9)  # k = ceil(11 * 0.9) = 10: the largest of 10
    assert bars["n_calibration"] == 10 and bars["n_evaluation"] == 10
    assert torch.allclose(torch.tensor(bars["bound"], dtype=torch.float64), expected, rtol=1e-10, atol=1e-14)
    inside = (e[perm[10:]] <= expected * (1 + 1e-9)).double().mean(0)
    assert bars["held_out_coverage"] == pytest.approx(inside.tolist())
    on_disk = json.loads((tmp_path / "bars.json").read_text())["error_bars"]
    assert on_disk["bound"] == pytest.approx(bars["bound"]) and on_disk["coverage"] == 0.9
    line = error_bars_line(bars)
    assert line.startswith("error bars: 90% split-conformal bound") and "held-out coverage" in line


def test_calibration_data_calibrate_and_every_test_trajectory_evaluates(problem):
    s, test, cal, zero = problem
    res = compare(s, data=test, corrector=zero, coverage=0.8, calibration=cal, **LADDERS)
    bars = res.error_bars
    scale = reference_scale(test.y_true.double())  # the test reference's scale, as the curves use
    expected = conformal_quantile(_e(s, cal, scale), 0.8)
    assert bars["n_calibration"] == 20 and bars["n_evaluation"] == 20 and bars["coverage"] == 0.8
    assert torch.allclose(torch.tensor(bars["bound"], dtype=torch.float64), expected, rtol=1e-10, atol=1e-14)


def test_too_few_trajectories_or_no_coverage_give_no_bars(problem):
    s, test, cal, zero = problem
    few = test.split([6, 14], seed=0)[0]
    bars = compare(s, data=few, corrector=zero, **LADDERS).error_bars
    assert bars["bound"] is None and "at least 18" in bars["note"] and error_bars_line(bars) == bars["note"]
    assert compare(s, data=few, corrector=zero, coverage=None, **LADDERS).error_bars is None
    short = generate_trajectories(
        s, 10, t_final=0.5, dt=H, spin_up=3.0, seed=9, progress=False)
    with pytest.raises(ValueError, match="calibration= has no observation at elapsed time 0.6"):
        compare(s, data=test, corrector=zero, calibration=short, **LADDERS)
