"""Butcher tableaus for explicit Runge–Kutta methods, validated on construction.

A tableau ``(A, b, c)`` defines the explicit method

    k_i = f(t + c_i h, y + h * sum_{j<i} A_ij k_j),    y_{n+1} = y_n + h * sum_i b_i k_i.

:class:`ButcherTableau` checks the structure (strictly lower-triangular ``A``, rows of
``A`` summing to ``c``, weights summing to one) when it is built, so a typo in a tableau is
an error at import time rather than a silently wrong integrator.  The classical order
conditions up to order four are checked by the test-suite (``tests/test_tableau.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

__all__ = ["ButcherTableau", "TABLEAUS"]

_TOL = 1e-14


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method.

    Args:
        name: registry name, e.g. ``"rk4"``.
        a: strictly lower-triangular stage matrix, one tuple per stage (row ``i`` holds
            ``i`` entries).
        b: quadrature weights, one per stage.
        c: nodes, one per stage; ``c[0]`` must be 0.
        order: the classical order of accuracy ``p`` (global error ``O(h^p)``).
        description: one line for ``list_methods()``.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    description: str = ""

    def __post_init__(self) -> None:
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"tableau {self.name!r}: a, b and c must all have {s} stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(
                    f"tableau {self.name!r}: row {i} of a must have {i} entries (explicit method)"
                )
            # `not <=` so that a NaN entry is refused too
            if not abs(sum(row) - self.c[i]) <= _TOL:
                raise ValueError(f"tableau {self.name!r}: row {i} of a sums to {sum(row)}, not c[{i}]={self.c[i]}")
        if not abs(sum(self.b) - 1.0) <= _TOL:
            raise ValueError(f"tableau {self.name!r}: weights b sum to {sum(self.b)}, not 1")
        if self.order < 1:
            raise ValueError(f"tableau {self.name!r}: order must be >= 1")

    @property
    def stages(self) -> int:
        return len(self.b)


def _f(*xs: str | int) -> tuple[float, ...]:
    return tuple(float(Fraction(x)) for x in xs)


TABLEAUS: dict[str, ButcherTableau] = {
    t.name: t
    for t in (
        ButcherTableau("euler", a=((),), b=_f(1), c=_f(0), order=1, description="forward Euler"),
        ButcherTableau(
            "midpoint", a=((), _f("1/2")), b=_f(0, 1), c=_f(0, "1/2"), order=2,
            description="explicit midpoint rule",
        ),
        ButcherTableau(
            "heun", a=((), _f(1)), b=_f("1/2", "1/2"), c=_f(0, 1), order=2,
            description="Heun's method (explicit trapezoidal rule)",
        ),
        ButcherTableau(
            "ssprk3", a=((), _f(1), _f("1/4", "1/4")), b=_f("1/6", "1/6", "2/3"),
            c=_f(0, 1, "1/2"), order=3,
            description="strong-stability-preserving RK3 (Shu–Osher)",
        ),
        ButcherTableau(
            "rk4", a=((), _f("1/2"), _f(0, "1/2"), _f(0, 0, 1)),
            b=_f("1/6", "1/3", "1/3", "1/6"), c=_f(0, "1/2", "1/2", 1), order=4,
            description="classic fourth-order Runge–Kutta",
        ),
        ButcherTableau(
            "rk38", a=((), _f("1/3"), _f("-1/3", 1), _f(1, -1, 1)),
            b=_f("1/8", "3/8", "3/8", "1/8"), c=_f(0, "1/3", "2/3", 1), order=4,
            description="Kutta's 3/8 rule (torchdiffeq's 'rk4')",
        ),
    )
}
