"""The guard's right-hand-side probe: the system check for any ``f``.

The system check (:mod:`.guard_system`) compares parameters, so it works only for a built-in
:class:`~attsolver.systems.System` whose parameters ``fit`` recorded.  The probe compares what
the parameters produce.  :func:`attsolver.training.record_domain` keeps a few training states
``y_p`` (:data:`PROBES`, drawn from the training data) and the classical step's increment
``dy_p = Phi_h(y_p) - y_p`` from each, at the training step ``h`` and start time ``t_p``.  At
the start of a guarded solve the solve's own stepper (its ``f``, whatever it is: a closure, a
module, a neural network) takes that one step from the same states, and the increments are
compared:

    e = max_p |dy'_p - dy_p| / rms_p |dy_p|.

``e`` is round-off (about ``1e-16`` in float64, ``1e-7`` in float32) when ``f`` is the training
system, and the size of the change when it is not: Lorenz-63 at ``rho = 35`` instead of 28 moves
``dy/h`` by ``7 x`` in one component.  Above the domain's ``probe_rtol`` (default
:data:`PROBE_RTOL`) the solve's system is not the one the corrector was trained on, and every
rollout is outside the training domain from step 0, exactly as for the system check.

The step runs on the ``P`` probe states, a batch of ``P``: its cost is one classical step of
``P`` samples per solve.  An ``f`` whose parameters broadcast against the solve's batch shape
cannot take that batch; for it the probe states are tiled over the solve's batch (sample ``b``
takes probe ``b mod P``; the first ``B`` probes when the batch ``B`` is smaller) and the step
costs one classical step of the batch.  It is skipped when the system check has already compared a built-in
system with its recorded parameters (equal parameters give equal increments), and for a domain
recorded before probes existed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["PROBES", "PROBE_RTOL", "probe_difference", "probe_sentence", "check_probes"]

#: a domain keeps this many probe states (fewer when the training data has fewer states)
PROBES = 8
#: a solve's ``f`` is the training system when the probe's largest relative difference is at most
#: this: far above round-off (float32 arithmetic, another device's reductions, TF32 convolutions
#: at ~1e-3 of a large product are the loosest), far below a parameter shift that matters (a 1 %
#: change of a coefficient moves its term by 1e-2 of itself)
PROBE_RTOL = 1e-3


def probe_difference(advance: Callable[[Tensor, float, float], Tensor], like: Tensor, state_shape: tuple[int, ...],
                     probe_y: Tensor, probe_dy: Tensor, t0: float, h: float) -> tuple[float, int]:
    """``(e, p)``: the probe's largest relative difference ``e`` (``inf`` when a step is not
    finite) and the probe state ``p`` it is at.

    ``advance(y, t0, h)``: one classical step of the solve's stepper from ``y``; ``like``: the
    solve's ``y0`` (batch shape, dtype, device); ``state_shape``: one sample's shape;
    ``probe_y``, ``probe_dy``: ``[P, D]`` float64 (the domain's).  The step runs on the ``P``
    probe states; an ``f`` that cannot take a batch of ``P`` (its parameters broadcast against
    the solve's batch shape) gets them tiled over the solve's batch instead."""
    p, dim = probe_y.shape
    y = probe_y.to(device=like.device, dtype=like.dtype)
    rows = torch.arange(p, device=like.device)
    with torch.no_grad():
        try:
            y1 = advance(y.reshape(p, *state_shape), t0, h)
            if y1.shape != (p, *state_shape):
                raise ValueError("the step did not keep the probe batch's shape")
        except (RuntimeError, ValueError, IndexError):  # a batch of P does not broadcast with f's parameters
            batch = like.numel() // dim
            rows = torch.arange(batch, device=like.device) % p if batch >= p else rows[:batch]
            y = y[rows]
            y1 = advance(y.reshape(like.shape), t0, h)
    d = (y1.reshape(len(rows), dim).double() - y.double()) - probe_dy.to(device=like.device)[rows]
    scale = probe_dy.double().square().sum(1).mean().sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    e = torch.linalg.vector_norm(d, dim=1) / scale.to(d.device)
    e = torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))
    worst = int(torch.argmax(e))
    return float(e[worst]), int(rows[worst])


def probe_sentence(e: float, p: int, rtol: float) -> str:
    """The sentence a mismatch's warning and ``GuardReport.system`` carry."""
    size = "a step that is not finite" if math.isinf(e) else f"{e:.3g} of the recorded increments' size"
    return (f"this solve's f is not the system the corrector was trained on: one classical step from the "
            f"training state kept as probe {p} differs from the recorded step by {size} (tolerance "
            f"{rtol:g}, the domain's probe_rtol)")


def check_probes(probe_y, probe_dy, probe_t, probe_rtol, dim: int) -> None:
    """A ``ValueError`` naming ``record_domain`` unless the probes are ``[P, dim]`` finite float
    tensors (``P >= 1``, the same shape) with a finite time and a tolerance > 0."""
    fix = "; record the domain again from the training data: attsolver.training.record_domain(corrector, data)"
    for name, v in (("probe_y", probe_y), ("probe_dy", probe_dy)):
        if not isinstance(v, Tensor) or not v.is_floating_point() or v.ndim != 2 or v.shape[0] < 1 \
                or v.shape[1] != dim or not bool(torch.isfinite(v).all()):
            raise ValueError(f"the training domain's {name} must be a finite [P, {dim}] float tensor, got "
                             f"{getattr(v, 'shape', type(v).__name__)}" + fix)
    if probe_y.shape != probe_dy.shape:
        raise ValueError(f"the training domain's probe_y {tuple(probe_y.shape)} and probe_dy "
                         f"{tuple(probe_dy.shape)} must have one shape" + fix)
    if not (isinstance(probe_t, (int, float)) and math.isfinite(probe_t)):
        raise ValueError(f"the training domain's probe_t must be a finite number, got {probe_t!r}" + fix)
    if not (isinstance(probe_rtol, (int, float)) and not isinstance(probe_rtol, bool) and math.isfinite(probe_rtol)
            and probe_rtol > 0):
        raise ValueError(f"the training domain's probe_rtol must be a finite number > 0, got {probe_rtol!r}" + fix)
