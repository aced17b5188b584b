"""Terminal events with the adaptive ``dopri5``/``dopri8``/``kvaerno5`` (``solve(..., method=..., event=g)``):
a falling body with quadratic drag against its closed-form landing time, the drag-free ball,
SciPy's ``solve_ivp`` events and torchdiffeq's ``odeint_event``, the event time's gradient
against the closed form's and finite differences, batched samples stopping at their own
times (held states, a sample that never fires), the dense output's order, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchdiffeq
from scipy.integrate import solve_ivp
from torch import nn

import attsolver
from attsolver.steppers.embedded import StepData, _Clock, _step, get_pair, solver_options

DT = torch.float64
G = 9.81


class Drag(nn.Module):
    """A body falling from rest: y = (height, velocity), y'' = -g + k v^2 (v < 0)."""

    def __init__(self, k=0.3):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=DT))

    def forward(self, t, y):
        v = y[..., 1]
        return torch.stack([v, -G + self.k * v * v], -1)


def landing_time(h0, k):
    """Closed form: y(t) = h0 - log(cosh(sqrt(g k) t)) / k, so t* = arccosh(exp(k h0)) / sqrt(g k)."""
    return torch.acosh(torch.exp(k * h0)) / torch.sqrt(torch.as_tensor(G * k, dtype=DT))


def height(t, y):
    return y[..., 0]


def _drop(h0):
    return torch.stack([h0, torch.zeros_like(h0)], -1)


@pytest.mark.parametrize("method, rtol, tol", [("dopri5", 1e-8, 2e-9), ("dopri5", 1e-10, 1e-10),
                                               ("dopri8", 1e-8, 1e-10), ("kvaerno5", 1e-8, 1e-9)])
def test_drag_landing_time_against_the_closed_form_and_held_states(method, rtol, tol):
    """dopri5 locates on its 4th-order dense output (error ~ rtol / 10 here); dopri8 and kvaerno5
    polish on their own step."""
    h0 = torch.tensor([1.0, 5.0, 10.0, 2000.0], dtype=DT)  # the last lands long after t[-1]
    t = torch.linspace(0.0, 3.0, 31, dtype=DT)
    f = Drag()
    with torch.no_grad():
        t_ev, sol = attsolver.solve(f, _drop(h0), t, method=method, options={"rtol": rtol, "atol": rtol * 1e-2},
                                    event=height)
    exact = landing_time(h0, 0.3)
    assert t_ev.shape == (4,) and sol.shape == (31, 4, 2)
    assert float((t_ev[:3] - exact[:3]).abs().max()) < tol
    assert math.isinf(float(t_ev[3])) and float(t_ev[3]) > 0  # never fired: +inf, no error
    c = math.sqrt(G * 0.3)
    for b in range(3):
        after = t > t_ev[b]
        held = sol[after, b]
        assert torch.allclose(held[:, 0], torch.zeros_like(held[:, 0]), atol=1e-8)
        v_star = -math.sqrt(G / 0.3) * math.tanh(c * float(exact[b]))
        assert torch.allclose(held[:, 1], torch.full_like(held[:, 1], v_star), atol=1e-7)
        before = ~after
        y_exact = h0[b] - torch.log(torch.cosh(c * t[before])) / 0.3
        assert torch.allclose(sol[before, b, 0], y_exact, atol=1e-7)
    assert torch.allclose(sol[:, 3, 0], 2000.0 - torch.log(torch.cosh(c * t)) / 0.3, atol=1e-6)


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_drag_free_ball_and_extra_batch_dimensions(method):
    h0 = torch.tensor([[1.0, 5.0, 10.0], [2.0, 3.0, 4.0]], dtype=DT)
    y0 = _drop(h0)  # [2, 3, 2]: batch shape [2, 3]
    ball = lambda t, y: torch.stack([y[..., 1], torch.full_like(y[..., 1], -G)], -1)  # noqa: E731
    with torch.no_grad():
        t_ev, sol = attsolver.solve(ball, y0, torch.tensor([0.0, 5.0], dtype=DT), method=method,
                                    options={"rtol": 1e-8, "atol": 1e-10}, event=height)
    assert t_ev.shape == (2, 3) and sol.shape == (2, 2, 3, 2)
    assert float((t_ev - torch.sqrt(2 * h0 / G)).abs().max()) < 1e-9


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_pendulum_crossing_agrees_with_scipy_events(method):
    theta0 = [0.3, 1.0, 2.5]
    y0 = torch.tensor([[a, 0.0] for a in theta0], dtype=DT)
    pend = lambda t, y: torch.stack([y[..., 1], -G * torch.sin(y[..., 0])], -1)  # noqa: E731
    with torch.no_grad():
        t_ev, _ = attsolver.solve(pend, y0, torch.tensor([0.0, 2.0], dtype=DT), method=method,
                                  options={"rtol": 1e-10, "atol": 1e-12}, event=height)
    for a, got in zip(theta0, t_ev.tolist()):
        ev = lambda t, y: y[0]  # noqa: E731
        ev.terminal = True
        ref = solve_ivp(lambda t, y: [y[1], -G * np.sin(y[0])], (0.0, 2.0), [a, 0.0], method="DOP853",
                        rtol=1e-12, atol=1e-12, events=ev)
        assert abs(got - ref.t_events[0][0]) < 1e-9, (a, got, ref.t_events[0][0])


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_agrees_with_torchdiffeq_odeint_event(method):
    """torchdiffeq's bouncing-ball example (thrown up, with drag |v| v)."""
    def ball(t, y):
        v = y[..., 1]
        return torch.stack([v, -G - 0.3 * v * v.abs()], -1)

    y0 = torch.tensor([7.0, 2.0], dtype=DT)
    t_td, _ = torchdiffeq.odeint_event(ball, y0, torch.tensor(0.0, dtype=DT), event_fn=height, method="dopri5",
                                       rtol=1e-12, atol=1e-12)
    t_ev, sol = attsolver.solve(ball, y0, torch.tensor([0.0, 5.0], dtype=DT), method=method,
                                options={"rtol": 1e-10, "atol": 1e-12}, event=height)
    assert t_ev.shape == () and sol.shape == (2, 2)
    assert abs(float(t_ev) - float(t_td)) < 1e-9


@pytest.mark.parametrize("method", ["dopri5", "dopri8", pytest.param("kvaerno5", marks=pytest.mark.slow)])
def test_event_time_gradient_against_the_closed_form_and_finite_differences(method):
    f = Drag()
    h0 = torch.tensor([3.0, 8.0], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 4.0], dtype=DT)
    opts = {"rtol": 1e-10, "atol": 1e-12}
    t_ev, sol = attsolver.solve(f, _drop(h0), t, method=method, options=opts, event=height)
    g_h, g_k = torch.autograd.grad(t_ev.sum(), (h0, f.k), retain_graph=True)
    k = torch.tensor(0.3, dtype=DT, requires_grad=True)
    hh = h0.detach().clone().requires_grad_(True)
    e_h, e_k = torch.autograd.grad(landing_time(hh, k).sum(), (hh, k))
    assert torch.allclose(g_h, e_h, rtol=1e-6, atol=0) and torch.allclose(g_k, e_k, rtol=1e-6, atol=0)
    eps = 1e-5
    with torch.no_grad():
        up, _ = attsolver.solve(f, _drop(h0 + eps), t, method=method, options=opts, event=height)
        dn, _ = attsolver.solve(f, _drop(h0 - eps), t, method=method, options=opts, event=height)
    assert torch.allclose(g_h, (up - dn) / (2 * eps), rtol=1e-5, atol=0)
    # the state at the event is differentiable too: its velocity is v(t*), a function of h0
    (g_v,) = torch.autograd.grad(sol[-1, :, 1].sum(), h0)
    c = math.sqrt(G * 0.3)
    exact = -math.sqrt(G / 0.3) * c * (1 - torch.tanh(c * landing_time(h0.detach(), 0.3)) ** 2) * e_h
    assert torch.allclose(g_v, exact, rtol=1e-5, atol=0)


@pytest.mark.parametrize("method", ["dopri5", "dopri8", "kvaerno5"])
def test_per_sample_step_control_with_events(method):
    """options={"per_sample": True}: every sample its own time and step (f gets t of shape
    [batch, 1]); the same landing times as the closed form, and as the lock-step solve."""
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        return Drag()(t, y)

    h0 = torch.tensor([1.0, 15.0, 2000.0], dtype=DT)
    t = torch.tensor([0.0, 1.0, 4.0], dtype=DT)
    opts = {"rtol": 1e-9, "atol": 1e-11}
    with torch.no_grad():
        t_ev, sol = attsolver.solve(f, _drop(h0), t, method=method, options={**opts, "per_sample": True},
                                    event=height)
        t_lock, sol_lock = attsolver.solve(Drag(), _drop(h0), t, method=method, options=opts, event=height)
    assert (3, 1) in seen
    assert float((t_ev[:2] - landing_time(h0[:2], 0.3)).abs().max()) < 1e-9
    assert math.isinf(float(t_ev[2])) and math.isinf(float(t_lock[2]))
    torch.testing.assert_close(t_ev[:2], t_lock[:2], rtol=0, atol=2e-9)
    torch.testing.assert_close(sol, sol_lock, rtol=0, atol=1e-6)


def test_event_depending_on_time_gradient_by_finite_differences():
    pend = lambda t, y: torch.stack([y[..., 1], -G * torch.sin(y[..., 0])], -1)  # noqa: E731
    y0 = torch.tensor([[1.0, 0.4], [2.0, -0.3]], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 3.0], dtype=DT)
    kw = dict(method="dopri5", options={"rtol": 1e-11, "atol": 1e-13},
              event=lambda t, y: y[..., 0] - 0.2 * torch.sin(t))
    t_ev, _ = attsolver.solve(pend, y0, t, **kw)
    grad = torch.autograd.grad(t_ev.sum(), y0)[0]
    eps = 1e-6
    for i in range(2):
        for j in range(2):
            e = torch.zeros_like(y0)
            e[i, j] = eps
            with torch.no_grad():
                up, _ = attsolver.solve(pend, y0 + e, t, **kw)
                dn, _ = attsolver.solve(pend, y0 - e, t, **kw)
            fd = float((up[i] - dn[i]) / (2 * eps))
            assert abs(float(grad[i, j]) - fd) < 1e-5 * max(1.0, abs(fd)), (i, j, float(grad[i, j]), fd)


def test_dopri5_dense_output_is_fourth_order():
    """One step of y' = cos(t) y from t = 0.3: the interpolant's error inside the step falls as h^5."""
    pair, errs = get_pair("dopri5"), []
    f = lambda tt, y: torch.cos(tt.reshape(1, 1)) * y  # noqa: E731
    for h in (0.2, 0.1, 0.05):
        clock = _Clock(torch.tensor([[0.3, 1.0]], dtype=DT), 1, False, solver_options("dopri5", {}))
        Y = torch.ones(1, 1, dtype=DT)
        step: StepData = _step(pair, f, clock, Y, f(clock.cur, Y), torch.tensor([h], dtype=DT),
                               solver_options("dopri5", {}))
        errs.append(max(abs(float(step.interpolate(torch.tensor([th], dtype=DT))) -
                            math.exp(math.sin(0.3 + th * h) - math.sin(0.3))) for th in (0.3, 0.5, 0.8)))
    orders = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert min(orders) > 4.6, orders


def test_event_bad_input_and_an_event_that_never_fires():
    y0 = torch.tensor([[5.0, 0.0]], dtype=DT)
    t = torch.tensor([0.0, 0.5], dtype=DT)
    with pytest.raises(ValueError, match=r"one value\s+per sample"):
        attsolver.solve(Drag(), y0, t, method="dopri5", event=lambda t, y: y)
    with pytest.raises(ValueError, match="adjoint"):
        attsolver.solve(Drag(), y0, t, method="dopri5", event=height, options={"adjoint": True})
    with pytest.raises(ValueError, match="fixed-step"):
        attsolver.solve(Drag(), y0, t, method="scipy_dop853", event=height)
    t_ev, sol = attsolver.solve(Drag(), y0, t, method="dopri8", event=height)
    assert math.isinf(float(t_ev)) and sol.shape == (2, 1, 2)
    with pytest.raises(ValueError, match=r"\[batch, d\]"):
        attsolver.solve(Drag(), _drop(torch.ones(2, 3, dtype=DT)), t, method="kvaerno5", event=height)


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_event_backwards_in_time(method):
    """t decreasing: the ball dropped back in time from rest reaches the ground at t = -sqrt(2h/g)."""
    ball = lambda t, y: torch.stack([y[..., 1], torch.full_like(y[..., 1], -G)], -1)  # noqa: E731
    t_ev, sol = attsolver.solve(ball, torch.tensor([[5.0, 0.0]], dtype=DT), torch.tensor([0.0, -2.0], dtype=DT),
                                method=method, options={"rtol": 1e-9, "atol": 1e-11}, event=height)
    assert abs(float(t_ev) + math.sqrt(10 / G)) < 1e-9
    assert abs(float(sol[-1, 0, 0])) < 1e-8
