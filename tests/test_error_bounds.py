"""Calibrated error bounds that travel with a corrector: ``calibrate`` stores them, the
checkpoint keeps them, ``solve(..., return_error_bounds=True)`` returns them per output time
(integrate/error_bounds.py)."""

import pytest
import torch

import attsolver
from attsolver.correctors import Corrector, NeurVec
from attsolver.data import generate_trajectories
from attsolver.evaluate.conformal import calibrate, conformal_rank
from attsolver.systems import Lorenz63
from attsolver.training import record_domain

H = 0.05


@pytest.fixture(scope="module")
def setting():
    system = Lorenz63()
    data = generate_trajectories(system, 30, t_final=0.5, dt=H, spin_up=2.0, seed=3, progress=False)
    torch.manual_seed(0)
    model = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    with torch.no_grad():  # a corrector that is not zero, so the bound is the corrected solve's
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cal, test = data.split([20, 10], seed=0)
    bounds = calibrate(model, cal, coverage=0.9)
    return system, model, cal, test, bounds


def test_the_solve_returns_the_conformal_bound_of_its_output_times(setting):
    system, model, cal, test, bounds = setting
    assert model.error_bounds is bounds
    sol, bound = attsolver.solve(system, test.y[:, 0], test.t, step_size=H, corrector=model,
                                 return_error_bounds=True)
    assert torch.equal(sol, attsolver.solve(system, test.y[:, 0], test.t, step_size=H, corrector=model))
    # the bound at t_j is the k-th smallest calibration error norm at t_j, k = ceil((n + 1) 0.9)
    pred = attsolver.solve(system, cal.y[:, 0], cal.t, step_size=H, corrector=model)
    err = torch.linalg.vector_norm(pred.transpose(0, 1) - cal.y, dim=-1)
    assert bound.dtype == torch.float64 and bound.shape == (len(test.t),)
    assert torch.equal(bound, err.sort(0).values[conformal_rank(20, 0.9)[0] - 1])
    # every other output time, from another start: the bound at the same elapsed times
    (sol2, bound2), stats = attsolver.solve(system, test.y[:3, 0], test.t[::2] + 3.0, step_size=H,
                                            corrector=model, return_error_bounds=True, return_stats=True)
    assert torch.equal(bound2, bound[::2]) and stats.n_steps == 10 and sol2.shape == (6, 3, 3)


def test_the_bounds_survive_save_and_load(setting, tmp_path):
    system, model, _, test, bounds = setting
    loaded = Corrector.load(model.save(tmp_path / "m.pt"))
    assert torch.equal(loaded.error_bounds.bound, bounds.bound) and loaded.error_bounds.coverage == 0.9
    assert loaded.error_bounds.fingerprint == bounds.fingerprint and loaded.error_bounds.step_size == H
    _, bound = attsolver.solve(system, test.y[:, 0], test.t, step_size=H, corrector=loaded, return_error_bounds=True)
    assert torch.equal(bound, bounds.bound)


def test_refusals_name_the_fix(setting):
    system, model, cal, test, bounds = setting
    y0 = test.y[:, 0]
    fresh = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"no error bounds: call attsolver.calibrate\(corrector, data"):
        attsolver.solve(system, y0, test.t, step_size=H, corrector=fresh, return_error_bounds=True)
    with pytest.raises(ValueError, match="needs corrector="):
        attsolver.solve(system, y0, test.t, step_size=H, return_error_bounds=True)
    with pytest.raises(ValueError, match="beyond the calibrated horizon 0.5"):
        attsolver.solve(system, y0, torch.linspace(0, 1.0, 21, dtype=torch.float64), step_size=H, corrector=model,
                        return_error_bounds=True)
    with pytest.raises(ValueError, match="not interpolated between calibration times"):
        attsolver.solve(system, y0, torch.tensor([0.0, 0.075], dtype=torch.float64), step_size=H, corrector=model,
                        return_error_bounds=True)
    with pytest.raises(ValueError, match=r"step_size=0.025 \(calibrated: 0.05\)"):
        attsolver.solve(system, y0, test.t, step_size=0.025, corrector=model, return_error_bounds=True)
    with pytest.raises(ValueError, match="a fallback changes the solution"):
        attsolver.solve(system, y0, test.t, step_size=H, corrector=model, guard="fallback", return_error_bounds=True)
    with pytest.raises(ValueError, match="event= do not combine"):
        attsolver.solve(system, y0, test.t, step_size=H, corrector=model, event=lambda t, y: y[..., 0],
                        return_error_bounds=True)
    retrained = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    retrained.load_state_dict(model.state_dict())
    retrained.error_bounds = bounds
    attsolver.solve(system, y0, test.t, step_size=H, corrector=retrained, return_error_bounds=True)
    with torch.no_grad():
        next(retrained.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="weights \\(they changed since calibrate\\)"):
        attsolver.solve(system, y0, test.t, step_size=H, corrector=retrained, return_error_bounds=True)


def test_a_fallback_guard_is_calibrated_with_its_guard(setting):
    system, model, cal, test, _ = setting
    m = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    m.load_state_dict(model.state_dict())
    record_domain(m, cal)
    b = calibrate(m, cal, coverage=0.9, guard="fallback")
    assert b.guard == "fallback"
    sol, bound = attsolver.solve(system, test.y[:, 0], test.t, step_size=H, corrector=m, guard="fallback",
                                 return_error_bounds=True)
    assert torch.equal(bound, b.bound) and sol.shape == (len(test.t), 10, 3)
