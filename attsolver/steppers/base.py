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

import torch
from torch import Tensor

__all__ = ["Stepper"]


class Stepper:
    """Base class for fixed-step integrators.

    Subclasses set :attr:`order` and :attr:`nodes` and implement :meth:`step`.

    Attributes:
        order: classical order ``p`` of the method (global error ``O(h^p)``).
        nodes: stage times as fractions of the step, ``c_i`` in ``t_n + c_i h``; ``solve``
            precomputes these times once so the step loop does no time arithmetic.
    """

    order: int
    nodes: tuple[float, ...]

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor]):
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

    def increment(self, ts: Sequence[Tensor], y: Tensor, h: float) -> Tensor:
        """The classical increment ``h * Phi(t_n, y_n; h)`` in physical space."""
        return self.from_state(self.step(ts, self.to_state(y), h)) - y


def _nonzero(row: Sequence[float]) -> tuple[tuple[int, float], ...]:
    return tuple((j, a) for j, a in enumerate(row) if a != 0.0)


def _straight_line(tableau, *, fused_alpha: bool = True) -> Callable:
    """Generate the ``step`` of one tableau as straight-line Python.

    The generic double loop over stages and coefficients costs a few microseconds of
    interpreter time per step, which is a sizeable part of a step on small systems; the
    generated code makes exactly the tensor calls the tableau needs and nothing else.
    Coefficients are written with ``repr`` (exact round-trip of the float64 values).

    ``fused_alpha=False`` writes ``y + (h * a) * k`` instead of ``torch.add(y, k, alpha=h * a)``:
    that is the variant handed to ``torch.compile``, because inductor (torch 2.13, CPU)
    miscompiles ``torch.add(y, y @ A.T, alpha=a)`` for some shapes (a [2, 2] float64 batch
    gave wrong numbers), while the plain expression compiles correctly and fuses the same.
    """

    def axpy(acc: str, j: int, coef: float, first: bool) -> str:
        if fused_alpha:
            return f"torch.add({acc}, k{j}, alpha=h * {coef!r})"
        return f"{acc} + (h * {coef!r}) * k{j}"

    lines = ["def _stages(f, ts, y, h):"]
    for i, row in enumerate(tableau.a):
        arg = "y"
        for j, aij in _nonzero(row):
            lines.append(f"    y{i} = {axpy(arg, j, aij, arg == 'y')}")
            arg = f"y{i}"
        lines.append(f"    k{i} = f(ts[{i}], {arg})")
    ks = ", ".join(f"k{i}" for i in range(tableau.stages))
    lines.append(f"    return ({ks},)")
    b = _nonzero(tableau.b)
    (j0, b0), rest = b[0], b[1:]
    lines += ["", "def step(f, ts, y, h):", f"    {ks}, = _stages(f, ts, y, h)",
              f"    out = {axpy('y', j0, b0, True)}"]
    if fused_alpha:  # in place on the fresh tensor: no allocation per weight
        lines += [f"    out.add_(k{j}, alpha=h * {bj!r})" for j, bj in rest]
    else:
        lines += [f"    out = {axpy('out', j, bj, False)}" for j, bj in rest]
    lines += ["    return out"]
    namespace: dict = {"torch": torch}
    exec(compile("\n".join(lines), f"<tableau {tableau.name}>", "exec"), namespace)
    return namespace["step"]


class ExplicitRK(Stepper):
    """One explicit Runge–Kutta step from a :class:`~attsolver.steppers.tableau.ButcherTableau`.

    Zero tableau entries are skipped, so classic RK4 costs four evaluations of ``f`` and
    seven fused ``add`` kernels per step, issued from generated straight-line code.
    """

    def __init__(self, f, tableau):
        super().__init__(f)
        self.tableau = tableau
        self.order = tableau.order
        self.nodes = tableau.c
        # generated once per tableau (at import for the registered ones); never during tracing
        if tableau.name not in _CODE:
            _CODE[tableau.name] = (_straight_line(tableau), _straight_line(tableau, fused_alpha=False))
        self._step, self._compile_step = _CODE[tableau.name]

    def step(self, ts, state, h):
        return self._step(self.f, ts, state, h)

    def step_for_compile(self, ts, state, h):
        """The same step written without ``alpha=`` (see :func:`_straight_line`)."""
        return self._compile_step(self.f, ts, state, h)


_CODE: dict[str, tuple[Callable, Callable]] = {}
