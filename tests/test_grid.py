"""Grid transfer between periodic grids (attsolver.systems.grid): what restriction and
prolongation preserve, in 1-D and on the square 2-D grid."""

from __future__ import annotations

import math

import pytest
import torch

from attsolver.systems.grid import prolong, prolong_2d, restrict, restrict_2d

TOL = dict(rtol=0, atol=1e-12)


def _x(n: int) -> torch.Tensor:
    """Grid points ``2 pi j / n`` of the period ``2 pi``."""
    return 2 * math.pi * torch.arange(n, dtype=torch.float64) / n


def _band_limited(n: int, m_max: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    """Random real fields on ``n`` points with the modes ``1 <= |m| <= m_max`` and a random mean."""
    g = torch.Generator().manual_seed(seed)
    x = _x(n)
    m = torch.arange(1, m_max + 1, dtype=torch.float64)
    a, b = torch.randn(2, batch, m_max, generator=g, dtype=torch.float64)
    mean = torch.randn(batch, 1, generator=g, dtype=torch.float64)
    return mean + a @ torch.cos(m[:, None] * x) + b @ torch.sin(m[:, None] * x)


def test_restriction_of_a_band_limited_field_is_sampling():
    u = _band_limited(128, 15)  # |m| < 32 / 2
    torch.testing.assert_close(restrict(u, 32), u[:, ::4], **TOL)
    x = _x(64)
    w = torch.cos(3 * x[None, :] - 2 * x[:, None]) + 0.5 * torch.sin(7 * x[None, :] + 5 * x[:, None])
    torch.testing.assert_close(restrict_2d(w, 16), w[::4, ::4], **TOL)


def test_restriction_removes_modes_the_coarse_grid_cannot_hold_without_aliasing():
    x = _x(128)
    low = torch.sin(3 * x)
    high = torch.cos(20 * x)  # on 32 points mode 20 would alias onto mode 12
    torch.testing.assert_close(restrict(low + high, 32), low[::4], **TOL)
    w = low[None, :] * torch.cos(2 * x)[:, None]
    torch.testing.assert_close(restrict_2d(w + high[:, None] * high[None, :], 32), w[::4, ::4], **TOL)


def test_restrict_after_prolong_is_the_identity():
    u = restrict(torch.randn(4, 64, dtype=torch.float64), 32)  # no Nyquist mode
    for n in (32, 64, 256):
        torch.testing.assert_close(restrict(prolong(u, n), 32), u, **TOL)
    # any field: prolongation carries the Nyquist mode, restriction drops it
    v = torch.randn(4, 32, dtype=torch.float64)
    torch.testing.assert_close(restrict(prolong(v, 128), 32), restrict(v, 32), **TOL)
    w = restrict_2d(torch.randn(2, 64, 64, dtype=torch.float64), 32)
    for n in (32, 48, 128):
        torch.testing.assert_close(restrict_2d(prolong_2d(w, n), 32), w, **TOL)


def test_prolongation_interpolates_a_band_limited_field_exactly():
    u_fine = _band_limited(96, 7)
    u = u_fine[:, ::6]  # 16 points resolve |m| <= 7
    torch.testing.assert_close(prolong(u, 96), u_fine, **TOL)
    torch.testing.assert_close(prolong(u, 64)[:, ::4], u, **TOL)  # the old points keep their values
    x = _x(64)
    w_fine = torch.sin(2 * x[None, :] + 3 * x[:, None]) - torch.cos(5 * x)[:, None]
    torch.testing.assert_close(prolong_2d(w_fine[::4, ::4], 64), w_fine, **TOL)


def test_the_mean_is_preserved():
    u = torch.randn(5, 128, dtype=torch.float64) + 3.0
    for n in (16, 64, 128):
        torch.testing.assert_close(restrict(u, n).mean(-1), u.mean(-1), **TOL)
    torch.testing.assert_close(prolong(u, 256).mean(-1), u.mean(-1), **TOL)
    w = torch.randn(2, 64, 64, dtype=torch.float64) - 1.0
    torch.testing.assert_close(restrict_2d(w, 16).mean((-2, -1)), w.mean((-2, -1)), **TOL)
    torch.testing.assert_close(prolong_2d(w, 128).mean((-2, -1)), w.mean((-2, -1)), **TOL)


def test_2d_transfer_of_a_separable_field_is_the_product_of_the_1d_ones():
    g = torch.Generator().manual_seed(1)
    fy, fx = torch.randn(2, 64, generator=g, dtype=torch.float64)
    w = fy[:, None] * fx[None, :]  # w[j, i] = f_y(y_j) f_x(x_i)
    torch.testing.assert_close(restrict_2d(w, 16), restrict(fy, 16)[:, None] * restrict(fx, 16)[None, :], **TOL)
    cy, cx = restrict(fy, 32), restrict(fx, 32)  # without Nyquist modes both prolongations agree
    torch.testing.assert_close(prolong_2d(cy[:, None] * cx[None, :], 128),
                               prolong(cy, 128)[:, None] * prolong(cx, 128)[None, :], **TOL)


def test_same_grid_and_batch_shapes():
    u = torch.randn(2, 3, 64, dtype=torch.float64)
    assert prolong(u, 64) is u and restrict(u, 64).shape == u.shape
    assert restrict(u, 16).shape == (2, 3, 16) and prolong(u, 128).shape == (2, 3, 128)
    w = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert restrict_2d(w, 32) is w and prolong_2d(w, 32) is w
    assert restrict_2d(w, 16).shape == (2, 3, 16, 16) and prolong_2d(w, 64).shape == (2, 3, 64, 64)
    assert restrict(u.float(), 32).dtype == torch.float32


def test_bad_grids_are_refused():
    u = torch.randn(64, dtype=torch.float64)
    with pytest.raises(ValueError, match="must divide"):
        restrict(u, 48)
    with pytest.raises(ValueError, match="even integer >= 16"):
        restrict(u, 8)
    with pytest.raises(ValueError, match="nx must be an integer >= the field's 64 points"):
        prolong(u, 32)
    w = torch.randn(32, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"restrict_2d: need an even square field"):
        restrict_2d(torch.randn(32, 16), 8)
    with pytest.raises(ValueError, match=r"even n <= N"):
        restrict_2d(w, 64)
    with pytest.raises(ValueError, match=r"prolong_2d: .*even n >= N"):
        prolong_2d(w, 16)
