"""Terminal events (``solve(..., event=g)``): bouncing ball and pendulum times against the
analytic value and SciPy's ``solve_ivp`` events (rtol 1e-12), agreement with torchdiffeq's
``odeint_event``, batched stops with held states, a never-firing sample, the event time's
gradient (exact and finite differences), bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchdiffeq
from scipy.integrate import solve_ivp
from torch import nn

import attsolver

DT = torch.float64


class Ball(nn.Module):
    """y = (height, velocity), y'' = -g (a parameter)."""

    def __init__(self, g=9.81):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(g, dtype=DT))

    def forward(self, t, y):
        return torch.stack([y[..., 1], -self.g.expand_as(y[..., 1])], -1)


def pendulum(t, y):
    return torch.stack([y[..., 1], -9.81 * torch.sin(y[..., 0])], -1)


def height(t, y):
    return y[..., 0]


def test_bouncing_ball_times_are_sqrt_2h_over_g_and_samples_hold():
    h0 = torch.tensor([1.0, 5.0, 10.0, 2000.0], dtype=DT)  # the last one lands after t[-1]
    y0 = torch.stack([h0, torch.zeros_like(h0)], -1)
    t = torch.linspace(0.0, 3.0, 31, dtype=DT)
    t_ev, sol = attsolver.solve(Ball(), y0, t, step_size=0.01, event=height)
    exact = torch.sqrt(2 * h0 / 9.81)
    assert torch.allclose(t_ev[:3], exact[:3], rtol=0, atol=1e-9)
    assert math.isinf(float(t_ev[3])) and float(t_ev[3]) > 0  # never fired: +inf, no error
    assert sol.shape == (31, 4, 2)
    for b in range(3):  # outputs after the event hold the event state (height 0, speed -g t*)
        after = t > t_ev[b]
        assert after.any()
        held = sol[after, b]
        assert torch.allclose(held[:, 0], torch.zeros_like(held[:, 0]), atol=1e-9)
        assert torch.allclose(held[:, 1], -9.81 * exact[b].expand(len(held)), atol=1e-9)
        before = ~after
        assert torch.allclose(sol[before, b, 0], h0[b] - 0.5 * 9.81 * t[before] ** 2, atol=1e-9)


def test_pendulum_zero_angle_crossing_agrees_with_scipy_events():
    theta0 = [0.3, 1.0, 2.5]
    y0 = torch.tensor([[a, 0.0] for a in theta0], dtype=DT)
    t = torch.tensor([0.0, 2.0], dtype=DT)
    t_ev, _ = attsolver.solve(pendulum, y0, t, step_size=2e-3, event=height)
    for a, got in zip(theta0, t_ev.tolist()):
        ev = lambda t, y: y[0]  # noqa: E731
        ev.terminal = True
        ref = solve_ivp(lambda t, y: [y[1], -9.81 * np.sin(y[0])], (0.0, 2.0), [a, 0.0], method="DOP853",
                        rtol=1e-12, atol=1e-12, events=ev)
        assert abs(got - ref.t_events[0][0]) < 1e-9, (a, got, ref.t_events[0][0])


def test_agrees_with_torchdiffeq_odeint_event():
    """torchdiffeq's bouncing-ball example, with air drag so that the flight is no polynomial."""
    k = 0.3

    def ball(t, y):
        v = y[..., 1]
        return torch.stack([v, -9.81 - k * v * v.abs()], -1)

    y0 = torch.tensor([7.0, 2.0], dtype=DT)
    t_td, _ = torchdiffeq.odeint_event(ball, y0, torch.tensor(0.0, dtype=DT), event_fn=height,
                                       method="dopri5", rtol=1e-12, atol=1e-12)
    t_ev, _ = attsolver.solve(ball, y0, torch.tensor([0.0, 5.0], dtype=DT), step_size=1e-3, event=height)
    assert t_ev.shape == ()
    assert abs(float(t_ev) - float(t_td)) < 1e-9


def test_event_time_gradient_wrt_y0_and_parameters():
    f = Ball()
    y0 = torch.tensor([[10.0, 1.5]], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 4.0], dtype=DT)
    t_ev, sol = attsolver.solve(f, y0, t, step_size=0.01, event=height)
    gy, gg = torch.autograd.grad(t_ev.sum(), (y0, f.g))
    g, (h, v) = 9.81, y0[0].tolist()
    # t* = (v + sqrt(v^2 + 2 g h)) / g
    root = math.sqrt(v * v + 2 * g * h)
    assert abs(float(t_ev) - (v + root) / g) < 1e-9
    assert abs(float(gy[0, 0]) - 1 / root) < 1e-8
    assert abs(float(gy[0, 1]) - (1 + v / root) / g) < 1e-8
    assert abs(float(gg) - (h / root / g - (v + root) / g**2)) < 1e-8


def test_event_time_gradient_matches_finite_differences_on_the_pendulum():
    y0 = torch.tensor([[1.0, 0.4], [2.0, -0.3]], dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 3.0], dtype=DT)
    kw = dict(step_size=4e-3, event=lambda t, y: y[..., 0] - 0.2 * torch.sin(t))  # g depends on t too
    t_ev, _ = attsolver.solve(pendulum, y0, t, **kw)
    grad = torch.autograd.grad(t_ev.sum(), y0)[0]
    eps = 1e-6
    for i in range(2):
        for j in range(2):
            e = torch.zeros_like(y0)
            e[i, j] = eps
            with torch.no_grad():
                up, _ = attsolver.solve(pendulum, y0 + e, t, **kw)
                dn, _ = attsolver.solve(pendulum, y0 - e, t, **kw)
            fd = float((up[i] - dn[i]) / (2 * eps))
            assert abs(float(grad[i, j]) - fd) < 1e-6 * max(1.0, abs(fd)), (i, j, float(grad[i, j]), fd)


def test_event_with_a_corrector_and_stats():
    class Zero(nn.Module):
        def forward(self, t, y, dy, h):
            return torch.zeros_like(y)

    y0 = torch.tensor([[5.0, 0.0]], dtype=DT)
    t = torch.tensor([0.0, 2.0], dtype=DT)
    (t_ev, sol), stats = attsolver.solve(Ball(), y0, t, step_size=0.01, corrector=Zero(), event=height,
                                         return_stats=True)
    assert abs(float(t_ev) - math.sqrt(10 / 9.81)) < 1e-9
    assert stats.n_steps == 200


def test_bad_event_input_is_a_clear_error():
    y0 = torch.tensor([[5.0, 0.0]], dtype=DT)
    t = torch.tensor([0.0, 2.0], dtype=DT)
    with pytest.raises(ValueError, match=r"one value\s+per sample"):
        attsolver.solve(Ball(), y0, t, step_size=0.01, event=lambda t, y: y)
    with pytest.raises(TypeError, match="event"):
        attsolver.solve(Ball(), y0, t, step_size=0.01, event=3)
    with pytest.raises(ValueError, match="fixed-step"):
        attsolver.solve(Ball(), y0, t, method="scipy_radau", event=height)
    with pytest.raises(ValueError, match="event_tol"):
        attsolver.solve(Ball(), y0, t, step_size=0.01, event=height, options={"event_tol": -1.0})


def test_event_backwards_in_time():
    """t decreasing: the ball thrown back in time reaches the ground at t = -sqrt(2h/g)."""
    t_ev, _ = attsolver.solve(Ball(), torch.tensor([[5.0, 0.0]], dtype=DT), torch.tensor([0.0, -2.0], dtype=DT),
                              step_size=0.01, event=height)
    assert abs(float(t_ev) + math.sqrt(10 / 9.81)) < 1e-9
