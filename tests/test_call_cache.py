"""What ``solve`` keeps between calls (``attsolver.integrate.call_cache``) changes no result and
no message: a warm call equals a cold one bit for bit, a ``t`` changed in place is seen, a NaN
that ``f`` returns at the start of a later solve is still named as ``f``'s, a coarse step warns
on every call, and a reused stepper gives the solution a fresh one gives."""

from __future__ import annotations

import warnings

import pytest
import torch

from attsolver import NonFiniteSolutionError, solve
from attsolver.integrate import call_cache
from attsolver.integrate.errors import CoarseStepWarning
from attsolver.systems import Burgers, Lorenz63


@pytest.fixture(autouse=True)
def _cold():
    call_cache.clear()
    yield
    call_cache.clear()


class Counted:
    """``y' = -y``, counting its calls; with a ``limit``, NaN where ``y > limit`` (as a network
    with a domain-restricted operation outside its range)."""

    def __init__(self, limit: float | None = None):
        self.calls, self.limit = 0, limit

    def __call__(self, t, y):
        self.calls += 1
        return -y if self.limit is None else -y + 0.0 * torch.sqrt(self.limit - y)


@pytest.mark.parametrize("step_size", [0.01, None])
def test_warm_calls_equal_a_cold_one_bit_for_bit(step_size):
    f = Lorenz63()
    y0 = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 20.0]], dtype=torch.float64)
    t = torch.linspace(0, 0.05, 6, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoarseStepWarning)
        cold = solve(f, y0, t, method="rk4", step_size=step_size)
        warm = [solve(f, y0, t, method="rk4", step_size=step_size) for _ in range(3)]
    call_cache.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoarseStepWarning)
        again = solve(f, y0, t.clone(), method="rk4", step_size=step_size)
    for w in warm + [again]:
        assert torch.equal(w, cold)


def test_a_t_changed_in_place_is_seen():
    f, y0 = Counted(), torch.ones(3, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    solve(f, y0, t, method="rk4", step_size=0.125)
    t.mul_(2.0)  # the same tensor, new times
    sol = solve(f, y0, t, method="rk4", step_size=0.125)
    # RK4 on y' = -y: 16 steps of 0.125 reach t = 2 with error ~1e-6
    assert abs(float(sol[-1, 0]) - float(torch.exp(torch.tensor(-2.0)))) < 1e-5
    assert torch.equal(sol, solve(Counted(), y0, t.clone(), method="rk4", step_size=0.125))


def test_an_invalid_t_after_a_valid_one_is_refused():
    f, y0 = Counted(), torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    solve(f, y0, t, method="rk4", step_size=0.25)
    t[2] = t[1]
    with pytest.raises(ValueError, match="strictly monotone"):
        solve(f, y0, t, method="rk4", step_size=0.25)


def test_f_is_called_once_for_its_check_then_only_by_the_steps():
    f, y0 = Counted(), torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    solve(f, y0, t, method="rk4", step_size=0.5)
    assert f.calls == 1 + 2 * 4  # the check, then two RK4 steps
    f.calls = 0
    solve(f, y0, t, method="rk4", step_size=0.5)
    assert f.calls == 2 * 4


def test_a_nan_of_f_at_the_start_of_a_later_solve_is_still_named_before_any_step():
    f = Counted(limit=1.6)
    solve(f, torch.zeros(2, dtype=torch.float64), torch.linspace(0, 1, 3, dtype=torch.float64), method="euler",
          step_size=0.5)
    with pytest.raises(NonFiniteSolutionError, match=r"f\(t, y\) returned NaN/inf at t=0 for the finite initial "
                                                     r"state, before any step") as info:
        solve(f, torch.full((2,), 2.0, dtype=torch.float64), torch.linspace(0, 1, 3, dtype=torch.float64),
              method="euler", step_size=0.5)
    assert info.value.step == 0


def test_a_coarse_step_warns_on_every_call_and_a_quiet_one_is_checked_once():
    y0 = torch.ones(2, dtype=torch.float64)
    coarse = torch.linspace(0, 4, 3, dtype=torch.float64)  # h = 2 on y' = -y: far too coarse
    f = Counted()
    for _ in range(2):
        with pytest.warns(CoarseStepWarning):
            solve(f, y0, coarse, method="rk4")
    fine = torch.linspace(0, 0.01, 3, dtype=torch.float64)
    g = Counted()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarseStepWarning)
        solve(g, y0, fine, method="rk4")
        g.calls = 0
        solve(g, y0, fine, method="rk4")
    assert g.calls == 2 * 4  # no check call, no step-doubling steps: only the solve's


def test_a_reused_spectral_stepper_gives_a_fresh_ones_solution():
    system = Burgers(nu=0.01, nx=64, length=1.0)
    u0 = system.sample_initial(2, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0, 0.05, 11, dtype=torch.float64)
    first = solve(system, u0, t, method="etdrk4")
    kept = list(call_cache._STEPPERS.values())
    assert len(kept) == 1 and kept[0].f is system
    second = solve(system, u0, t, method="etdrk4")
    assert list(call_cache._STEPPERS.values()) == kept  # the same stepper served the second solve
    call_cache.clear()
    fresh = solve(Burgers(nu=0.01, nx=64, length=1.0), u0, t, method="etdrk4")
    assert torch.equal(first, second) and torch.equal(first, fresh)


def test_the_kept_grids_are_read_only():
    f, y0 = Counted(), torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    solve(f, y0, t, method="rk4", step_size=0.1)
    entry = call_cache.times_entry(t, only_known=True)
    grid = next(iter(entry.grids.values()))
    for arr in (entry.t_np, grid.n_sub, grid.h_int):
        with pytest.raises(ValueError):
            arr[0] = 0


def test_a_sweep_over_step_sizes_keeps_a_bounded_number_of_grids():
    f, y0 = Counted(), torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    for k in range(1, 3 * call_cache.MAX_STEP_SIZES):
        sol = solve(f, y0, t, method="euler", step_size=1.0 / (2 * k))
        assert float(sol[-1, 0]) == pytest.approx((1 - 1.0 / (2 * k)) ** (2 * k), rel=1e-12)  # Euler on y' = -y
    assert len(call_cache.times_entry(t, only_known=True).grids) == call_cache.MAX_STEP_SIZES


def test_solves_from_ever_new_start_times_keep_a_bounded_number_of_verdicts():
    f, y = Counted(), torch.ones(2, dtype=torch.float64)
    for i in range(call_cache.MAX_KEYS_PER_F + 10):  # one interval at a time, no step_size: a check per start
        y = solve(f, y, torch.tensor([0.01 * i, 0.01 * (i + 1)], dtype=torch.float64), method="rk4")[-1]
    assert len(call_cache._F_SEEN[f]) <= call_cache.MAX_KEYS_PER_F
    assert float(y[0]) == pytest.approx(float(torch.exp(torch.tensor(-0.01 * (call_cache.MAX_KEYS_PER_F + 10),
                                                                      dtype=torch.float64))), rel=1e-9)
