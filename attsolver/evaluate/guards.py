"""Guard rails on the inputs of a verdict: do the test data belong to ``f``?

A test set made by another right-hand side (another system, other parameters) still gives
``compare`` numbers, and every one of them would be meaningless.  :func:`check_data_match_f`
solves ``f`` finely over the first output interval from every test state and compares the
data's next state with it.  Data good enough to judge a coarse solver must be more accurate
than that coarse solver: when the data disagree with ``f`` by more than the coarse step itself
does (twice, for margin), the data were not made by this ``f`` and the comparison is refused,
naming the size of the mismatch.  The disagreement is also the data's measured accuracy over
one interval, recorded with the result.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..integrate import solve
from ..steppers.registry import default_method, get_method

__all__ = ["check_data_match_f", "FINE_REFINE"]

#: the fine solve of the check: the default method at the output interval over this
FINE_REFINE = 64
#: the smallest mismatch ever refused (float32 data carry ~1e-7 relative round-off)
FLOOR = 1e-6


def _rel(a: Tensor, b: Tensor) -> Tensor:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-300)


def check_data_match_f(f, y0: Tensor, t: Tensor, true: Tensor, method: str, h: float, problem: str) -> dict[str, Any]:
    """The data's first interval against a fine solve of ``f`` (float64) and against the
    coarse ``method`` at step ``h``; raises ``ValueError`` when the data disagree with ``f``
    by more than the coarse method at ``h/2`` would (coarse error / 2^order, at least
    :data:`FLOOR`).  Returns ``{"data_error_one_interval", "coarse_error_one_interval",
    "fine_solve", "limit"}`` (mean relative errors)."""
    y0 = y0.to(torch.float64)
    t2 = t[:2].to(torch.float64)
    dt = float(t2[1] - t2[0])
    fine_method = method if get_method(method).applies_to != "any" else default_method(problem)
    with torch.no_grad():
        fine = solve(f, y0, t2, method=fine_method, step_size=dt / FINE_REFINE, options={"check_finite": False})[-1]
        coarse = solve(f, y0, t2, method=method, step_size=h, options={"check_finite": False})[-1]
    d = float(_rel(true[:, 1].to(torch.float64), fine).mean())
    c = float(_rel(coarse, fine).mean())
    out = {"data_error_one_interval": d, "coarse_error_one_interval": c,
           "fine_solve": f"{fine_method} at dt/{FINE_REFINE}"}
    order = get_method(method).order or 4
    limit = max(c / 2.0 ** order, FLOOR)
    out["limit"] = limit
    if not d <= limit:
        raise ValueError(
            f"the test data do not belong to this f: over the first output interval they differ from a fine solve "
            f"of f ({fine_method} at dt/{FINE_REFINE}) by {d:.3g} (mean relative error), more than the coarse "
            f"{method} at h/2 would ({limit:.3g}; at h={h:g}: {c:.3g}); check that the data, the right-hand side "
            f"(--rhs / the system and its --param values) and the corrector belong to the same problem, and that "
            f"the data were made finely enough"
        )
    return out
