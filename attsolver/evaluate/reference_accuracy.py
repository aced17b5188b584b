"""How accurate is the reference a verdict is scored against — and which rungs it cannot judge.

Every error ``compare`` reports is measured against a reference: the test data's clean values,
a reference the caller passed, or a fine solve ``compare`` made itself.  That reference has an
error of its own, ``r``.  A classical rung whose true error is far below ``r`` is scored at about
``r`` (it measures the reference's error, not its own), so a ladder refined past the data's
accuracy — RK4 at ``h/32`` against data made at ``h/20`` — would enter the work-precision front
with an error it does not have.

:func:`reference_accuracy` estimates ``r`` in the units of the verdict's error (the ``match``
error: relative L2 up to a fraction of the horizon, averaged over the test trajectories):

* a reference ``compare`` computed (the default method at ``h/256``, a spectral method at
  ``h/64``) by Richardson's estimate: the same method at twice the step differs from it by
  ``(2^p - 1) r`` for a method of order ``p``;
* data or a given reference: against a fine solve of ``f`` from the same initial states (the
  problem's default method at ``h/256``, or a spectral one at ``h/64``), whose own error is
  estimated as above; when the
  data agree with it to within twice that, the data are at least as accurate as the fine solve
  can tell, and ``r`` is that resolution.

:func:`credit_above_reference` then applies the rule "never credit a rung finer than the
reference": a rung whose measured error is at most :data:`FACTOR` ``x r`` is *at the reference's
accuracy* and is left out of the equal-accuracy interpolation (its true error is anywhere in
``[0, (FACTOR + 1) r]``).  When the corrected solve itself is at the reference's accuracy, its
true error is at most its measured error plus ``r``; the speed-up is read at that error and is
a lower bound.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..integrate import solve
from ..steppers.registry import default_method, get_method
from .confidence import per_trajectory_error
from .contenders import REFERENCE_REFINE, REFERENCE_REFINE_SPECTRAL, TestSet

__all__ = ["FACTOR", "reference_accuracy", "credit_above_reference", "describe_floor"]

#: a rung whose measured error is at most FACTOR x the reference's error is at the reference's accuracy
FACTOR = 2.0


def _reference_method(method: str, problem: str, computed: bool) -> tuple[str, int]:
    """The method and refinement of the fine solve: for a reference ``compare`` computed, the
    ones it used (:func:`attsolver.evaluate.contenders.build_test_set`: a spectral coarse
    method itself at ``h/64``, else the general default at ``h/256``); for data, the problem's
    default method (spectral for a semilinear PDE, stable where RK4 may not be) the same way."""
    if get_method(method).applies_to != "any":
        return method, REFERENCE_REFINE_SPECTRAL
    fine = default_method("any") if computed else default_method(problem)
    return fine, REFERENCE_REFINE if get_method(fine).applies_to == "any" else REFERENCE_REFINE_SPECTRAL


def _fine(f, test: TestSet, method: str, step: float):
    """``f`` solved from the test states on the test times, ``[n, time, *state]`` float64,
    or ``None`` when the solve fails or turns non-finite."""
    try:
        with torch.no_grad():
            y = solve(f, test.y0.to(torch.float64), test.t.to(torch.float64), method=method, step_size=step,
                      options={"check_finite": False}).transpose(0, 1)
    except (RuntimeError, FloatingPointError, ValueError):
        return None
    return y if bool(torch.isfinite(y).all()) else None


def _mean_error(pred, true, limit: float, match: str) -> float:
    return float(np.mean(per_trajectory_error(pred, true, limit, match)))


def reference_accuracy(f, test: TestSet, *, computed: bool, method: str, h: float, problem: str, match: str,
                       limit: float) -> dict[str, Any]:
    """The reference's own ``match`` error, estimated (see the module's text).

    Args:
        computed: whether ``test.true`` is ``compare``'s own fine solve (else data or a
            reference the caller passed).
        method, h, problem: the coarse method and step, and the registry problem kind of ``f``.
        match, limit: the verdict's error and the blow-up bound.

    Returns:
        ``{"error": r or None, "how": str, "resolved": bool}``: ``error`` is ``None`` when it
        cannot be estimated (a fine solve blew up; nothing is then left out); ``resolved`` is
        ``False`` when the data agree with the fine solve to within its own error (``r`` is then
        that error: the data may be more accurate still).
    """
    ref_method, refine = _reference_method(method, problem, computed)
    order = get_method(ref_method).order or 4
    half = _fine(f, test, ref_method, h / (refine // 2))
    fine = test.true if computed else _fine(f, test, ref_method, h / refine)
    yardstick = f"{ref_method} at h/{refine}"
    if half is None or fine is None:
        return {"error": None, "resolved": False,
                "how": f"unknown: the fine solve of f ({ref_method} at h/{refine // 2} or h/{refine}) blew up"}
    fine_err = _mean_error(half, fine, limit, match) / (2.0 ** order - 1.0)
    if computed:
        return {"error": fine_err, "resolved": True,
                "how": f"{yardstick}, Richardson's estimate against h/{refine // 2} (order {order})"}
    data_err = _mean_error(test.true, fine, limit, match)
    if data_err > FACTOR * fine_err:
        return {"error": data_err, "resolved": True,
                "how": f"the test data against a fine solve of f ({yardstick}, itself accurate to {fine_err:.2g})"}
    return {"error": max(data_err, fine_err), "resolved": False,
            "how": f"at most this: the test data agree with a fine solve of f ({yardstick}) to within its own "
                   f"accuracy"}


def credit_above_reference(classical: list[dict[str, Any]], corrected: dict[str, Any] | None,
                           traj_errors: dict[str, np.ndarray], ref: dict[str, Any], match: str):
    """The rule "never credit a rung finer than the reference".

    Returns ``(credited, traj, target, floor)``: the classical entries whose ``match`` error is
    above ``FACTOR x r``; the per-trajectory errors with the corrected solve's raised by ``r``
    when it is itself at the reference's accuracy (else as given); the error the corrected
    solve is compared at (its own, or its own plus ``r``: the speed-up is then a lower bound);
    and ``floor``: ``{"error", "threshold", "not_credited": [labels], "bound": bool}``.
    The coarse solve is always credited (the guard rails refuse data less accurate than it).
    """
    r = ref.get("error")
    target = None if corrected is None else corrected[match]
    if r is None or not r > 0:
        return classical, traj_errors, target, {"error": r, "threshold": None, "not_credited": [], "bound": False,
                                                "target": target}
    threshold = FACTOR * r
    credited = [e for e in classical if e[match] > threshold or (e["family"] == "same" and e.get("k") == 1)]
    dropped = [e["label"] for e in classical if e not in credited]
    bound = corrected is not None and corrected[match] <= threshold
    if bound:
        target = corrected[match] + r
        traj_errors = dict(traj_errors, **{corrected["label"]: traj_errors[corrected["label"]] + r})
    return credited, traj_errors, target, {"error": r, "threshold": threshold, "not_credited": dropped,
                                           "bound": bound, "target": target}


def describe_floor(ref: dict[str, Any], floor: dict[str, Any]) -> str:
    """The verdict's words on the reference: its accuracy, the rungs left out, and the bound."""
    if ref.get("error") is None:
        return f"reference accuracy {ref['how']}"
    text = f"reference accuracy {ref['error']:.3g}" + ("" if ref["resolved"] else " or better")
    if floor["not_credited"]:
        text += f"; at it, not credited: {', '.join(floor['not_credited'])}"
    if floor["bound"]:
        text += (f"; the corrected error is at the reference's accuracy: the speed-up is a lower bound, read at "
                 f"error {floor['target']:.3g} (measured + reference)")
    return text
