"""solve(return_stats=True), the step-doubling check of a grid-stepped solve, and progress
reporting through logging when stderr is no terminal."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

import attsolver
import attsolver.data
from attsolver.integrate.checks import COARSE_STEP_TOLERANCE
from attsolver.integrate.errors import CoarseStepWarning
from attsolver.systems import LinearSystem, make_system

LIN = LinearSystem()


def _counted(f):
    calls = []

    def g(t, y):
        calls.append(1)
        return f(t, y)
    return g, calls


@pytest.mark.parametrize("method", ["euler", "rk4", "rk38"])
def test_stats_count_steps_and_evaluations(method):
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    f, calls = _counted(LIN)
    y, stats = attsolver.solve(f, y0, t, method=method, step_size=0.05, return_stats=True)
    plain = attsolver.solve(LIN, y0, t, method=method, step_size=0.05)
    assert torch.equal(y, plain)  # the default return is unchanged and the values identical
    stages = {"euler": 1, "rk4": 4, "rk38": 4}[method]
    assert stats.n_steps == 20 and stats.n_f_evals == 20 * stages
    assert len(calls) == stats.n_f_evals + 1  # + solve's one validation call of f
    assert stats.n_corrector_calls == 0 and stats.wall_time_s > 0 and not stats.steps_from_grid
    corr = attsolver.NeurVec(2, method=method, step_size=0.05, dtype=torch.float64)
    _, s2 = attsolver.solve(LIN, y0, t, method=method, step_size=0.05, corrector=corr, return_stats=True)
    assert s2.n_corrector_calls == s2.n_steps == 20


def test_adaptive_stats_count_f_calls():
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)
    f, calls = _counted(LIN)
    _, stats = attsolver.solve(f, y0, t, method="dopri5", options={"rtol": 1e-8, "atol": 1e-10}, return_stats=True)
    assert stats.n_steps is None and stats.n_f_evals == len(calls) - 1 > 10


def test_step_doubling_estimate_tracks_the_true_local_error():
    """On the linear system the exact one-interval error of RK4 at the grid spacing is known;
    the warning's Richardson estimate is within a factor 2 of it, and the step it suggests has
    an exact local error below the tolerance."""
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    h = 0.5
    t = torch.tensor([0.0, h, 2 * h], dtype=torch.float64)
    with pytest.warns(CoarseStepWarning) as rec:
        y = attsolver.solve(LIN, y0, t, method="rk4")
    msg = str(rec[0].message)
    est = float(msg.split("local error of ")[1].split(" ")[0])
    exact = LIN.exact(t[:2], y0)[-1]
    true = float((y[1] - exact).abs().max() / y0.abs().max())
    assert true / 2 < est < 2 * true
    suggested = float(msg.split("(e.g. ")[1].split(")")[0])
    n = round(h / suggested)
    y_fine = attsolver.solve(LIN, y0, t[:2], method="rk4", step_size=h / n)[-1]
    assert float((y_fine - exact).abs().max() / y0.abs().max()) < COARSE_STEP_TOLERANCE


def test_no_warning_for_a_fine_grid_or_an_explicit_step():
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarseStepWarning)
        attsolver.solve(LIN, y0, torch.linspace(0, 1, 101, dtype=torch.float64), method="rk4")  # h = 0.01
        attsolver.solve(LIN, y0, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), method="rk4", step_size=0.5)


def test_progress_goes_to_logging_when_stderr_is_no_terminal(caplog):
    """Under pytest stderr is captured (no terminal): fit and generate_trajectories log their
    progress on 'attsolver.progress' instead of drawing a bar."""
    with caplog.at_level(logging.INFO, logger="attsolver.progress"):
        data = attsolver.data.generate_trajectories(make_system("linear"), 4, t_final=1.0, dt=0.1)
        model = attsolver.NeurVec(2, method="rk4", step_size=0.1, width=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attsolver.fit(model, data, epochs=3, val_fraction=0.0)
    text = caplog.text
    assert "linear trajectories: 4/4 traj" in text
    assert "fit NeurVec: 3/3 epoch" in text and "train=" in text


def test_fit_history_repr_and_summary_read_plainly():
    data = attsolver.data.generate_trajectories(make_system("linear"), 6, t_final=2.0, dt=0.2, progress=False)
    model = attsolver.NeurVec(2, method="euler", step_size=0.2, width=32, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = attsolver.fit(model, data, epochs=20, lr=3e-3, progress=False)
    r = repr(h)
    assert r.startswith("FitHistory(20 epochs") and "rollout error corrected/classical" in r and len(r) < 300
    s = h.summary()
    assert "validation rollout" in s and "zero correction scores" in s
    roll = h.check["rollout"]
    for ec, e0, ratio in zip(roll["err_corrected"], roll["err_classical"], roll["ratio"]):
        assert ratio == pytest.approx(ec / e0)
    assert roll["ratio"][-1] < 1  # Euler's error is learnable on the linear system: the check sees it


def test_solve_with_progress_gives_the_same_solution(caplog):
    """progress=True integrates the output intervals in pieces, each from the previous piece's
    last state: bit-identical to one solve, with the same statistics, and logged."""
    s = make_system("lorenz63")
    y0 = s.sample_initial(3, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.0, 2.0, 251, dtype=torch.float64)
    plain, st = attsolver.solve(s, y0, t, step_size=0.004, return_stats=True)
    with caplog.at_level(logging.INFO, logger="attsolver.progress"):
        shown, st2 = attsolver.solve(s, y0, t, step_size=0.004, return_stats=True, progress=True)
    assert torch.equal(plain, shown)
    assert (st2.n_steps, st2.n_f_evals) == (st.n_steps, st.n_f_evals)
    assert "solve rk4: 250/250 interval" in caplog.text


def test_progress_reports_a_blow_up_over_the_whole_solve():
    """dy/dt = y^2 from y0 = 1/2 blows up at t = 2: with progress (a solve in pieces) the error
    names the same step, time and partial solution as without it."""
    f = lambda t, y: y**2  # noqa: E731
    y0 = torch.tensor([0.5], dtype=torch.float64)
    t = torch.linspace(0, 3, 301, dtype=torch.float64)
    errors = []
    for progress in (False, True):
        with pytest.raises(attsolver.NonFiniteSolutionError) as info:
            attsolver.solve(f, y0, t, step_size=0.01, progress=progress)
        errors.append(info.value)
    plain, pieces = errors
    assert pieces.step == plain.step > 100 and pieces.time == plain.time
    assert f"step {plain.step} " in str(pieces)
    torch.testing.assert_close(pieces.partial, plain.partial, rtol=0, atol=0)


def test_a_start_from_rest_is_not_reported_as_a_coarse_step():
    """y' = cos t from y0 = 0 on a 0.1 grid: RK4's local error is ~1e-9 of the state, so no
    CoarseStepWarning (dividing by |y0| = 0 once reported 1.6e299 and suggested h = 3.6e-62)."""
    y0 = torch.zeros(1, dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarseStepWarning)
        y = attsolver.solve(lambda tt, y: torch.cos(tt) * torch.ones_like(y), y0, t, method="rk4")
    torch.testing.assert_close(y[:, 0], torch.sin(t), rtol=0, atol=1e-6)
    with pytest.warns(CoarseStepWarning):  # a truly coarse grid from rest still warns
        attsolver.solve(lambda tt, y: torch.cos(8 * tt) * torch.ones_like(y), y0, t, method="euler")
