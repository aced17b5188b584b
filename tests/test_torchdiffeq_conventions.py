"""torchdiffeq's conventions, in full: a torchdiffeq-style problem set run through ``solve``
and ``torchdiffeq.odeint`` for every method both libraries have.

The problems (written here, in the spirit of torchdiffeq's own test problems) have exact
solutions; some depend on ``t`` explicitly, so the dtype ``f`` sees for ``t`` matters.  Every
combination of y0 dtype x t dtype x direction x shape is run; a case passes when ``solve``
returns ``y0``'s dtype and shape, agrees with torchdiffeq's same method on the same grid, and
is no less accurate than torchdiffeq against the exact solution.

Also here: ``t`` reaches ``f`` in ``y0``'s dtype, the RK stage combination rounds once per step
(float32 round-off no worse than torchdiffeq's), and gradients with respect to ``t`` flow for
the fixed-step methods (torchdiffeq's gradcheck on ``(y0, t)``) or are refused with a clear error.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq

import attsolver
from attsolver.systems import Burgers

# ours -> torchdiffeq's name for the same method (torchdiffeq's "rk4" is Kutta's 3/8 rule,
# our "rk38"; its "heun2" is Heun's method, our "heun")
METHODS = {"euler": "euler", "midpoint": "midpoint", "heun": "heun2", "rk38": "rk4",
           "dopri5": "dopri5", "dopri8": "dopri8"}


class Problem:
    """``f(t, y)`` and its exact solution ``exact(t, y0, t0)``, elementwise in ``y``."""

    def __init__(self, name, f, exact):
        self.name, self.f, self.exact = name, f, exact


def _matrix(dtype):
    return torch.tensor([[-0.3, 1.1, 0.0], [-1.1, -0.3, 0.4], [0.0, -0.4, -0.2]], dtype=dtype)


PROBLEMS = [
    # y' = a: every method is exact up to round-off
    Problem("constant", lambda t, y: torch.full_like(y, 0.7),
            lambda t, y0, t0: y0 + 0.7 * (t - t0)),
    # y' = -k y
    Problem("exponential", lambda t, y: -1.3 * y,
            lambda t, y0, t0: y0 * torch.exp(-1.3 * (t - t0))),
    # y' = cos(t) y: t enters f, so f must see a t of y's dtype
    Problem("sine", lambda t, y: torch.cos(t) * y,
            lambda t, y0, t0: y0 * torch.exp(torch.sin(t) - torch.sin(t0))),
    # y' = 3 t^2: a polynomial in t
    Problem("polynomial", lambda t, y: (3 * t * t).expand_as(y).clone(),
            lambda t, y0, t0: y0 + t**3 - t0**3),
    # logistic y' = y (1 - y): nonlinear in y
    Problem("logistic", lambda t, y: y * (1 - y),
            lambda t, y0, t0: y0 / (y0 + (1 - y0) * torch.exp(-(t - t0)))),
    # y' = A y, a damped rotation coupling three components (exact: the matrix exponential)
    Problem("linear", lambda t, y: y @ _matrix(y.dtype).T,
            lambda t, y0, t0: y0 @ torch.linalg.matrix_exp((t - t0) * _matrix(y0.dtype)).T),
]


def _exact(problem, t, y0):
    """Exact solution at every time, computed in float64."""
    t64, y64 = t.double(), y0.double()
    return torch.stack([problem.exact(ti, y64, t64[0]) for ti in t64])


def _cases():
    for p in PROBLEMS:
        for method in METHODS:
            for y_dtype in (torch.float32, torch.float64):
                for t_dtype in (torch.float32, torch.float64):
                    for reverse in (False, True):
                        for batch in (False, True):
                            yield pytest.param(p, method, y_dtype, t_dtype, reverse, batch,
                                               id=f"{p.name}-{method}-y{str(y_dtype)[-2:]}-t{str(t_dtype)[-2:]}"
                                                  f"-{'rev' if reverse else 'fwd'}-{'batch' if batch else 'single'}")


@pytest.mark.parametrize("problem,method,y_dtype,t_dtype,reverse,batch", list(_cases()))
def test_problem_set_agrees_with_torchdiffeq(problem, method, y_dtype, t_dtype, reverse, batch):
    y0 = torch.tensor([0.2, 0.5, 0.8], dtype=y_dtype)
    if batch:
        y0 = torch.stack([y0, 0.5 * y0 + 0.1])
    t = torch.linspace(0.0, 1.0, 21, dtype=t_dtype)
    if reverse:
        t = t.flip(0)
    got = attsolver.solve(problem.f, y0, t, method=method)
    ref = torchdiffeq.odeint(problem.f, y0, t, method=METHODS[method])
    assert got.dtype == y0.dtype and got.shape == (len(t), *y0.shape)
    exact = _exact(problem, t, y0)
    err_ours = float((got.double() - exact).abs().max())
    err_tdq = float((ref.double() - exact).abs().max())
    eps = torch.finfo(y_dtype).eps
    # as accurate as torchdiffeq (10% slack: with a float32 t, torchdiffeq's float32 stage
    # times and our float64 ones land on different sides of the exact times)
    assert err_ours <= err_tdq * 1.1 + 50 * eps, (err_ours, err_tdq)
    if not method.startswith("dopri"):  # same fixed-step arithmetic -> same numbers up to round-off
        # (torchdiffeq forms its stage times in t's dtype, we in float64 then y0's dtype: a
        # float32 t moves torchdiffeq's stage times by up to its resolution)
        tol = 200 * max(eps, torch.finfo(t_dtype).eps)
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_t_reaches_f_in_y0_dtype_for_every_method_kind():
    """A float32 state with a float64 ``t``: ``f`` sees a float32 ``t`` (torchdiffeq's rule),
    so an ``f`` that mixes ``t`` into its output keeps ``y``'s dtype."""
    seen = []

    def f(t, y):
        seen.append(t.dtype)
        return torch.cos(t) * y  # would be float64 if t were float64

    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    for method in ("rk4", "rk38", "dopri5", "dopri8", "scipy_dop853"):
        seen.clear()
        out = attsolver.solve(f, torch.ones(2), t, method=method)
        assert out.dtype == torch.float32
        assert set(seen) == {torch.float32}, (method, set(seen))


@pytest.mark.parametrize("method", ["rk4", "rk38"])
def test_float32_stage_combination_rounds_once_per_step(method):
    """y' = const over 7,000 float32 steps: the increment ``h sum_i b_i k_i`` is formed first
    and added to ``y`` once, so the round-off is that of one addition per step — the same as
    torchdiffeq's, where adding each ``h b_i k_i`` separately (four roundings of ``y``) gave
    2-150x more (1.7e-3 against 1.7e-4 at c = 1.2345)."""
    n = 7000
    t = torch.linspace(0, 7.0, n + 1, dtype=torch.float32)
    for c in (1.2345, -3.3):
        y0 = torch.tensor([0.1], dtype=torch.float32)
        f = lambda t, y, c=c: torch.full_like(y, c)  # noqa: E731
        exact = 0.1 + c * t.double()
        ours = float((attsolver.solve(f, y0, t, method=method)[:, 0].double() - exact).abs().max())
        tdq = float((torchdiffeq.odeint(f, y0, t, method="rk4")[:, 0].double() - exact).abs().max())
        assert ours <= tdq * 1.0001, (c, ours, tdq)
        # and the bound of one rounding of y per step: n half-ulps of |y| <= 9
        assert ours <= n * 0.5 * 2.0**-20 * 9, (c, ours)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "ssprk3", "rk4", "rk38"])
def test_gradcheck_wrt_y0_and_t(method):
    """torchdiffeq's gradient test: ``gradcheck`` on ``(y0, t)`` for a time-dependent f."""
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)

    def f(t, y):
        return torch.sin(t) * (y @ A.T) + torch.cos(3 * t)

    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, tt: attsolver.solve(f, y, tt, method=method), (y0, t))
    # backwards in time too
    tr = torch.tensor([0.9, 0.6, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, tt: attsolver.solve(f, y, tt, method=method), (y0, tr))


def test_time_gradient_matches_the_exact_derivative():
    """d y(t1) / d t1 = f(t1, y(t1)) and d y(t1) / d t0 = -Phi(t1, t0) f(t0, y0): checked on
    y' = -y with a fine fixed grid (RK4, so to ~h^4)."""
    y0 = torch.tensor([1.5], dtype=torch.float64)
    t0 = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    t1 = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y1 = attsolver.solve(lambda t, y: -y, y0, torch.stack([t0, t1]), step_size=0.01)[-1, 0]
    g0, g1 = torch.autograd.grad(y1, (t0, t1))
    y_exact = 1.5 * math.exp(-0.8)
    assert abs(float(g1) - (-y_exact)) < 1e-8
    assert abs(float(g0) - (1.5 * math.exp(-0.8))) < 1e-8


def test_time_gradient_refused_with_a_clear_error_where_unsupported():
    s = Burgers(nu=0.05, nx=16)
    u0 = s.sample_initial(1, generator=torch.Generator().manual_seed(0))[0]
    t = torch.linspace(0, 0.1, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"t requires grad.*etdrk4.*t\.detach\(\)"):
        attsolver.solve(s, u0, t, method="etdrk4")
    with pytest.raises(ValueError, match=r"t requires grad.*compile"):
        attsolver.solve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), t, options={"compile": True})
    # no grad requested: the spectral method runs as usual
    assert attsolver.solve(s, u0, t.detach(), method="etdrk4").shape == (3, 16)
