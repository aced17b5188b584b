"""The guard's feature scores, deferred to the end of the solve and batched.

Under ``guard="warn"`` the score changes nothing in the solve: it only counts flagged steps and
names the first one.  So the guarded loop (without the a-posteriori check) copies the features
``x = [y, dy, C]`` of each scored step into one preallocated ``[S, B, 3D]`` tensor (one ``cat``
per score instead of the score's dozen small tensor operations and its host synchronisation)
and scores all of them after the last step: one ``addmm`` for every score, one for the
nearest-neighbour distances of every update, and the moving average along the ``S`` scores.

Under the sticky ``"fallback"`` a flagged sample takes the refined classical step from its first
flagged step to the end, whatever the later scores say, and its samples do not interact with the
others: so the same deferred scores decide, and each flagged sample is then solved again from the
state its first flagged step started from (``guard._replay``; the samples flagged so far in one
batch, in index order, as the per-step fallback batches them), its outputs from there replaced.
The result and the counts are the per-step fallback's; the extra work where nothing is flagged
is the record and one batched score.  Without autograd only (a replay from a recorded state
would cut the graph): with it, the score runs on its step.

The verdicts are those of the per-step score (:class:`~attsolver.integrate.guard._Scorer`):
the same schedule (every ``SCORE_EVERY``-th step, the first included; the nearest-neighbour
update on every ``KNN_EVERY``-th score), the same folded constants, the same moving average,
and each verdict holds for the steps until the next score.  On the ``ood`` cases the per-step
score was most of the guard's cost on short solves of small batches (the Van der Pol neural
ODE: 20 steps of 100 samples), where each small operation costs more than its arithmetic.

Deferral is used where it pays and is safe: the full-covariance score (at most
``MAX_FULL_COVARIANCE`` features; per-feature scaling is for large states, whose steps cost
more than the score) and a record of at most :data:`DEFERRED_MAX_BYTES`; not with the
a-posteriori check (its windows change the solve as it goes).  Elsewhere the score runs on its
step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["DEFERRED_MAX_BYTES", "KNN_CHUNK", "record_size", "recorded_verdicts"]

#: the record of scored features (``[S, B, 3D]``) is kept below this size; a larger solve scores
#: on its steps (batches that large spend their time in the arithmetic, not in the overhead)
DEFERRED_MAX_BYTES = 32 * 2 ** 20
#: the nearest-neighbour product is formed for at most this many ``[B, M]`` entries at a time
KNN_CHUNK = 2 ** 22


def record_size(n_scores: int, batch: int, dim: int, dtype: torch.dtype) -> int:
    """Bytes of the record ``[n_scores, batch, 3 * dim]`` of ``dtype``."""
    return n_scores * batch * 3 * dim * dtype.itemsize


def recorded_verdicts(scorer: Any, x: Tensor, steps: list[float], knn_every: int, knn_ema: float) -> Tensor:
    """Per score and sample ``[S, B]``: inside the domain (``False``: flagged; NaN is outside),
    for the features ``x [S, B, 3D]`` recorded at the scores whose step sizes are ``steps``
    (its ``dy`` and ``C`` columns are overwritten, its ``y`` columns kept); ``scorer``: the full-covariance scorer folded for ``steps[0]`` (a
    score at another step ``h`` has its ``dy`` and ``C`` scaled by ``steps[0] / h``: the same
    whitened ``dy / h`` and ratio ``|C| / |dy|``).  The moving average of the nearest-neighbour
    distance starts at the first score and is updated on every ``knn_every``-th score (the first
    included), as the per-step score does."""
    n, b, width = x.shape
    h0 = steps[0]
    if any(h != h0 for h in steps):  # a solve's steps differ in the last bits: one product, not one per size
        # (dy, C) at step h scaled by h0 / h: the same whitened dy / h, the same ratio |C| / |dy|
        dim = width // 3
        x[:, :, dim:] *= torch.tensor([h0 / h for h in steps], dtype=x.dtype, device=x.device)[:, None, None]
    p = torch.addmm(scorer.m, x.reshape(-1, width), scorer.fused).reshape(n, b, -1)
    sq = p.square()
    margin = torch.addmm(scorer.limits, sq.reshape(n * b, -1), scorer.margins).reshape(n, b, -1)
    ok = margin.amax(2) <= 0.0  # amax keeps NaN: outside
    if scorer.core_t is None:
        return ok
    f = scorer.core_t.shape[0]
    updates = range(0, n, knn_every)
    u = p[::knn_every, :, :f].to(scorer.knn_dtype).reshape(-1, f)
    u2 = sq[::knn_every, :, :f].sum(2).reshape(-1)
    d = torch.empty(u.shape[0], dtype=scorer.knn_dtype, device=x.device)
    chunk = max(1, KNN_CHUNK // scorer.core_t.shape[1])
    for lo in range(0, u.shape[0], chunk):
        prod = torch.addmm(scorer.core_sq, u[lo:lo + chunk], scorer.core_t)
        torch.amin(prod, 1, out=d[lo:lo + chunk])
    d.add_(u2).clamp_min_(0.0).sqrt_()
    d = d.reshape(len(updates), b)
    average = d[0].clone()
    near = torch.empty((n, b), dtype=torch.bool, device=x.device)
    for k, s in enumerate(updates):
        if k:
            average.lerp_(d[k], knn_ema)
        near[s:s + knn_every] = (average <= scorer.knn)  # the update's verdict holds until the next
    return ok.logical_and_(near)
