"""Is a problem stiff?  ``compare``'s cheap test, deciding whether the implicit ladder joins.

A problem is stiff where its fastest *decaying* mode forces an explicit method to steps far
smaller than accuracy needs.  With ``J = df/dy`` at the initial states (``torch.func.jacrev`` on
at most :data:`SAMPLES` of them) and ``r = max(-Re lambda(J))`` the fastest decay rate:

* ``r |h| > STEP_LIMIT``: the coarse step lies outside the explicit methods' stability
  interval on the negative real axis (``|h lambda| <= 2`` for Euler, 2.79 for RK4, 3.3 for
  dopri5): an explicit coarse solve blows up;
* ``r T > HORIZON_LIMIT``: over the horizon ``T`` an explicit adaptive method needs at least
  ``r T / 3.3`` steps whatever its tolerance (stability, not accuracy, sets its step).

Either makes the problem stiff.  Oscillating modes (large imaginary parts) do not count: an
implicit method does not help with them.  The test sees the initial states only: a problem
that becomes stiff later (Robertson's kinetics start slow) is declared with ``stiff=True``.
Where ``J`` cannot be had (``f`` not differentiable by autograd, more than
:data:`MAX_DIM` components per state), the problem counts as not stiff and the record says why.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._validate import boolean

__all__ = ["stiffness_of", "decay_rate", "STEP_LIMIT", "HORIZON_LIMIT", "SAMPLES", "MAX_DIM"]

#: ``r |h|`` above this: the coarse step is outside the explicit methods' real stability interval
STEP_LIMIT = 3.0
#: ``r T`` above this: stability, not accuracy, sets an explicit method's step over the horizon
HORIZON_LIMIT = 1e4
#: initial states whose Jacobian is evaluated
SAMPLES = 4
#: states of more components than this are not tested (a dense Jacobian and its eigenvalues)
MAX_DIM = 512


def decay_rate(f, y0: Tensor, t0: Tensor) -> float:
    """``max(-Re lambda(df/dy))`` over the first :data:`SAMPLES` states of ``y0`` (``[n, *state]``)
    at time ``t0``, each Jacobian by ``torch.func.jacrev`` of ``f`` on one state (``[1, *state]``);
    ``0`` when no mode decays.  Raises what ``f`` or autograd raise."""
    states = y0.detach().reshape(y0.shape[0], -1)
    shape = y0.shape[1:]
    dim = states.shape[1]
    if dim > MAX_DIM:
        raise ValueError(f"{dim} components per state (over {MAX_DIM})")

    def rhs(y: Tensor) -> Tensor:
        return f(t0, y.reshape(1, *shape)).reshape(dim)

    rate = 0.0
    for y in states[:SAMPLES]:
        jac = torch.func.jacrev(rhs)(y).detach().to(torch.float64).cpu()
        if not bool(torch.isfinite(jac).all()):
            raise FloatingPointError("the Jacobian is not finite at an initial state")
        rate = max(rate, float((-torch.linalg.eigvals(jac).real).max()))
    return rate


def stiffness_of(f, y0: Tensor, t: Tensor, h: float, problem: str, declared: bool | None) -> dict[str, Any]:
    """The record ``compare`` keeps: ``{"stiff", "declared", "decay_rate", "step_ratio",
    "horizon_ratio", "note"}``.  ``declared`` (``stiff=`` of ``compare``) decides when given;
    ``None`` detects it for a general ``f(t, y)`` (``problem == "any"``; a semilinear PDE's
    spectral steppers already integrate its stiff linear part exactly, so it is not tested)."""
    record: dict[str, Any] = {"stiff": False, "declared": declared, "decay_rate": None, "step_ratio": None,
                              "horizon_ratio": None, "note": None}
    if declared is not None:
        record["stiff"] = boolean("stiff", declared)
        record["note"] = "declared by stiff=" + str(record["stiff"])
        return record
    if problem != "any":
        record["note"] = f"not tested: a {problem} problem (its own methods treat the stiff linear part)"
        return record
    try:
        rate = decay_rate(f, y0, t[0])
    except Exception as e:  # noqa: BLE001 - any f autograd cannot differentiate: not detected, and said so
        record["note"] = f"not tested: no Jacobian of f ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        return record
    span = abs(float(t[-1] - t[0]))
    step_ratio, horizon_ratio = rate * abs(h), rate * span
    record.update(decay_rate=rate, step_ratio=step_ratio, horizon_ratio=horizon_ratio)
    record["stiff"] = bool(math.isfinite(rate) and (step_ratio > STEP_LIMIT or horizon_ratio > HORIZON_LIMIT))
    record["note"] = (f"fastest decay rate {rate:.3g} at the initial states: {step_ratio:.3g} x the coarse step "
                      f"(limit {STEP_LIMIT:g}), {horizon_ratio:.3g} x the horizon (limit {HORIZON_LIMIT:g})")
    return record
