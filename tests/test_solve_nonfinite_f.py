"""A vector field that itself returns NaN/inf (a damaged or out-of-range neural ``f``) gets an
error that says so — not the step-size advice a genuine blow-up of the solution gets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attsolver
from attsolver import NonFiniteSolutionError


class RangeLimitedField(nn.Module):
    """``y' = 1 + 0 * sqrt(1.6 - y)``: finite and constant for ``y <= 1.6``, NaN beyond — as a
    network with a domain-restricted operation leaves its valid range."""

    def forward(self, t, y):
        return 1.0 + 0.0 * torch.sqrt(1.6 - y)


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_non_finite_f_at_the_start_is_named_before_any_step(method):
    f = nn.Linear(3, 3)
    with torch.no_grad():
        f.bias[1] = float("nan")
    field = lambda t, y: f(y)  # noqa: E731
    y0 = torch.zeros(4, 3)
    t = torch.linspace(0, 1, 5)
    kw = {} if method == "dopri5" else {"step_size": 0.25}
    with torch.no_grad(), pytest.raises(NonFiniteSolutionError, match=r"f\(t, y\) returned NaN/inf at t=0 for the "
                                        r"finite initial state \(batch elements 0, 1, 2, 3 of 4\), before any step"):
        attsolver.solve(field, y0, t, method=method, **kw)
    # opting out of the check returns the raw result
    with torch.no_grad():
        sol = attsolver.solve(field, y0, t, method="euler", step_size=0.25, options={"check_finite": False})
    assert torch.isnan(sol[1:, :, 1]).all() and torch.isnan(sol[-1]).all()  # spreads through the weights


def test_non_finite_f_mid_solve_names_f_and_the_step():
    # y(t) = t exactly; Euler h=0.25 reaches y=1.75 > 1.6 after 7 steps, so step 7 (t=1.75) evaluates
    # f at a finite state outside its range
    with torch.no_grad(), pytest.raises(NonFiniteSolutionError) as info:
        attsolver.solve(RangeLimitedField(), torch.zeros(2, 1), torch.linspace(0, 2, 3), method="euler",
                        step_size=0.25)
    assert info.value.step == 7 and info.value.time == pytest.approx(1.75)
    assert "f itself returned NaN at the finite state the step started from" in str(info.value)
    assert "reduce step_size" not in str(info.value)


def test_a_genuine_blow_up_keeps_the_step_size_advice():
    # y' = 1e30 y^2 overflows: f returns inf (never NaN) at the huge but finite state after step 0
    with torch.no_grad(), pytest.raises(NonFiniteSolutionError, match="reduce step_size") as info:
        attsolver.solve(lambda t, y: y * y * 1e30, torch.ones(1), torch.linspace(0, 1, 3), method="euler",
                        step_size=0.5)
    assert "f itself" not in str(info.value)
