"""The stiff family (``kvaerno5`` adaptive, ``kvaerno5_fixed``): order, L-stability, stiff
benchmark problems against SciPy's Radau at rtol 1e-12, IFT gradients against finite
differences, Newton failure and non-differentiable ``f``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from attsolver import NonFiniteSolutionError, solve
from attsolver.steppers.implicit import NewtonFailure, NotDifferentiableError, _time_grid

F64 = torch.float64
A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=F64)


def linear(t, y):
    return y @ A.T


def _t(*v):
    return torch.tensor(v, dtype=F64)


def radau(fun, y0, t, jac=None):
    s = solve_ivp(fun, (t[0], t[-1]), y0, method="Radau", t_eval=t, rtol=1e-12, atol=1e-14, jac=jac)
    assert s.success
    return s.y.T


def test_fixed_step_order_is_five_on_a_linear_problem():
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64)
    exact = y0 @ torch.linalg.matrix_exp(2.0 * A).T
    errs = [float((solve(linear, y0, _t(0.0, 2.0), method="kvaerno5_fixed", step_size=2.0 / n)[-1] - exact).abs().max())
            for n in (4, 8, 16)]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(4.7 < p < 5.4 for p in orders), orders


def test_l_stable_stability_function_vanishes_at_minus_infinity():
    # one step h = 1 of y' = lam y gives R(lam); L-stable and stiffly accurate: R(z) = O(1/z)
    R = {}
    for lam in (-1e4, -1e6, -1e8):
        R[lam] = float(solve(lambda t, y, lam=lam: lam * y, torch.ones(1, dtype=F64), _t(0.0, 1.0),
                             method="kvaerno5_fixed", step_size=1.0, options={"check_finite": True})[-1, 0])
    assert abs(R[-1e6]) < 1e-4
    assert abs(R[-1e8]) < abs(R[-1e6]) / 50 < abs(R[-1e4]) / 2500


def test_adaptive_meets_its_tolerance_on_a_linear_problem():
    y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=F64)
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    out = solve(linear, y0, t, method="kvaerno5", options={"rtol": 1e-8, "atol": 1e-10})
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(float(s) * A).T for s in t])
    assert float((out - exact).abs().max()) < 1e-6


def robertson(t, y):
    a, b, c = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack((-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b), -1)


@pytest.mark.slow
def test_robertson_against_radau():
    t = np.array([0.0, 0.4, 4.0, 40.0, 400.0])
    ref = radau(lambda s, y: robertson(s, torch.as_tensor(y)).numpy(), [1.0, 0.0, 0.0], t)
    out = solve(robertson, torch.tensor([1.0, 0.0, 0.0], dtype=F64), torch.as_tensor(t), method="kvaerno5",
                options={"rtol": 1e-6, "atol": 1e-10}).numpy()
    assert np.all(np.abs(out - ref) <= 1e-4 * np.abs(ref) + 1e-9)


def vdp(t, y, mu=1000.0):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((v, mu * (1 - x * x) * v - x), -1)


@pytest.mark.slow
@pytest.mark.parametrize("per_sample", [True, False])
def test_van_der_pol_mu_1000_against_radau(per_sample):
    t = np.array([0.0, 500.0, 1000.0, 1500.0])
    y0 = np.array([[2.0, 0.0], [1.8, 0.0]])
    out = solve(vdp, torch.as_tensor(y0), torch.as_tensor(t), method="kvaerno5",
                options={"rtol": 1e-6, "atol": 1e-9, "per_sample": per_sample}).numpy()
    for b in range(2):
        ref = radau(lambda s, y: vdp(s, torch.as_tensor(y)).numpy(), y0[b], t)
        # the global error of a 1e-6 local tolerance, amplified through the fast transitions
        assert np.all(np.abs(out[:, b] - ref) <= 1e-3 * np.abs(ref) + 1e-5), (out[:, b], ref)


def hires(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y.unbind(-1)
    r = 280.0 * y6 * y8
    return torch.stack((
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        r - 1.81 * y7,
        -r + 1.81 * y7,
    ), -1)


@pytest.mark.slow
def test_hires_against_radau():
    t = np.array([0.0, 5.0, 321.8122])
    y0 = [1.0, 0, 0, 0, 0, 0, 0, 0.0057]
    ref = radau(lambda s, y: hires(s, torch.as_tensor(y)).numpy(), y0, t)
    out = solve(hires, torch.tensor(y0, dtype=F64), torch.as_tensor(t), method="kvaerno5",
                options={"rtol": 1e-6, "atol": 1e-10}).numpy()
    assert np.all(np.abs(out - ref) <= 1e-4 * np.abs(ref) + 1e-8), np.abs(out - ref)


class Stiff(torch.nn.Module):
    """y' = -k (y - cos t) + c y^2: stiff for large k; parameters k, c."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(50.0, dtype=F64))
        self.c = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def forward(self, t, y):
        return -self.k * (y - torch.cos(t)) + self.c * y * y


@pytest.mark.parametrize("method, kw", [
    ("kvaerno5_fixed", {"step_size": 0.05}),
    pytest.param("kvaerno5", {"options": {"rtol": 1e-10, "atol": 1e-12}}, marks=pytest.mark.slow),
])
def test_ift_gradient_matches_finite_differences(method, kw):
    f = Stiff()
    y0 = torch.tensor([[0.5], [1.2]], dtype=F64, requires_grad=True)
    t = _t(0.0, 0.5, 1.0)

    def loss():
        return (solve(f, y0, t, method=method, **kw)[1:] ** 2).sum()

    value = loss()
    gy0, gk, gc = torch.autograd.grad(value, (y0, f.k, f.c))
    eps = 1e-6
    with torch.no_grad():
        for p, g in ((f.k, gk), (f.c, gc)):
            p += eps
            up = float(loss())
            p -= 2 * eps
            down = float(loss())
            p += eps
            assert abs((up - down) / (2 * eps) - float(g)) < 1e-6 * max(1.0, abs(float(g)))
        for i in range(2):
            e = torch.zeros_like(y0)
            e[i, 0] = eps
            y0 += e
            up = float(loss())
            y0 -= 2 * e
            down = float(loss())
            y0 += e
            assert abs((up - down) / (2 * eps) - float(gy0[i, 0])) < 1e-6 * max(1.0, abs(float(gy0[i, 0])))


def test_ift_gradient_equals_backprop_through_an_explicit_fine_solve():
    # the same continuous derivative from a different route: autograd through many RK4 steps
    f = Stiff()
    with torch.no_grad():
        f.k.fill_(5.0)  # explicit RK4 stable at h = 1e-3
    y0 = torch.tensor([[0.5]], dtype=F64)
    t = _t(0.0, 1.0)
    g_ift = torch.autograd.grad(solve(f, y0, t, method="kvaerno5_fixed", step_size=0.02)[-1].sum(), f.k)[0]
    g_rk4 = torch.autograd.grad(solve(f, y0, t, method="rk4", step_size=2e-3)[-1].sum(), f.k)[0]
    assert abs(float(g_ift - g_rk4)) < 1e-8


def test_per_sample_steps_equal_separate_solves():
    y0 = torch.tensor([[2.0, 0.0], [1.2, 0.5], [0.3, -0.2]], dtype=F64)
    t = _t(0.0, 0.4, 1.0)
    f = lambda t, y: vdp(t, y, mu=20.0)  # noqa: E731
    opts = {"rtol": 1e-7, "atol": 1e-9, "per_sample": True}
    out = solve(f, y0, t, method="kvaerno5", options=opts)
    for b in range(3):
        alone = solve(f, y0[b:b + 1], t, method="kvaerno5", options=opts)
        torch.testing.assert_close(out[:, b:b + 1], alone, rtol=1e-12, atol=1e-13)


def test_per_sample_time_is_broadcastable_against_y():
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        return -y * (1 + torch.sin(t))

    solve(f, torch.ones(3, 2, dtype=F64), _t(0.0, 1.0), method="kvaerno5", options={"per_sample": True})
    assert (3, 1) in seen


def test_corrector_hook_on_the_fixed_step_mode():
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64)
    t = _t(0.0, 1.0)
    plain = solve(linear, y0, t, method="kvaerno5_fixed", step_size=0.25)
    zero = solve(linear, y0, t, method="kvaerno5_fixed", step_size=0.25,
                 corrector=lambda t, y, dy, h: torch.zeros_like(y))
    assert torch.equal(plain, zero)
    shifted = solve(linear, y0, t, method="kvaerno5_fixed", step_size=0.5,
                    corrector=lambda t, y, dy, h: torch.full_like(y, 1e-3))
    one = solve(linear, y0, _t(0.0, 0.5), method="kvaerno5_fixed", step_size=0.5)[-1] + 1e-3
    two = solve(linear, one, _t(0.5, 1.0), method="kvaerno5_fixed", step_size=0.5)[-1] + 1e-3
    torch.testing.assert_close(shifted[-1], two, rtol=0, atol=1e-15)


def test_newton_failure_names_the_time_and_the_sample():
    def f(t, y):  # f is NaN for sample 1 from the start: every Newton iteration of its stages fails
        return torch.where(y < 0.6, torch.full_like(y, float("nan")), -y)

    y0 = torch.tensor([[10.0], [0.5], [20.0]], dtype=F64)
    with pytest.raises(NewtonFailure, match=r"sample 1 at t=0 after 8 step reductions") as info:
        solve(f, y0, _t(0.0, 1.0), method="kvaerno5",
              options={"per_sample": True, "max_rejects": 8, "check_finite": False})
    assert info.value.sample == 1 and info.value.time == 0.0


def test_step_underflow_names_the_time_and_the_sample():
    def f(t, y):  # sample 1 leaves f's domain (NaN) below y = 0.6, at t = ln(1/0.6) = 0.51
        return torch.where(y < 0.6, torch.full_like(y, float("nan")), -y)

    y0 = torch.tensor([[10.0], [1.0], [20.0]], dtype=F64)
    with pytest.raises(NonFiniteSolutionError, match=r"t=0\.5108.* sample 1"):
        solve(f, y0, _t(0.0, 1.0), method="kvaerno5", options={"per_sample": True})


def test_non_differentiable_f_is_a_clear_error():
    def f(t, y):
        return torch.as_tensor(np.cos(y.detach().numpy() if not y.requires_grad else y.numpy()))

    with pytest.raises(NotDifferentiableError, match="autograd"):
        solve(f, torch.ones(2, dtype=F64), _t(0.0, 1.0), method="kvaerno5")


def test_per_sample_grid_not_monotone_names_the_sample():
    grid = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"sample 1"):
        _time_grid(grid, 2)


def test_complex_state_refused():
    with pytest.raises(TypeError, match="real"):
        solve(lambda t, y: -y, torch.ones(2, dtype=torch.complex128), _t(0.0, 1.0), method="kvaerno5")
