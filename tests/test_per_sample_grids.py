"""Per-sample time grids: ``t`` of shape ``[batch, n_t]``; each sample's result equals its
own separate solve to round-off (fixed-step explicit RK, ``dopri5``/``dopri8`` and ``kvaerno5``,
each batched with a time (and step size) per sample); bad grids name the sample."""

from __future__ import annotations

import pytest
import torch

from attsolver import NonFiniteSolutionError, solve

F64 = torch.float64


def damped(t, y):
    tt = t[..., 0] if t.dim() else t  # t: 0-d (one time for the batch) or [batch, 1] (a time per sample)
    return torch.stack((y[..., 1], -y[..., 0] - 0.1 * y[..., 1] + 0.2 * torch.cos(tt)), -1)


Y0 = torch.tensor([[1.0, 0.0], [0.5, 0.3], [-0.2, 1.0]], dtype=F64)
GRID = torch.tensor([[0.0, 0.5, 1.0, 2.0], [0.3, 0.4, 1.7, 1.9], [1.0, 0.8, 0.1, -0.5]], dtype=F64)


@pytest.mark.parametrize("method, kw", [("rk4", {"step_size": 0.05}), ("euler", {"step_size": 0.1}),
                                        ("ssprk3", {"step_size": 0.07}), ("rk4", {})])
def test_fixed_per_sample_grid_is_batched_and_equals_separate_solves(method, kw):
    """Each sample on its own step grid (here 40, 32 and 30 steps of its own size), one batch."""
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        return damped(t, y)

    out = solve(f, Y0, GRID, method=method, **kw)
    assert out.shape == (4, 3, 2)
    assert (3, 1) in seen  # a time per sample: one batched loop
    for b in range(3):
        alone = solve(damped, Y0[b:b + 1], GRID[b], method=method, **kw)[:, 0]
        torch.testing.assert_close(out[:, b], alone, rtol=0, atol=1e-14)


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_adaptive_per_sample_grid_is_batched_and_equals_separate_solves(method):
    """The batch equals the same method on each sample alone to round-off, torchdiffeq's
    separate (lock-step) solve to the tolerance, and gradients flow to y0 as for the separate solves."""
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        return damped(t, y)

    opts = {"rtol": 1e-9, "atol": 1e-11}
    y0 = Y0.clone().requires_grad_(True)
    out = solve(f, y0, GRID, method=method, options=opts)
    assert out.shape == (4, 3, 2) and (3, 1) in seen
    grad = torch.autograd.grad(out[-1].sum(), y0)[0]
    for b in range(3):
        yb = Y0[b:b + 1].clone().requires_grad_(True)
        one = solve(f, yb, GRID[b:b + 1], method=method, options=opts)[:, 0]
        torch.testing.assert_close(out[:, b], one, rtol=0, atol=1e-14)
        torch.testing.assert_close(grad[b], torch.autograd.grad(one[-1].sum(), yb)[0][0], rtol=0, atol=1e-12)
        ref = solve(damped, Y0[b:b + 1], GRID[b], method=method, options=opts)[:, 0]
        torch.testing.assert_close(out[:, b], ref.detach(), rtol=0, atol=1e-9)


def test_per_sample_step_control_with_one_grid_for_the_batch():
    """options={"per_sample": True} with a 1-D t: a hard sample (fast oscillation) takes small
    steps, the easy ones large steps; every sample to the tolerance of the exact solution."""
    w = torch.tensor([1.0, 1.0, 10.0], dtype=F64)
    calls = []

    def osc(t, y):
        calls.append(1)
        return torch.stack((w * y[..., 1], -w * y[..., 0]), -1)

    y0 = torch.tensor([[1.0, 0.0]] * 3, dtype=F64)
    t = torch.linspace(0.0, 5.0, 11, dtype=F64)
    exact = torch.stack((torch.cos(w * t[:, None]), -torch.sin(w * t[:, None])), -1)
    per = solve(osc, y0, t, method="dopri5", options={"rtol": 1e-8, "atol": 1e-10, "per_sample": True})
    torch.testing.assert_close(per, exact, rtol=0, atol=1e-6)
    lock = solve(osc, y0, t, method="dopri5", options={"rtol": 1e-8, "atol": 1e-10})
    torch.testing.assert_close(per, lock, rtol=0, atol=1e-6)


def test_kvaerno5_per_sample_grid_is_batched_and_equals_separate_solves():
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        tt = t[..., 0] if t.dim() else t
        return torch.stack((y[..., 1], -y[..., 0] - 0.1 * y[..., 1] + 0.2 * torch.cos(tt)), -1)

    opts = {"rtol": 1e-8, "atol": 1e-10}
    out = solve(f, Y0, GRID, method="kvaerno5", options=opts)
    assert (3, 1) in seen  # one batched solve, a time per sample
    for b in range(3):
        alone = solve(f, Y0[b:b + 1], GRID[b:b + 1], method="kvaerno5", options=opts)[:, 0]
        torch.testing.assert_close(out[:, b], alone, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method", ["rk4", "kvaerno5"])
def test_per_sample_grid_not_monotone_names_the_sample(method):
    grid = GRID.clone()
    grid[2, 2] = 1.5  # 1.0, 0.8, 1.5, -0.5
    with pytest.raises(ValueError, match=r"sample 2.*not strictly monotone"):
        solve(damped, Y0, grid, method=method)


def test_per_sample_grid_needs_a_matching_batch():
    with pytest.raises(ValueError, match=r"batch = 3"):
        solve(damped, Y0[:2], GRID, method="rk4")


def test_per_sample_bad_combinations_are_clear_errors():
    t2 = GRID[:, :2].clone()
    with pytest.raises(ValueError, match="event= takes a 1-D t"):
        solve(damped, Y0, t2, method="dopri5", event=lambda t, y: y[..., 0])
    with pytest.raises(ValueError, match="'adjoint' and 'checkpoint_steps' do not apply"):
        solve(damped, Y0, t2, method="dopri5", options={"adjoint": True})
    with pytest.raises(ValueError, match="no gradient with respect to t"):
        solve(damped, Y0, t2.requires_grad_(True), method="dopri8")
    with pytest.raises(ValueError, match="no gradient with respect to t"):
        solve(damped, Y0, GRID[0].clone().requires_grad_(True), method="dopri5", options={"per_sample": True})
    with pytest.raises(TypeError, match="per_sample"):
        solve(damped, Y0, GRID[0], method="dopri5", options={"per_sample": "yes"})


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_per_sample_blow_up_names_the_sample_and_time(method):
    """y' = y^2 blows up at t = 1/y0: sample 1 (y0 = 1) at t = 1, sample 0 (y0 = 0.1) not before t = 2."""
    y0 = torch.tensor([[0.1], [1.0]], dtype=F64)
    with pytest.raises(NonFiniteSolutionError, match=r"sample 1") as err:
        solve(lambda t, y: y * y, y0, torch.tensor([[0.0, 2.0], [0.0, 2.0]], dtype=F64), method=method)
    assert abs(err.value.time - 1.0) < 1e-3


def test_per_sample_option_with_an_unbatched_y0_is_one_sample():
    rot = lambda t, y: torch.stack((y[1], -y[0]))  # noqa: E731
    t = torch.linspace(0.0, 3.0, 4, dtype=F64)
    out = solve(rot, torch.tensor([1.0, 0.0], dtype=F64), t, method="dopri5",
                options={"per_sample": True, "rtol": 1e-9, "atol": 1e-11})
    torch.testing.assert_close(out, torch.stack((torch.cos(t), -torch.sin(t)), -1), rtol=0, atol=1e-8)
