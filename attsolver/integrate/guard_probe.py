"""The guard's right-hand-side probe: the system check for any ``f``.

The system check (:mod:`.guard_system`) compares parameters, so it works only for a built-in
:class:`~attsolver.systems.System` whose parameters ``fit`` recorded.  The probe compares what
the parameters produce.  :func:`attsolver.training.record_domain` keeps a few training states
``y_p`` (:data:`PROBES`, drawn from the training data) and the right-hand side there,
``f_p = f(t_p, y_p)``, at one time ``t_p``.  At the start of a guarded solve the solve's own
``f`` (whatever it is: a closure, a module, a neural network; the one its stepper calls) is
evaluated at the same states and time, and

    e = max_p |f'(t_p, y_p) - f_p| / rms_p |f_p|

is compared with the domain's ``probe_rtol`` (default :data:`PROBE_RTOL`).  ``e`` is round-off
(about ``1e-16`` in float64, ``1e-7`` in float32) when ``f`` is the training system, and the size
of the change when it is not: Lorenz-63 at ``rho = 35`` instead of 28 moves ``f`` by
``(0, 7 x, 0)`` exactly.  Above the tolerance the solve's system is not the one the corrector was
trained on, and every rollout is outside the training domain from step 0, exactly as for the
system check.

The evaluation is one call of ``f`` on the ``P`` probe states per solve.  An ``f`` whose
parameters broadcast against the solve's batch shape cannot take a batch of ``P``; for it the
probe states are tiled over the solve's batch (sample ``b`` takes probe ``b mod P``; the first
``B`` probes when the batch ``B`` is smaller) and the call is on a batch of the solve's shape.
The probe is skipped when the system check has already compared a built-in system with its
recorded parameters (equal parameters give equal ``f``), and for a domain recorded before probes
existed.
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


def probe_difference(f: Callable[[Tensor, Tensor], Tensor], like: Tensor, state_shape: tuple[int, ...],
                     probe_y: Tensor, probe_f: Tensor, t0: float, t_dtype: torch.dtype) -> tuple[float, int]:
    """``(e, p)``: the probe's largest relative difference ``e`` (``inf`` where ``f`` is not
    finite) and the probe state ``p`` it is at.

    ``f``: the solve's right-hand side; ``like``: the solve's ``y0`` (batch shape, dtype,
    device); ``state_shape``: one sample's shape; ``probe_y``, ``probe_f``: ``[P, D]`` float64
    (the domain's); ``t0``: the probes' time, passed to ``f`` as a scalar tensor of ``t_dtype``.
    ``f`` is called on the ``P`` probe states; an ``f`` that cannot take a batch of ``P`` (its
    parameters broadcast against the solve's batch shape) gets them tiled over the solve's batch."""
    p, dim = probe_y.shape
    y = probe_y.to(device=like.device, dtype=like.dtype)
    t = torch.tensor(t0, dtype=t_dtype, device=like.device)
    rows = torch.arange(p, device=like.device)
    with torch.no_grad():
        try:
            got = f(t, y.reshape(p, *state_shape))
            if tuple(got.shape) != (p, *state_shape):
                raise ValueError("f did not keep the probe batch's shape")
        except (RuntimeError, ValueError, IndexError):  # a batch of P does not broadcast with f's parameters
            batch = like.numel() // dim
            rows = torch.arange(batch, device=like.device) % p if batch >= p else rows[:batch]
            got = f(t, y[rows].reshape(like.shape))
    d = got.reshape(len(rows), dim).double() - probe_f.to(device=like.device)[rows]
    scale = probe_f.double().square().sum(1).mean().sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    e = torch.linalg.vector_norm(d, dim=1) / scale.to(d.device)
    e = torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))
    worst = int(torch.argmax(e))
    return float(e[worst]), int(rows[worst])


def probe_sentence(e: float, p: int, rtol: float) -> str:
    """The sentence a mismatch's warning and ``GuardReport.system`` carry."""
    size = "a value that is not finite" if math.isinf(e) else f"{e:.3g} of the recorded values' RMS size"
    return (f"this solve's f is not the system the corrector was trained on: at the training state kept as "
            f"probe {p} it differs from the recorded f by {size} (tolerance {rtol:g}, the domain's probe_rtol)")


def check_probes(probe_y, probe_f, probe_t, probe_rtol, dim: int) -> None:
    """A ``ValueError`` naming ``record_domain`` unless the probes are ``[P, dim]`` finite float
    tensors (``P >= 1``, the same shape) with a finite time and a tolerance > 0."""
    fix = "; record the domain again from the training data: attsolver.training.record_domain(corrector, data)"
    for name, v in (("probe_y", probe_y), ("probe_f", probe_f)):
        if not isinstance(v, Tensor) or not v.is_floating_point() or v.ndim != 2 or v.shape[0] < 1 \
                or v.shape[1] != dim or not bool(torch.isfinite(v).all()):
            raise ValueError(f"the training domain's {name} must be a finite [P, {dim}] float tensor, got "
                             f"{getattr(v, 'shape', type(v).__name__)}" + fix)
    if probe_y.shape != probe_f.shape:
        raise ValueError(f"the training domain's probe_y {tuple(probe_y.shape)} and probe_f "
                         f"{tuple(probe_f.shape)} must have one shape" + fix)
    if not (isinstance(probe_t, (int, float)) and math.isfinite(probe_t)):
        raise ValueError(f"the training domain's probe_t must be a finite number, got {probe_t!r}" + fix)
    if not (isinstance(probe_rtol, (int, float)) and not isinstance(probe_rtol, bool) and math.isfinite(probe_rtol)
            and probe_rtol > 0):
        raise ValueError(f"the training domain's probe_rtol must be a finite number > 0, got {probe_rtol!r}" + fix)
