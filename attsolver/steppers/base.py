"""The fixed-step stepper interface that :func:`attsolver.solve` drives.

A stepper advances an internal *state* by one step of size ``h``.  For explicit
Runge–Kutta methods the state is ``y`` itself; a spectral stepper keeps the Fourier
coefficients between output times and converts only when a value is returned, so the
uncorrected loop pays no extra FFTs.  When a learned corrector is attached, ``solve``
takes the classical step in physical space, ``y* = Phi_h(y_n)``, and returns
``y* + C(t_n, y_n, y* - y_n, h)``; a zero correction therefore reproduces the classical
solution bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["Stepper", "ExplicitRK"]


class Stepper:
    """Base class for fixed-step integrators.

    Subclasses set :attr:`order` and :attr:`nodes` and implement :meth:`step`.  The class
    attributes and methods below declare every capability the loops of
    :mod:`attsolver.integrate` use, each with the default a plain stepper gets; a subclass
    overrides what it can do, at class level or in its constructor.  A stepper is
    configured when it is built (constructor arguments), never changed afterwards.

    Args:
        f: the right-hand side ``f(t, y)`` (or the system) the stepper advances.
        fast_path: allow :attr:`fast_path` where the stepper has one.  ``solve`` passes
            ``False`` for a corrected solve, so that every step runs the same arithmetic.
            Steppers without a fast path accept it and have none either way.

    Attributes:
        order: classical order ``p`` of the method (global error ``O(h^p)``).
        nodes: stage times as fractions of the step, ``c_i`` in ``t_n + c_i h``; ``solve``
            precomputes these times once so the step loop does no time arithmetic.
    """

    order: int
    nodes: tuple[float, ...]

    #: steps may take a faster arithmetic that equals the reference one to round-off, not
    #: bit for bit (the spectral steppers' NumPy path); ``False`` when built with
    #: ``fast_path=False``
    fast_path: bool = False
    #: :meth:`step` reads its stage times ``ts``; ``False`` (``f`` ignores ``t``) lets the
    #: uncorrected loop pass one list of times to every step instead of making new ones
    needs_times: bool = True
    #: :meth:`step` takes ``into=out`` and writes the new state into ``out`` (the eager loop
    #: passes the result's row when a step ends an output interval: each output written once)
    writes_into: bool = False
    #: gradients with respect to ``t`` flow through :meth:`step_for_compile` with a tensor
    #: ``h``; ``False``: ``solve`` refuses a ``t`` that requires grad
    time_differentiable: bool = False
    #: ``torch.compile`` makes the loop faster; ``False``: ``options={"compile": True}``
    #: runs the eager loop with a warning instead of paying for a compilation
    compile_helps: bool = True
    #: one instance may serve many solves of the same immutable system, state shape, dtype and
    #: device (its caches — coefficients per step size, scratch arrays — only grow warmer):
    #: ``solve`` then keeps it (``integrate.call_cache``) instead of building one per call
    reusable: bool = False

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor], *, fast_path: bool = True):
        self.f = f

    def to_state(self, y: Tensor) -> Tensor:
        """Physical ``y`` -> internal state (identity unless overridden)."""
        return y

    def from_state(self, state: Tensor) -> Tensor:
        """Internal state -> physical ``y`` (identity unless overridden)."""
        return state

    def step(self, ts: Sequence[Tensor], state: Tensor, h: float) -> Tensor:
        """Advance ``state`` from ``ts[0]`` by ``h``; ``ts[i] = t_n + nodes[i] * h``."""
        raise NotImplementedError

    def step_for_compile(self, ts: Sequence[Tensor], state: Tensor, h: float | Tensor) -> Tensor:
        """:meth:`step` as handed to ``torch.compile`` and, with a tensor ``h``, to the loop
        whose times carry gradients (default: :meth:`step` itself)."""
        return self.step(ts, state, h)

    def fast_loop(self, y0: Tensor, n_sub: np.ndarray, h_int: np.ndarray) -> Tensor | None:
        """The whole uncorrected solve in one call, ``[len(n_sub) + 1, *y0.shape]``, or
        ``None`` where the stepper has no such loop (the default) and the generic loop runs.

        Args:
            y0: the initial state.
            n_sub: steps per output interval (int64, each >= 1).
            h_int: the signed step in each interval (float64).
        """
        return None

    def increment(self, ts: Sequence[Tensor], y: Tensor, h: float) -> Tensor:
        """The classical increment ``h * Phi(t_n, y_n; h)`` in physical space."""
        return self.from_state(self.step(ts, self.to_state(y), h)) - y


def _nonzero(row: Sequence[float]) -> tuple[tuple[int, float], ...]:
    return tuple((j, a) for j, a in enumerate(row) if a != 0.0)


def _combination(target: str, base: str, terms: tuple[tuple[int, float], ...], fused_alpha: bool,
                 into: str | None = None) -> list[str]:
    """Lines computing ``target = base + h * sum_j w_j k_j`` with ONE rounding into ``base``.

    The ``k_j`` are first summed among themselves, scaled by the first weight
    (``k_a + (w_b / w_a) k_b + ...``; for RK4's weights the ratios 2 and 2 and 1 are exact),
    and only then added to ``base`` with ``h w_a``.  Adding each ``h w_j k_j`` to ``y``
    separately would round ``y`` once per stage: in float32 that accumulates round-off
    four times faster over long solves (torchdiffeq also sums the stages first).  The kernel
    count is the same: one ``add`` per weight.
    """
    (j0, w0), rest = terms[0], terms[1:]
    out = f", out={into}" if into else ""  # the result written into a given tensor (fused_alpha only)
    if not rest:
        if fused_alpha:
            return [f"    {target} = torch.add({base}, k{j0}, alpha=h * {w0!r}{out})"]
        return [f"    {target} = {base} + (h * {w0!r}) * k{j0}"]
    acc = f"s_{target}"
    (j1, w1), more = rest[0], rest[1:]
    if fused_alpha:
        lines = [f"    {acc} = torch.add(k{j0}, k{j1}, alpha={w1 / w0!r})"]
        lines += [f"    {acc}.add_(k{j}, alpha={w / w0!r})" for j, w in more]
        lines.append(f"    {target} = torch.add({base}, {acc}, alpha=h * {w0!r}{out})")
    else:
        expr = " + ".join([f"k{j0}"] + [f"{w / w0!r} * k{j}" for j, w in rest])
        lines = [f"    {target} = {base} + (h * {w0!r}) * ({expr})"]
    return lines


def _straight_line(tableau, *, fused_alpha: bool = True) -> Callable:
    """Generate the ``step`` of one tableau as straight-line Python.

    The generic double loop over stages and coefficients costs a few microseconds of
    interpreter time per step, which is a sizeable part of a step on small systems; the
    generated code makes exactly the tensor calls the tableau needs and nothing else.
    Coefficients are written with ``repr`` (exact round-trip of the float64 values).
    Every stage value and the new state round once into ``y`` (see :func:`_combination`).

    ``fused_alpha=False`` writes plain expressions (``y + (h * a) * (k0 + r * k1)``) instead
    of ``torch.add(..., alpha=...)``: that variant is handed to ``torch.compile`` (inductor,
    torch 2.13 CPU, miscompiled ``torch.add(y, y @ A.T, alpha=a)`` for some shapes, while the
    plain expression compiles correctly and fuses the same) and is the one used when ``h``
    is a tensor (gradients with respect to ``t``): ``alpha=`` takes only a number.
    """
    lines = ["def _stages(f, ts, y, h):"]
    for i, row in enumerate(tableau.a):
        terms = _nonzero(row)
        if terms:
            lines += _combination(f"y{i}", "y", terms, fused_alpha)
        lines.append(f"    k{i} = f(ts[{i}], {'y' + str(i) if terms else 'y'})")
    ks = ", ".join(f"k{i}" for i in range(tableau.stages))
    lines.append(f"    return ({ks},)")
    # the fused variant takes ``into``: a tensor (a row of solve's result) to write the new
    # state into, so that an output is written once, not made and then copied
    lines += ["", f"def step(f, ts, y, h{', into=None' if fused_alpha else ''}):", f"    {ks}, = _stages(f, ts, y, h)"]
    lines += _combination("out", "y", _nonzero(tableau.b), fused_alpha, "into" if fused_alpha else None)
    lines += ["    return out"]
    namespace: dict = {"torch": torch}
    exec(compile("\n".join(lines), f"<tableau {tableau.name}>", "exec"), namespace)
    namespace["step"].source = "\n".join(lines)
    return namespace["step"]


class ExplicitRK(Stepper):
    """One explicit Runge–Kutta step from a :class:`~attsolver.steppers.tableau.ButcherTableau`.

    Zero tableau entries are skipped, so classic RK4 costs four evaluations of ``f`` and
    seven fused ``add`` kernels per step, issued from generated straight-line code.

    Args:
        f: the right-hand side ``f(t, y)``.
        tableau: the method.
        fast_path: accepted like every stepper's; an explicit RK step has one arithmetic.
    """

    def __init__(self, f, tableau, *, fast_path: bool = True):
        super().__init__(f, fast_path=fast_path)
        self.tableau = tableau
        self.order = tableau.order
        self.nodes = tableau.c
        # generated once per tableau (at import for the registered ones); never during tracing
        if tableau.name not in _CODE:
            _CODE[tableau.name] = (_straight_line(tableau), _straight_line(tableau, fused_alpha=False))
        self._step, self._compile_step = _CODE[tableau.name]

    #: gradients with respect to ``t`` flow when ``h`` is a tensor (``step_for_compile``)
    time_differentiable = True

    #: ``step(ts, state, h, into=out)`` writes the new state into ``out`` (``solve``'s eager
    #: loop passes the result's row when the step ends an output interval)
    writes_into = True

    def step(self, ts, state, h, into=None):
        return self._step(self.f, ts, state, h, into)

    def step_for_compile(self, ts, state, h):
        """The same step written without ``alpha=`` (see :func:`_straight_line`)."""
        return self._compile_step(self.f, ts, state, h)


_CODE: dict[str, tuple[Callable, Callable]] = {}
