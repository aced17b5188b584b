"""Moving periodic fields between uniform grids: restriction (to fewer points) and
prolongation (to more), in 1-D and on the square 2-D grid — every grid transfer of the
library lives here.

Both directions work on the truncated Fourier series of the field.  A field of ``N`` points
(per side) holds the modes ``|m| <= N/2``; the coarse grid of ``n`` points can represent
``|m| < n/2`` unambiguously (its Nyquist mode ``n/2`` is the same on the grid as ``-n/2``).

* :func:`restrict` / :func:`restrict_2d`: keep the modes ``|m| < n/2`` (a sharp spectral
  cut-off, so nothing aliases) and evaluate the truncated series on the ``n`` coarse points.
  For a field whose modes all satisfy ``|m| < n/2`` this is exact: the result equals the
  field sampled at the coarse points.
* :func:`prolong` / :func:`prolong_2d`: spectral interpolation (zero padding): the field's
  Fourier series evaluated on the ``n`` fine points.  ``restrict(prolong(u, n), N) == u`` for
  a field without a Nyquist mode (every field :func:`restrict` returns; up to rounding).

Both preserve the spatial mean (mode 0) exactly in exact arithmetic.  Grid point ``j`` sits at
``x_j = j L / N`` (``L`` the period), so the coarse points are fine points when ``n`` divides
``N``.  A 2-D field is ``w[..., ny, nx]`` with ``x`` along the last axis; the truncation is
square (``|m_x|, |m_y| < n/2``), so on a separable field ``f(x) g(y)`` the 2-D transfer is the
product of the 1-D ones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validate import is_integer

__all__ = ["MIN_POINTS", "check_grid_points", "restrict", "prolong", "restrict_2d", "prolong_2d"]

#: smallest grid of the pseudo-spectral systems: the 2/3 rule keeps ``3|m| < n``, i.e. only
#: 6 modes (mean included) at 16 points.
MIN_POINTS = 16


def check_grid_points(name: str, nx: Any) -> int:
    """``nx`` as an int, checked to be an even integer ``>= MIN_POINTS`` (the grids of the
    pseudo-spectral solver and of :func:`restrict`); a ``ValueError`` that says why otherwise."""
    if not is_integer(nx) or nx < MIN_POINTS or nx % 2:
        raise ValueError(
            f"{name} must be an even integer >= {MIN_POINTS}, got {nx!r}: the pseudo-spectral solver's 2/3-rule "
            f"dealiasing keeps only the modes |m| < nx/3 (6 at nx={MIN_POINTS}) and the real-FFT layout needs "
            "an even grid; use e.g. 64, 128, 256 or 1024"
        )
    return int(nx)


# --------------------------------------------------------------------------- 1-D


def restrict(u: Tensor, nx: int) -> Tensor:
    """Spectrally filter a periodic field ``[..., N]`` and sample it on ``nx`` points, ``[..., nx]``.

    Keeps the Fourier modes ``|m| < nx / 2`` (drops the coarse Nyquist mode, which a real
    field on ``nx`` points cannot carry unambiguously) and evaluates the truncated series at
    ``x_j = j L / nx``.  ``nx`` must divide ``N`` (the coarse points are fine points) and be
    an even integer ``>= 16``; ``nx == N`` only removes the Nyquist mode.  Exact (up to
    rounding) on fields whose modes satisfy ``|m| < nx / 2``; the mean is kept.
    """
    n = u.shape[-1]
    check_grid_points("nx", nx)
    if nx > n or n % nx:
        raise ValueError(f"restrict: the coarse grid ({nx} points) must divide the fine grid ({n} points)")
    v = torch.fft.rfft(u)[..., : nx // 2]
    return torch.fft.irfft(v, n=nx) * (nx / n)


def prolong(u: Tensor, nx: int) -> Tensor:
    """Spectral interpolation of a periodic field ``[..., N]`` onto ``nx >= N`` points, ``[..., nx]``.

    The field's real-FFT coefficients are zero-padded to ``nx // 2 + 1`` modes and
    transformed back, i.e. its Fourier series is evaluated at ``x_j = j L / nx``; the values
    at the old points (every ``nx / N``-th new point when ``N`` divides ``nx``) are kept and
    so is the mean.  The coefficient of the old grid's Nyquist mode ``N/2`` is carried over
    unchanged as an ordinary mode of the new grid (fields from :func:`restrict` have none, up
    to rounding; :func:`restrict` back to ``N`` points removes it again).  ``nx == N`` returns
    ``u`` itself.
    """
    n = u.shape[-1]
    if not is_integer(nx) or nx < n:
        raise ValueError(f"prolong: nx must be an integer >= the field's {n} points, got {nx!r}")
    if nx == n:
        return u
    return torch.fft.irfft(torch.fft.rfft(u), n=nx) * (nx / n)


# --------------------------------------------------------------------------- 2-D (square)


def _check_square(w: Tensor, n: Any, what: str, bigger: bool) -> int:
    big = w.shape[-1]
    ok = (w.ndim >= 2 and w.shape[-2] == big and is_integer(n) and n % 2 == 0 and big % 2 == 0
          and (n >= big if bigger else n <= big))
    if not ok:
        side = ">=" if bigger else "<="
        raise ValueError(f"{what}: need an even square field [..., N, N] and an even n {side} N, "
                         f"got shape {tuple(w.shape)} and n={n}")
    return big


def restrict_2d(w: Tensor, n: int) -> Tensor:
    """Restrict a periodic field ``[..., N, N]`` to ``[..., n, n]`` by spectral cut-off.

    Keeps the Fourier modes ``|k_x|, |k_y| < n / 2`` (the coarse grid's Nyquist modes are
    dropped, they cannot be represented symmetrically) and samples the truncated series on
    the coarse grid.  ``N`` and ``n <= N`` even; for ``n == N`` the field is returned
    unchanged (unlike :func:`restrict`, which drops the Nyquist mode then too).  For
    ``n < N`` it is :func:`restrict` along both axes; exact on fields the coarse grid
    resolves; the mean is kept.
    """
    big = _check_square(w, n, "restrict_2d", bigger=False)
    if n == big:
        return w
    w_hat = torch.fft.rfft2(w)
    h = n // 2
    top, bottom = w_hat[..., :h, :h], w_hat[..., big - h + 1:, :h]
    zero_row = torch.zeros_like(w_hat[..., :1, :h])
    coarse = torch.cat([top, zero_row, bottom], dim=-2)
    coarse = torch.cat([coarse, torch.zeros_like(coarse[..., :1])], dim=-1)
    return torch.fft.irfft2(coarse, s=(n, n)) * (n / big) ** 2


def prolong_2d(w: Tensor, n: int) -> Tensor:
    """Zero-pad the Fourier series of a periodic field ``[..., N, N]`` to ``[..., n, n]`` (``n >= N``).

    The modes ``|k_x|, |k_y| < N / 2`` are copied, the old grid's Nyquist row and column are
    dropped (so ``restrict_2d(prolong_2d(w, n), N) == w`` for a field without them, e.g. any
    output of :func:`restrict_2d`); the field is then evaluated on the fine grid and its mean
    kept.  ``N`` and ``n`` even; ``n == N`` returns ``w`` itself.
    """
    big = _check_square(w, n, "prolong_2d", bigger=True)
    if n == big:
        return w
    w_hat = torch.fft.rfft2(w)
    out = torch.zeros(*w.shape[:-2], n, n // 2 + 1, dtype=w_hat.dtype, device=w_hat.device)
    h = big // 2
    out[..., :h, :h] = w_hat[..., :h, :h]
    out[..., n - h + 1:, :h] = w_hat[..., big - h + 1:, :h]
    return torch.fft.irfft2(out, s=(n, n)) * (n / big) ** 2
