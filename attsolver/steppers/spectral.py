"""Pseudo-spectral steppers for periodic semilinear PDEs ``u_t = L u + N(u)`` in 1-D and 2-D.

Both steppers work on the Fourier coefficients ``v = rfftn(u)`` (``rfft`` of a 1-D field
``[..., nx]``, ``rfft2`` of a 2-D field ``[..., ny, nx]``; one code path, chosen by the
number of spatial dimensions of the system's grid) of a system whose linear part is
diagonal, ``(L u)_hat = lambda_m v_m``, and integrate the stiff linear part exactly:

* :class:`ETDRK4` — the fourth-order exponential time-differencing Runge–Kutta scheme of
  Cox & Matthews (2002), with the coefficients (phi-functions of ``z = h lambda``)
  evaluated by the contour-integral method of Kassam & Trefethen (2005): the direct
  formulas such as ``(-4 - z + e^z (4 - 3z + z^2)) / z^3`` lose all accuracy to
  cancellation as ``z -> 0``, while the mean of the same expression over ``M`` points on a
  circle of radius 1 around ``z`` equals its value at ``z`` (Cauchy's integral formula,
  evaluated by the trapezoid rule, which converges geometrically) and never comes near 0.
* :class:`IFRK4` — integrating-factor RK4: classical RK4 applied to
  ``w(t) = exp(-(t - t_n) L) v(t)``, which satisfies ``w' = exp(-(t - t_n) L) N(exp((t - t_n) L) w)``.

What the steppers need from a system is the small protocol :class:`SpectralSystem`: the
grid shape, the Fourier symbol of ``L`` on the ``rfftn`` modes and the dealiased nonlinear
term in Fourier space.  The public base class users subclass for a 1-D PDE is
:class:`attsolver.SemilinearPDE` (``attsolver.systems.pde``); the 2-D vorticity
Navier–Stokes system (``attsolver.systems.navier_stokes``) implements the protocol
directly.  Steppers never import systems.

The nonlinear term is the system's dealiased (2/3 rule) ``N_hat``.  The coefficients of a
step size are computed once, in complex128 on the CPU, cast to the state's dtype and
device, and cached per step size, so a step is four ``N_hat`` evaluations (two FFTs each)
plus a handful of fused elementwise kernels.  For a system that declares its nonlinear term
to be ``g * rfft(irfft(mask * v)^2)`` (Burgers, Kuramoto–Sivashinsky: see
``SemilinearPDE.quadratic_nonlinearity``) and a float64 field on the CPU that carries no
autograd graph, the steppers fold ``g`` and ``mask`` into their coefficients and run the
step on NumPy arrays with NumPy's FFT (torch's CPU FFT costs ~3x more per call on one short
field); the result equals the torch path's to round-off, and any state that needs gradients
runs the torch path.

References:
    S. M. Cox and P. C. Matthews, "Exponential time differencing for stiff systems",
    J. Comput. Phys. 176 (2002) 430–455.
    A.-K. Kassam and L. N. Trefethen, "Fourth-order time-stepping for stiff PDEs",
    SIAM J. Sci. Comput. 26 (2005) 1214–1233.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from .base import Stepper
from .registry import FIXED_OPTIONS, MethodSpec, register_method

__all__ = ["ETDRK4", "IFRK4", "ETDRK4Coefficients", "etdrk4_coefficients", "SpectralSystem",
           "is_spectral_system", "NonlinearOp"]

#: ``(t, u_hat) -> N_hat``: the dealiased nonlinear term on the ``rfftn`` modes.
NonlinearOp = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class SpectralSystem(Protocol):
    """What the spectral steppers need from a periodic semilinear PDE ``u_t = L u + N(u)``.

    Attributes / methods:
        grid_shape: the spatial grid, ``(nx,)`` in 1-D or ``(ny, nx)`` in 2-D; a field is
            ``[..., *grid_shape]`` and its Fourier coefficients ``rfftn`` over those dims,
            ``[..., *grid_shape[:-1], grid_shape[-1] // 2 + 1]``.
        linear_symbol(dtype, device): ``lambda`` with ``(L u)_hat = lambda * u_hat``, real
            or complex, of the Fourier-coefficient shape (without batch dims).
        nonlinear_op(dtype, device): a function ``(t, u_hat) -> N_hat`` (dealiased), for
            coefficients of the complex dtype matching ``dtype``.

    :class:`attsolver.SemilinearPDE` (1-D) and :class:`attsolver.systems.NavierStokes2D`
    implement it; so can any user class with these three members.
    """

    @property
    def grid_shape(self) -> tuple[int, ...]: ...

    def linear_symbol(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor: ...

    def nonlinear_op(self, dtype: torch.dtype = torch.float64, device=None) -> NonlinearOp: ...


def is_spectral_system(obj: object) -> bool:
    """Whether ``obj`` is a :class:`SpectralSystem` (it has ``grid_shape``, ``linear_symbol``
    and ``nonlinear_op``): the spectral methods can step it, and its ``f`` runs FFTs on
    complex coefficients.  The one test of this kind in the package.

    The test ``isinstance(obj, SpectralSystem)`` makes (Python 3.11's runtime protocols: each
    member present, a method member not ``None``), without its per-call walk over the
    protocol's class dictionaries (~8 µs, a tenth of a short solve's set-up)."""
    return all(hasattr(obj, name) and (not method or getattr(obj, name) is not None)
               for name, method in _PROTOCOL_MEMBERS)


#: the members of :class:`SpectralSystem` and whether each is a method
_PROTOCOL_MEMBERS = (("grid_shape", False), ("linear_symbol", True), ("nonlinear_op", True))


#: points of the Kassam–Trefethen contour (on the upper half circle when L is real).
CONTOUR_POINTS = 16
#: step sizes whose coefficients a stepper keeps (oldest dropped first).
_MAX_CACHED_STEPS = 64
#: step sizes equal to this relative precision share coefficients (see ``_SpectralStepper``).
_STEP_KEY_DIGITS = 12


class ETDRK4Coefficients(NamedTuple):
    """The ETDRK4 coefficients for step ``h`` and symbol ``lambda`` (each ``[nx//2+1]``).

    With ``z = h lambda`` and ``phi``-type functions evaluated at ``z``:
    ``E = e^z``, ``E2 = e^{z/2}``, ``Q = h (e^{z/2} - 1) / z``,
    ``f1 = h (-4 - z + e^z (4 - 3z + z^2)) / z^3``, ``f2 = h (2 + z + e^z (z - 2)) / z^3``,
    ``f3 = h (-4 - 3z - z^2 + e^z (4 - z)) / z^3`` (Cox & Matthews 2002, eq. (26);
    Kassam & Trefethen 2005, eq. (2.5)).  At ``z = 0``: ``E = E2 = 1``, ``Q = h/2`` and
    ``f1 = f2 = f3 = h/6``, so for ``L = 0`` the scheme is classical RK4.
    """

    E: Tensor
    E2: Tensor
    Q: Tensor
    f1: Tensor
    f2: Tensor
    f3: Tensor


def etdrk4_coefficients(h: float, symbol: Tensor, *,
                        contour_points: int = CONTOUR_POINTS) -> ETDRK4Coefficients:
    """ETDRK4 coefficients by the contour-integral method of Kassam & Trefethen (2005).

    Each coefficient ``g(z)`` (an entire function of ``z = h lambda``) is replaced by its
    mean over points ``z + e^{i theta_j}`` on the circle of radius 1 around ``z``.  For a
    real symbol the values at conjugate points are conjugate, so ``contour_points`` points
    on the upper half circle, ``theta_j = pi (j - 1/2) / M``, and the real part of their
    mean give the full-circle mean of ``2M`` points; for a complex symbol all ``2M``
    points of the full circle are used.  Computed in complex128 whatever ``symbol``'s dtype.

    Args:
        h: step size (negative for backward steps).
        symbol: the Fourier symbol of ``L``, shape ``[m]``, real or complex.
        contour_points: ``M``, points on the half circle (Kassam & Trefethen use 16).

    Returns:
        :class:`ETDRK4Coefficients`, float64 for a real symbol and complex128 otherwise,
        on ``symbol``'s device.
    """
    real = not symbol.is_complex()
    z = (h * symbol.to(torch.complex128))[..., None]
    n_points = contour_points if real else 2 * contour_points
    j = torch.arange(1, n_points + 1, dtype=torch.float64, device=symbol.device)
    r = z + torch.exp(1j * math.pi * (j - 0.5) / contour_points)
    er = torch.exp(r)
    r2 = r * r
    r3 = r2 * r

    def mean(g: Tensor) -> Tensor:
        m = g.mean(-1)
        return m.real if real else m

    z = z[..., 0]
    E = torch.exp(z)
    E2 = torch.exp(z / 2)
    Q = h * mean((torch.exp(r / 2) - 1.0) / r)
    f1 = h * mean((-4.0 - r + er * (4.0 - 3.0 * r + r2)) / r3)
    f2 = h * mean((2.0 + r + er * (r - 2.0)) / r3)
    f3 = h * mean((-4.0 - 3.0 * r - r2 + er * (4.0 - r)) / r3)
    if real:
        E, E2 = E.real, E2.real
    return ETDRK4Coefficients(E, E2, Q, f1, f2, f3)


#: coefficients shared by the steppers of a process (see :func:`_shared_coefficients`)
_SHARED: OrderedDict[tuple, tuple] = OrderedDict()
#: entries of :data:`_SHARED` kept (oldest dropped first)
_MAX_SHARED = 16


def _shared_coefficients(key: tuple, symbol: Tensor, compute: Callable[[], tuple]) -> tuple:
    """``compute()``, computed once per process for ``key`` and kept for later steppers.

    ``solve`` builds a new stepper per call, and the coefficients of one step size (the
    contour integrals, ~1.5 ms at 1024 modes, and for ``solve``'s step-doubling check those
    of half the step too) cost as much as tens of steps: a series of solves of one system —
    a benchmark, an ensemble, a training set — computes them once.  ``key`` names the
    system's symbol by identity (the systems cache it per dtype and device); the entry holds
    the symbol itself, so that identity cannot be reused while the entry lives.  The
    coefficients are shared: nothing may modify them in place.
    """
    hit = _SHARED.get(key)
    if hit is not None and hit[0] is symbol:
        _SHARED.move_to_end(key)
        return hit[1]
    value = compute()
    _SHARED[key] = (symbol, value)
    if len(_SHARED) > _MAX_SHARED:
        _SHARED.popitem(last=False)
    return value


class _SpectralStepper(Stepper):
    """Shared plumbing: Fourier state, per-step-size coefficient cache.

    Coefficients are cached by the step size rounded to 12 significant digits: steps
    from ``torch.linspace`` differ by rounding only, and recomputing for each would cost more
    than the steps.  Reusing the coefficients of ``h'`` for ``h`` with ``|h'-h| < 1e-11 |h|``
    advances the solution by ``h'`` instead of ``h``, a time shift of less than ``1e-11``
    of the integration time — far below the method's own error.  At most 64 step sizes
    are kept (oldest dropped first), so a long non-uniform grid cannot grow the cache.
    """

    order = 4
    nodes = (0.0, 0.5, 0.5, 1.0)
    #: ``options={"compile": True}`` runs these eagerly, with a warning: inductor (torch 2.13,
    #: CPU) generates no code for complex arithmetic, so the compiled step was 2-3x slower.
    compile_helps = False
    #: set-up (the system's parts, the FFT kernels, scratch arrays) costs a few steps; kept per system
    reusable = True

    def __init__(self, system: SpectralSystem, y0: Tensor, *, fast_path: bool = True):
        super().__init__(system, fast_path=fast_path)
        self.grid_shape = tuple(int(n) for n in system.grid_shape)
        self.nx = self.grid_shape[-1]
        # the spatial dims are the trailing len(grid_shape) ones: rfft in 1-D, rfft2 in 2-D
        self._dims = tuple(range(-len(self.grid_shape), 0))
        # Coefficients are stored complex even where they are real: complex*complex kernels
        # are faster than the type-promoting complex*real ones on small tensors.
        self._dtype = torch.promote_types(y0.dtype, torch.complex64)
        self._device = y0.device
        self._symbol = system.linear_symbol(torch.float64, "cpu")
        self._nonlinear = system.nonlinear_op(y0.dtype, y0.device)
        self._cache: dict[float, tuple[Tensor | float, ...]] = {}
        self._last_h: float | None = None
        self._last: tuple[Tensor | float, ...] = ()
        # The fast path (see ``_quadratic_parts``): float64 fields on the CPU of a 1-D system
        # whose nonlinear term is ``g * rfft(irfft(mask * v)^2)``, run on NumPy arrays.
        self._quadratic = _quadratic_parts(system, y0)
        #: whether steps may take the NumPy fast path where it applies (``solve`` builds the
        #: stepper of a corrected solve without it, so that every step runs one arithmetic)
        self.fast_path = fast_path and self._quadratic is not None
        #: ``False`` when ``N`` ignores ``t`` (the declared autonomous advection term), so
        #: ``solve`` may pass the same stage times to every step instead of making new ones.
        self.needs_times = self._quadratic is None
        self._fast_cache: dict[float, tuple[np.ndarray, ...]] = {}
        self._scratch: tuple[np.ndarray, ...] | None = None
        self._ffts = _real_ffts(self.nx) if self._quadratic is not None else None

    def to_state(self, y: Tensor) -> Tensor:
        """``rfftn(y)`` over the spatial dims: ``[..., nx]`` -> ``[..., nx//2+1]`` complex
        (2-D: ``[..., ny, nx]`` -> ``[..., ny, nx//2+1]``)."""
        return torch.fft.rfftn(y, dim=self._dims)

    def from_state(self, state: Tensor) -> Tensor:
        """``irfftn(state, s=grid_shape)``: Fourier coefficients -> grid values."""
        if self.fast_path and not state.requires_grad and state.dtype == torch.complex128 \
                and state.device.type == "cpu":
            return torch.from_numpy(np.fft.irfft(state.numpy(), self.nx))
        return torch.fft.irfftn(state, s=self.grid_shape, dim=self._dims)

    def _coefficients(self, h: float) -> tuple[Tensor | float, ...]:
        if h == self._last_h:
            return self._last
        key = float(f"{h:.{_STEP_KEY_DIGITS - 1}e}")
        c = self._cache.get(key)
        if c is None:
            c = _shared_coefficients(("coefficients", type(self), id(self._symbol), key, self._dtype, self._device),
                                     self._symbol, lambda: tuple(
                                         x.to(dtype=self._dtype, device=self._device) if isinstance(x, Tensor)
                                         else x for x in self._compute(h)))
            if len(self._cache) >= _MAX_CACHED_STEPS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = c
        self._last_h, self._last = h, c
        return c

    def _compute(self, h: float) -> tuple[Tensor | float, ...]:
        raise NotImplementedError

    def _fast_coefficients(self, h: float) -> tuple[np.ndarray, ...]:
        """The NumPy coefficients with ``mask`` and ``g`` folded in, cached like
        :meth:`_coefficients`."""
        key = float(f"{h:.{_STEP_KEY_DIGITS - 1}e}")
        c = self._fast_cache.get(key)
        if c is None:
            mask, g = self._quadratic
            c = _shared_coefficients(("folded", type(self), id(self._symbol), key, mask.tobytes(), g.tobytes()),
                                     self._symbol, lambda: self._fold(h, mask, g))
            if len(self._fast_cache) >= _MAX_CACHED_STEPS:
                self._fast_cache.pop(next(iter(self._fast_cache)))
            self._fast_cache[key] = c
        return c

    def _fold(self, h: float, mask: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    #: complex scratch arrays of the state's shape that :meth:`_np_step` uses
    _N_SCRATCH = 0

    def _np_step(self, v: np.ndarray, coefficients: tuple[np.ndarray, ...], out: np.ndarray) -> np.ndarray:
        """One step of the fast path on NumPy arrays: ``v`` -> ``out`` (``v`` is not changed)."""
        raise NotImplementedError

    def _scratch_arrays(self, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        """The fast path's scratch arrays (reused from step to step): ``_N_SCRATCH`` complex
        ones of the state's shape and one real field."""
        if self._scratch is None or self._scratch[0].shape != shape:
            self._scratch = tuple(np.empty(shape, np.complex128) for _ in range(self._N_SCRATCH)) + (
                np.empty((*shape[:-1], self.nx)),)
        return self._scratch

    def step(self, ts: Sequence[Tensor], state: Tensor, h: float) -> Tensor:
        if self._use_fast(state):
            return self._fast_step(state, h)
        return self._torch_step(ts, state, h)

    def _torch_step(self, ts: Sequence[Tensor], state: Tensor, h: float) -> Tensor:
        """One step in torch (autograd, any dtype and device)."""
        raise NotImplementedError

    def _fast_step(self, state: Tensor, h: float) -> Tensor:
        v = state.numpy()
        return torch.from_numpy(self._np_step(v, self._fast_coefficients(h), np.empty_like(v)))

    def fast_loop(self, y0: Tensor, n_sub: np.ndarray, h_int: np.ndarray) -> Tensor | None:
        """The whole uncorrected solve on the fast path, or ``None`` where it does not apply.

        ``solve``'s eager loop calls this first: the steps run on NumPy arrays (two state
        arrays swapped from step to step, the coefficients looked up once per output
        interval) and each output is transformed back straight into its row of the
        preallocated result, so no tensor is made per step.  The arithmetic is that of
        :meth:`step` on the fast path, operation for operation, so the result is the same.
        """
        if not (self.fast_path and not y0.requires_grad and y0.dtype == torch.float64
                and y0.device.type == "cpu"):
            return None
        result = torch.empty((len(n_sub) + 1, *y0.shape), dtype=y0.dtype)
        res = result.numpy()
        res[0] = y0.numpy()
        v = np.ascontiguousarray(self.to_state(y0).numpy())
        w = np.empty_like(v)
        step, (_, irfft, scale) = self._np_step, self._ffts
        last_h = None
        for i, (n, h) in enumerate(zip(n_sub.tolist(), h_int.tolist()), 1):
            if h != last_h:  # a uniform grid looks its coefficients up once
                coefficients, last_h = self._fast_coefficients(h), h
            for _ in range(n):
                v, w = step(v, coefficients, w), v
            irfft(v, scale, out=res[i])
        return result

    def _use_fast(self, state: Tensor) -> bool:
        """The NumPy path: no autograd graph to build (``state`` carries none), the
        coefficient dtype and device the fast path was set up for."""
        return (self.fast_path and not state.requires_grad
                and state.dtype == torch.complex128 and state.device.type == "cpu")


def _quadratic_parts(system, y0: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mask, g)`` as complex128 NumPy arrays if the fast path applies, else ``None``.

    A system opts in with ``quadratic_nonlinearity(dtype, device) -> (mask, g)``, declaring
    ``N_hat(v) = g * rfft(irfft(mask * v, n=nx) ** 2)`` exactly (``g`` zero on the modes the
    dealiasing removes), as :class:`attsolver.SemilinearPDE`'s advection term does.  Then
    the steppers fold ``g`` and ``mask`` into their coefficients and run the step on NumPy
    arrays: torch's CPU FFT (MKL) pays a per-call set-up of 5-20 µs on one short field, about
    3x NumPy's pocketfft at ``nx = 1024``, and a step is eight FFTs plus a dozen tiny
    elementwise operations.  Only float64 1-D fields on the CPU take it; anything else,
    and any state that carries an autograd graph, runs the torch path.
    """
    parts = getattr(system, "quadratic_nonlinearity", None)
    if parts is None or len(system.grid_shape) != 1 or y0.dtype != torch.float64 \
            or y0.device.type != "cpu":
        return None
    parts = parts(torch.float64, "cpu")
    if parts is None:
        return None
    mask, g = parts
    return (mask.detach().to(torch.complex128).numpy().copy(),
            g.detach().to(torch.complex128).numpy().copy())


def _pocketfft_gufuncs():
    """NumPy's own pocketfft kernels (the gufuncs behind ``np.fft.rfft``/``irfft``), or
    ``None`` where this NumPy does not have them.

    ``np.fft.rfft`` spends about 3 of its 4.5 µs on a 256-point field in its Python wrapper
    (argument normalisation, dtype promotion, the output allocation); the step calls an FFT
    eight times, so the fast path calls the kernels directly, writing into its own buffers.
    They are NumPy's private module, so they are used only after checking, once, that they
    return exactly what ``np.fft.rfft``/``irfft`` return; otherwise the public functions run.
    """
    try:
        # NumPy's private module, absent from some versions: looked up (and checked) here, once
        from numpy.fft import _pocketfft_umath as pfu

        fwd_even, fwd_odd, inv = pfu.rfft_n_even, pfu.rfft_n_odd, pfu.irfft
        x = np.random.default_rng(0).standard_normal((2, 12))
        for n, fwd in ((12, fwd_even), (11, fwd_odd)):
            v = np.empty((2, n // 2 + 1), np.complex128)
            fwd(x[:, :n], 1.0, out=v)
            u = np.empty((2, n))
            inv(v, 1.0 / n, out=u)
            if not (np.array_equal(v, np.fft.rfft(x[:, :n])) and np.array_equal(u, np.fft.irfft(v, n))):
                return None
        return fwd_even, fwd_odd, inv
    except Exception:  # noqa: BLE001 - any difference in NumPy's internals: use the public API
        return None


#: the checked kernels, looked up on the first spectral solve (not at import): see _gufuncs
_GUFUNCS: Any = "unchecked"


def _gufuncs():
    global _GUFUNCS
    if isinstance(_GUFUNCS, str):
        _GUFUNCS = _pocketfft_gufuncs()
    return _GUFUNCS


def _real_ffts(nx: int) -> tuple[Callable, Callable, float]:
    """``(rfft, irfft, scale)`` for fields of ``nx`` points, called as ``rfft(x, 1.0, out=v)``
    and ``irfft(v, scale, out=x)`` over the last axis: bit for bit ``np.fft.rfft(x)`` and
    ``np.fft.irfft(v, nx)``, written into ``out`` (the kernels themselves, called without a
    Python wrapper of ours either, where NumPy has them)."""
    kernels = _gufuncs()
    if kernels is None:
        def rfft(x, scale, out):
            out[...] = np.fft.rfft(x)
            return out

        def irfft(v, scale, out):
            out[...] = np.fft.irfft(v, nx)
            return out

        return rfft, irfft, 1.0 / nx
    # np.fft.irfft's normalisation ("backward": 1/n)
    return (kernels[0] if nx % 2 == 0 else kernels[1]), kernels[2], 1.0 / nx


def _np_rk4_sum(out: np.ndarray, E: np.ndarray, v: np.ndarray, w1: np.ndarray, P1: np.ndarray, w23: np.ndarray,
                P2: np.ndarray, P3: np.ndarray, w4: np.ndarray, P4: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """The fast path's last stage of both RK4-like steppers, in place:
    ``out = E v + w1 P1 + w23 (P2 + P3) + w4 P4`` (``P2`` is overwritten, ``tmp`` is scratch)."""
    np.multiply(E, v, out=out)
    out += np.multiply(w1, P1, out=tmp)
    P2 += P3
    out += np.multiply(w23, P2, out=tmp)
    out += np.multiply(w4, P4, out=tmp)
    return out


class ETDRK4(_SpectralStepper):
    """Exponential time differencing RK4 (Cox & Matthews 2002; coefficients by the
    contour integrals of Kassam & Trefethen 2005).

    With ``v = u_hat`` at ``t_n`` and ``N`` the dealiased nonlinear term:

        a = E2 v + Q N(v),             b = E2 v + Q N(a),
        c = E2 a + Q (2 N(b) - N(v)),
        v_{n+1} = E v + f1 N(v) + 2 f2 (N(a) + N(b)) + f3 N(c)

    (stage times ``t_n, t_n + h/2, t_n + h/2, t_n + h``).  Exact for ``N = 0``; for
    ``L = 0`` it reduces to classical RK4.

    Args:
        system: the PDE (a :class:`SpectralSystem`, e.g. an :class:`attsolver.SemilinearPDE`).
        y0: an initial field ``[..., *grid_shape]`` fixing the dtype and device of the
            coefficients.
        fast_path: allow the NumPy fast path where it applies (see :attr:`fast_path`).
    """

    def _compute(self, h):
        E, E2, Q, f1, f2, f3 = etdrk4_coefficients(h, self._symbol)
        return E, E2, Q, 2.0 * Q, f1, 2.0 * f2, f3

    def _fold(self, h: float, mask: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
        # N(x) = g P(mask x) with P(x) = rfft(irfft(x)^2): g folded into every
        # coefficient that multiplies an N, mask into E2 (the stages only enter N).
        E, E2, Q, _, f1, f2x2, f3 = (x.numpy() for x in self._coefficients(h))
        return E, E2 * mask, E2, Q * g, 2.0 * Q * g, f1 * g, f2x2 * g, f3 * g, mask

    _N_SCRATCH = 10

    def _np_step(self, v, coefficients, out):
        E, E2m, E2, Qg, Qg2, F1, F2, F3, mask = coefficients
        rfft, irfft, scale = self._ffts
        mul, add = np.multiply, np.add
        E2v, a, b, c, tmp, QgPv, Pv, Pa, Pb, Pc, u = self._scratch_arrays(v.shape)
        # the stages are kept masked (a, b, c only ever enter N, which masks them first)
        irfft(mul(v, mask, out=tmp), scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=Pv)
        mul(E2m, v, out=E2v)
        add(E2v, mul(Qg, Pv, out=QgPv), out=a)  # a = E2 v + Q g Pv
        irfft(a, scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=Pa)
        add(E2v, mul(Qg, Pa, out=b), out=b)
        irfft(b, scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=Pb)
        mul(E2, a, out=c)  # c = E2 a + 2 Q g Pb - Q g Pv
        c += mul(Qg2, Pb, out=tmp)
        c -= QgPv
        irfft(c, scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=Pc)
        # E v + f1 g Pv + 2 f2 g (Pa + Pb) + f3 g Pc
        return _np_rk4_sum(out, E, v, F1, Pv, F2, Pa, Pb, F3, Pc, tmp)

    def _torch_step(self, ts: Sequence[Tensor], state: Tensor, h: float) -> Tensor:
        E, E2, Q, Q2, f1, f2x2, f3 = self._coefficients(h)
        N = self._nonlinear
        Nv = N(ts[0], state)
        E2v = E2 * state
        a = torch.addcmul(E2v, Q, Nv)
        Na = N(ts[1], a)
        b = torch.addcmul(E2v, Q, Na)
        Nb = N(ts[2], b)
        # c = E2 a + Q (2 Nb - Nv) = E2 a + 2Q (Nb - Nv/2)
        c = (E2 * a).addcmul_(Q2, torch.add(Nb, Nv, alpha=-0.5))
        Nc = N(ts[3], c)
        out = (E * state).addcmul_(f1, Nv).addcmul_(f2x2, Na + Nb)
        return out.addcmul_(f3, Nc)


class IFRK4(_SpectralStepper):
    """Integrating-factor RK4: classical RK4 on ``w = exp(-(t - t_n) L) u_hat``.

    Written back in terms of ``v = u_hat(t_n)`` (no growing factor ``exp(-h L)`` is ever
    formed, so strongly damped modes cannot overflow):

        N1 = N(v),                     N2 = N(E2 (v + h/2 N1)),
        N3 = N(E2 v + h/2 N2),         N4 = N(E v + h E2 N3),
        v_{n+1} = E v + h/6 (E N1 + 2 E2 (N2 + N3) + N4)

    with ``E = exp(h L)``, ``E2 = exp(h L / 2)``.  Simpler than ETDRK4 but with larger
    error constants for stiff problems (the transformed equation oscillates/decays at the
    rates of ``L``).

    Args: as :class:`ETDRK4`.
    """

    def _compute(self, h):
        z = h * self._symbol.to(torch.complex128)
        E, E2 = torch.exp(z), torch.exp(z / 2)
        if not self._symbol.is_complex():
            E, E2 = E.real, E2.real
        return E, E2, (h / 2) * E2, h * E2, (h / 6) * E, (h / 3) * E2, h / 2, h / 6

    def _fold(self, h: float, mask: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
        E, E2, hE2_2, hE2, hE_6, hE2_3, _, _ = (
            x.numpy() if isinstance(x, Tensor) else x for x in self._coefficients(h))
        return (E, E * mask, E2 * mask, hE2_2 * g, (h / 2) * g, hE2 * g, hE_6 * g, hE2_3 * g,
                (h / 6) * g, mask)

    _N_SCRATCH = 7

    def _np_step(self, v, coefficients, out):
        E, Em, E2m, hE2g_2, hg_2, hE2g, hEg_6, hE2g_3, hg_6, mask = coefficients
        rfft, irfft, scale = self._ffts
        mul, add = np.multiply, np.add
        E2v, s, tmp, P1, P2, P3, P4, u = self._scratch_arrays(v.shape)
        irfft(mul(v, mask, out=tmp), scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=P1)
        mul(E2m, v, out=E2v)
        irfft(add(E2v, mul(hE2g_2, P1, out=s), out=s), scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=P2)
        irfft(add(E2v, mul(hg_2, P2, out=s), out=s), scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=P3)
        irfft(add(mul(Em, v, out=tmp), mul(hE2g, P3, out=s), out=s), scale, out=u)
        rfft(mul(u, u, out=u), 1.0, out=P4)
        # E v + h/6 E g P1 + h/3 E2 g (P2 + P3) + h/6 g P4
        return _np_rk4_sum(out, E, v, hEg_6, P1, hE2g_3, P2, P3, hg_6, P4, tmp)

    def _torch_step(self, ts: Sequence[Tensor], state: Tensor, h: float) -> Tensor:
        E, E2, hE2_2, hE2, hE_6, hE2_3, h_2, h_6 = self._coefficients(h)
        N = self._nonlinear
        N1 = N(ts[0], state)
        E2v = E2 * state
        N2 = N(ts[1], torch.addcmul(E2v, hE2_2, N1))
        N3 = N(ts[2], E2v.add_(N2, alpha=h_2))
        Ev = E * state
        N4 = N(ts[3], torch.addcmul(Ev, hE2, N3))
        out = Ev.addcmul_(hE_6, N1).addcmul_(hE2_3, N2 + N3)
        return out.add_(N4, alpha=h_6)


# --------------------------------------------------------------------------- registry


_NEEDS = ("a SemilinearPDE system (e.g. attsolver.systems.Burgers, or the 2-D "
          "attsolver.systems.NavierStokes2D; any SpectralSystem)")


def _builder(cls: type[_SpectralStepper], method: str):
    def build(f, y0: Tensor, **options) -> _SpectralStepper:
        if not is_spectral_system(f):
            raise TypeError(
                f"method {method!r} needs f to be {_NEEDS} that exposes its Fourier-diagonal "
                f"linear part, got {type(f).__name__}; for a plain f(t, y) use an explicit "
                "method such as 'rk4', or build the PDE from attsolver.systems "
                "(Burgers, KuramotoSivashinsky, NavierStokes2D)"
            )
        if y0.is_complex():
            raise TypeError(
                f"method {method!r}: y0 must be a real field [..., nx] (grid values), got "
                f"dtype {y0.dtype}; pass the physical-space values"
            )
        shape = tuple(f.grid_shape)
        d = len(shape)
        if y0.ndim < d or tuple(y0.shape[-d:]) != shape:
            what = f"dimension must equal the system's nx={shape[0]}" if d == 1 else \
                f"{d} dimensions must equal the system's grid shape {shape}"
            raise ValueError(
                f"method {method!r}: y0's last {what} (grid points), got y0 of shape "
                f"{tuple(y0.shape)}; sample it with system.sample_initial(n) or build the "
                "system with a matching grid"
            )
        return cls(f, y0, **options)

    return build


register_method(MethodSpec(
    name="etdrk4", kind="fixed", order=4,
    description="exponential time differencing RK4 (Cox–Matthews; Kassam–Trefethen contour "
                "coefficients) for periodic semilinear PDEs",
    build=_builder(ETDRK4, "etdrk4"), options=FIXED_OPTIONS, needs=_NEEDS,
    applies_to="semilinear", ladders=("steps",), default_for=("semilinear",),
))
register_method(MethodSpec(
    name="ifrk4", kind="fixed", order=4,
    description="integrating-factor RK4 for periodic semilinear PDEs",
    build=_builder(IFRK4, "ifrk4"), options=FIXED_OPTIONS, needs=_NEEDS,
    applies_to="semilinear", ladders=("steps",),
))
