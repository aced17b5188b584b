"""Per-sample time grids: ``t`` of shape ``[batch, n_t]``; each sample's result equals its
own separate solve (fixed-step: exactly; ``kvaerno5``, batched with per-sample step control:
to round-off); bad grids name the sample."""

from __future__ import annotations

import pytest
import torch

from attsolver import solve

F64 = torch.float64


def damped(t, y):
    return torch.stack((y[..., 1], -y[..., 0] - 0.1 * y[..., 1] + 0.2 * torch.cos(t)), -1)


Y0 = torch.tensor([[1.0, 0.0], [0.5, 0.3], [-0.2, 1.0]], dtype=F64)
GRID = torch.tensor([[0.0, 0.5, 1.0, 2.0], [0.3, 0.4, 1.7, 1.9], [1.0, 0.8, 0.1, -0.5]], dtype=F64)


@pytest.mark.parametrize("method, kw", [("rk4", {"step_size": 0.05}), ("euler", {"step_size": 0.1}), ("dopri5", {})])
def test_per_sample_grid_equals_separate_solves(method, kw):
    out = solve(damped, Y0, GRID, method=method, **kw)
    assert out.shape == (4, 3, 2)
    for b in range(3):
        alone = solve(damped, Y0[b:b + 1], GRID[b], method=method, **kw)[:, 0]
        assert torch.equal(out[:, b], alone)


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
