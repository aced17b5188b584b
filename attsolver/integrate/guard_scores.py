"""The guard's feature scores of given steps, each over its threshold: why a rollout was, or
was not, flagged.

The guard (:mod:`.guard`) scores a step only every few steps and keeps the verdict, and its
nearest-neighbour score is a moving average.  :func:`domain_scores` scores *every* step it is
given, in float64 and unsmoothed, each score divided by the threshold the guard compares it with:

* ``"distance"``: the squared Mahalanobis distance ``d^2 = |(z - mu) W|^2`` of the features
  ``z = (y, dy / h)`` over :attr:`~.guard.TrainingDomain.distance_threshold`;
* ``"nearest"``: the whitened features' distance to the nearest coreset point over
  :attr:`~.guard.TrainingDomain.knn_threshold` (``None`` when the domain has no coreset);
* ``"correction"``: ``|C| / |dy|`` over :attr:`~.guard.TrainingDomain.ratio_threshold`.

A value above 1 on a scored step flags the sample (for ``"nearest"``: when the moving average of
the values, which is at most their maximum, exceeds 1).  So a rollout whose three scores stay at
or below 1 on every step is not flagged by the feature scores under any scoring schedule: only the
a-posteriori check or the system check can flag it.  Used by ``attsolver bench ood`` to diagnose
the rollouts the corrector made worse that the guard missed.
"""

from __future__ import annotations

from torch import Tensor

from .guard import TrainingDomain, guard_features
from .guard_knn import nearest_distance

__all__ = ["domain_scores"]


def domain_scores(domain: TrainingDomain, y: Tensor, dy: Tensor, c: Tensor, h: float) -> dict[str, Tensor | None]:
    """Each feature score of the steps ``(y, dy, c)`` over its threshold, per sample.

    Args:
        domain: the corrector's training domain (``corrector.domain``).
        y: states ``[*batch, *state]`` at the steps' starts.
        dy: the classical increments ``Phi_h(y) - y``, shaped as ``y``.
        c: the corrections ``C(t, y, dy, h)``, shaped as ``y``.
        h: the step.

    Returns:
        ``{"distance", "nearest", "correction"}``, each a float64 tensor ``[B]`` (``B`` = the
        batch's size, flattened), ``"nearest"`` ``None`` without a coreset.  Above 1: outside.
    """
    dim = domain.feature_dim // 2
    if y.numel() % dim or y.shape != dy.shape or y.shape != c.shape:
        raise ValueError(f"y, dy and c must have one shape with a multiple of the domain's {dim} state entries "
                         f"per sample, got {tuple(y.shape)}, {tuple(dy.shape)}, {tuple(c.shape)}")
    z = guard_features(y.detach().double(), dy.detach().double(), h, dim)
    zc = z - domain.mean
    u = zc @ domain.whiten if domain.whiten.ndim == 2 else zc * domain.whiten
    dy2 = dy.detach().double().reshape(-1, dim)
    size = c.detach().double().reshape(-1, dim).norm(dim=1)
    ratio = size.where(size == 0, size / dy2.norm(dim=1))  # no correction: 0, as the guard's |C| <= r |dy|
    nearest = None if domain.coreset is None else nearest_distance(u, domain.coreset) / domain.knn_threshold
    return {"distance": u.square().sum(1) / domain.distance_threshold, "nearest": nearest,
            "correction": ratio / domain.ratio_threshold}
