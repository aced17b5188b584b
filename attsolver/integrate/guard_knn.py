"""The guard's nonlinear domain score: the distance of a step's whitened features to the nearest
point of a *coreset* of the training features, smoothed along the solve.

The Mahalanobis score of :class:`~attsolver.integrate.guard.TrainingDomain` measures the
distance to the training features' mean in units of their covariance: an ellipsoid.  The
features ``z = (y, dy / h)`` of a trained system lie on a thin, curved manifold
(``dy = Phi_h(y) - y``), and a step off that manifold but inside the fat ellipsoid passes the
score.  On Lorenz-63 at rho = 35 instead of 28, ``dy / h`` moves by ``7 x`` in one component,
well inside the ellipsoid.  The distance to the nearest training feature sees it.

* **Coreset.**  At most :data:`CORESET_SIZE` training features, whitened, chosen by farthest-point
  sampling (every training feature is then within the coreset's covering radius of one of them).
* **Score.**  ``d = min_c |u - c|`` for the whitened features ``u``, computed as
  ``|u|^2 + min_c (|c|^2 - 2 u.c)``: one ``addmm`` (float32, into a ``[B, M]`` buffer the
  scorer keeps: a fresh 200-400 kB tensor per score cost more than the arithmetic) and one
  ``amin``.  It runs on every :data:`KNN_EVERY`-th feature score (every ``KNN_EVERY *
  SCORE_EVERY``-th step; its verdict holds until the next): the moving average is slow anyway,
  and the score was half the guard's cost (benchmarks/results/ood.md).
* **Smoothing.**  An exponential moving average over the scores of a solve,
  ``e <- (1 - a) e + a d`` with ``a =`` :data:`KNN_EMA` (started at the first score).  One
  excursion into a sparsely sampled part of the attractor does not flag a rollout; a rollout
  that stays off the manifold, or starts far from it, does.
* **Threshold.**  Calibrated on held-out training trajectories: :data:`KNN_FOLDS` folds of
  whole trajectories; each fold's steps are scored against a coreset of the others, the moving
  average runs along each held-out trajectory on the guard's schedule (every ``KNN_EVERY *
  SCORE_EVERY``-th step), and the threshold is the
  :data:`KNN_QUANTILE` quantile of the averages times a margin.

Used where the features have at most :data:`KNN_MAX_FEATURES` entries: above that a few thousand
training steps do not sample the manifold (on Lorenz-96 with 40 features the held-out distance
is 6-9 whitened units, no smaller than that of the out-of-distribution steps), and the
Mahalanobis score stays alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CORESET_SIZE", "KNN_EMA", "KNN_EVERY", "KNN_FOLDS", "KNN_QUANTILE", "KNN_MAX_FEATURES", "farthest_points",
           "nearest_distance", "calibrate_knn", "check_coreset"]

#: the coreset keeps at most this many whitened training features (on Lorenz-63, 512, 1024 and
#: 2048 points flag the same out-of-distribution rollouts within 5 of 100: the training data, not
#: the coreset, limit how densely the manifold is sampled)
CORESET_SIZE = 512
#: the weight of a new score in the moving average of the nearest-neighbour distance
KNN_EMA = 0.25
#: the nearest-neighbour score runs on every this many feature scores of the guard (the first
#: included); the moving average and its verdict hold in between.  On Lorenz-63 (100 rollouts) the
#: score on every feature score (1) cost ~5 points of the guard's +11-12 %
KNN_EVERY = 2
#: the threshold's calibration holds out this many folds of whole training trajectories
KNN_FOLDS = 4
#: the threshold is this quantile of the held-out moving averages (times the domain's
#: ``knn_margin``).  On Lorenz-63 with the domain of 124 in-distribution trajectories, 0.99 flags
#: 7 of 100 in-distribution rollouts, 0.995 4 (and still every rollout at rho = 35), 0.999 none
#: (and 62 of 100 at rho = 35)
KNN_QUANTILE = 0.995
#: the nearest-neighbour score is used up to this many features (``2 D``)
KNN_MAX_FEATURES = 16
#: fewer training samples than this record no coreset
MIN_KNN_SAMPLES = 16


def farthest_points(u: Tensor, m: int) -> Tensor:
    """Indices of ``m`` rows of ``u [N, F]`` by farthest-point sampling from row 0 (greedy: each
    next point is the one furthest from those chosen)."""
    n = len(u)
    m = min(m, n)
    idx = torch.empty(m, dtype=torch.long)
    idx[0] = 0
    d = (u - u[0]).square().sum(1)
    for i in range(1, m):
        j = int(d.argmax())
        idx[i] = j
        d = torch.minimum(d, (u - u[j]).square().sum(1))
    return idx


def nearest_distance(u: Tensor, coreset: Tensor) -> Tensor:
    """``min_c |u_i - c|`` ``[B]`` for ``u [B, F]`` and ``coreset [M, F]``."""
    cross = torch.addmm(coreset.square().sum(1), u, coreset.T, alpha=-2.0).amin(1)
    return (u.square().sum(1) + cross).clamp_min(0.0).sqrt()


def moving_average(d: Tensor) -> Tensor:
    """The guard's moving average along the first dimension of ``d [S, ...]`` (its value after
    each score), started at the first score."""
    out = torch.empty_like(d)
    e = d[0]
    for s in range(len(d)):
        e = d[s] if s == 0 else (1.0 - KNN_EMA) * e + KNN_EMA * d[s]
        out[s] = e
    return out


def calibrate_knn(u: Tensor, groups: Tensor, score_every: int, margin: float) -> tuple[Tensor, float] | None:
    """``(coreset, threshold)`` of whitened training features ``u [N, F]`` (in time order within
    each trajectory; ``groups [N]`` the trajectory of each), or ``None`` when there are too few
    samples or too many features for the score (module docstring)."""
    n, dim = u.shape
    if dim > KNN_MAX_FEATURES or n < MIN_KNN_SAMPLES:
        return None
    ids = torch.unique(groups)
    if len(ids) < 2:  # one trajectory: hold out contiguous pieces of it
        groups = torch.arange(n) * KNN_FOLDS // n
        ids = torch.unique(groups)
    fold_of = {int(g): i % KNN_FOLDS for i, g in enumerate(ids.tolist())}
    fold = torch.tensor([fold_of[int(g)] for g in groups.tolist()])
    averages = []
    for k in range(min(KNN_FOLDS, len(ids))):
        out = fold == k
        rest = u[~out]
        core = rest[farthest_points(rest, CORESET_SIZE)]
        for g in torch.unique(groups[out]).tolist():
            seq = u[groups == g][::score_every]
            averages.append(moving_average(nearest_distance(seq, core)))
    values = torch.cat(averages)
    threshold = float(torch.quantile(values, KNN_QUANTILE)) * margin
    coreset = u[farthest_points(u, CORESET_SIZE)].contiguous()
    return coreset, max(threshold, 1e-12)


def check_coreset(coreset, threshold, feature_dim: int) -> None:
    """A ``ValueError`` naming the fix when a stored coreset does not fit its domain."""
    fix = "; record the domain again from the training data: attsolver.training.record_domain(corrector, data)"
    if not isinstance(coreset, Tensor) or coreset.ndim != 2 or coreset.shape[1] != feature_dim \
            or coreset.shape[0] < 1:
        shape = tuple(coreset.shape) if isinstance(coreset, Tensor) else type(coreset).__name__
        raise ValueError(f"the checkpoint's training domain has a coreset of shape {shape}, expected "
                         f"[M, {feature_dim}] (M >= 1) for its {feature_dim} features" + fix)
    if not bool(torch.isfinite(coreset).all()):
        raise ValueError("the checkpoint's training domain has a coreset with non-finite entries" + fix)
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"the checkpoint's training domain has a nearest-neighbour threshold {threshold!r}, "
                         "expected a finite number > 0" + fix)
