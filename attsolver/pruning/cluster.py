"""Criteria clustering: which criteria rank a layer's filters alike?

Per pruning group, the rank correlation (Spearman's ρ or Kendall's τ, from ``scipy.stats``)
between every two criteria's channel scores; the layers' matrices are averaged, turned into
the distance ``1 - r``, and clustered hierarchically (``scipy.cluster.hierarchy``, average
linkage, cut at ``threshold``).  Each cluster is represented by its *medoid*: the member
with the highest mean correlation to the cluster's other members (ties: the earlier name).
Blending one representative per cluster spends the calibration on criteria that disagree.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["rank_correlation", "correlation_matrices", "cluster_criteria", "CriteriaClusters", "METHODS"]

METHODS = ("spearman", "kendall")


def rank_correlation(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, method: str = "spearman") -> float:
    """Spearman's ρ or Kendall's τ-b of two score vectors; 0 where one is constant (no
    ranking to agree with) and NaN never."""
    from scipy import stats  # lazy: scipy.stats takes ~0.6 s to import; only this correlation needs it

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"score vectors must have the same length, got {a.size} and {b.size}")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = stats.spearmanr(a, b).statistic if method == "spearman" else stats.kendalltau(a, b).statistic
    return float(r) if math.isfinite(r) else 0.0


def correlation_matrices(scores: Mapping[str, Mapping[str, np.ndarray]], criteria: Sequence[str],
                         method: str = "spearman") -> tuple[list[str], np.ndarray]:
    """``(layers, R)`` with ``R[l, i, j]`` the rank correlation of criteria ``i`` and ``j`` on
    layer ``layers[l]``; only the layers every criterion scored (see
    :func:`attsolver.pruning.layer_scores`).  ``R[l, i, i] = 1``."""
    criteria = list(criteria)
    layers = [name for name, row in scores.items() if all(c in row for c in criteria)]
    if not layers:
        raise ValueError(f"no layer was scored by all of {criteria}; drop a criterion that scores few layers")
    k = len(criteria)
    out = np.empty((len(layers), k, k))
    for li, name in enumerate(layers):
        row = scores[name]
        for i in range(k):
            out[li, i, i] = 1.0
            for j in range(i + 1, k):
                out[li, i, j] = out[li, j, i] = rank_correlation(row[criteria[i]], row[criteria[j]], method)
    return layers, out


@dataclass
class CriteriaClusters:
    """The outcome of :func:`cluster_criteria`.

    Attributes:
        criteria: the names, in the order of the matrices.
        method: ``"spearman"`` or ``"kendall"``.
        layers: the layers the correlations were computed on.
        per_layer: ``[layers, k, k]`` rank correlations.
        mean: ``[k, k]`` their mean over layers.
        labels: cluster label per criterion (1-based, as scipy's ``fcluster``).
        clusters: the clusters, each a list of names, ordered by their first member.
        representatives: one name per cluster (the medoid).
    """

    criteria: list[str]
    method: str
    layers: list[str]
    per_layer: np.ndarray
    mean: np.ndarray
    labels: list[int]
    clusters: list[list[str]] = field(default_factory=list)
    representatives: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"criteria": self.criteria, "method": self.method, "layers": self.layers,
                "mean": np.round(self.mean, 6).tolist(), "labels": self.labels, "clusters": self.clusters,
                "representatives": self.representatives}


def cluster_criteria(scores: Mapping[str, Mapping[str, np.ndarray]], criteria: Sequence[str] | None = None, *,
                     method: str = "spearman", threshold: float = 0.3) -> CriteriaClusters:
    """Cluster criteria by the mean over layers of their rank correlation.

    Args:
        scores: ``{layer: {criterion: scores}}`` from :func:`attsolver.pruning.layer_scores`.
        criteria: which criteria (default: those that scored the first layer).
        method: ``"spearman"`` or ``"kendall"``.
        threshold: cut the average-linkage tree at distance ``1 - r`` = ``threshold``:
            criteria whose mean correlation exceeds ``1 - threshold`` end up together.
            In [0, 2].
    """
    from scipy.cluster.hierarchy import fcluster, linkage  # lazy: ~0.25 s to import; only the clustering needs it
    from scipy.spatial.distance import squareform  # lazy: ~0.25 s to import; only the clustering needs it

    if not scores:
        raise ValueError("scores is empty: no layer was scored")
    if criteria is None:
        criteria = list(next(iter(scores.values())))
    criteria = list(criteria)
    if not criteria:
        raise ValueError("criteria must name at least one criterion")
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 2.0):
        raise ValueError(f"threshold must be a distance 1 - r in [0, 2], got {threshold!r}")
    layers, per_layer = correlation_matrices(scores, criteria, method)
    mean = per_layer.mean(axis=0)
    k = len(criteria)
    if k == 1:
        labels = [1]
    else:
        dist = np.clip(1.0 - mean, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        dist = 0.5 * (dist + dist.T)
        tree = linkage(squareform(dist, checks=False), method="average")
        labels = [int(v) for v in fcluster(tree, t=threshold, criterion="distance")]
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    ordered = sorted(groups.values(), key=lambda idx: idx[0])
    clusters, reps = [], []
    for idx in ordered:
        clusters.append([criteria[i] for i in idx])
        if len(idx) == 1:
            reps.append(criteria[idx[0]])
            continue
        sub = mean[np.ix_(idx, idx)]
        avg_other = (sub.sum(axis=1) - 1.0) / (len(idx) - 1)
        reps.append(criteria[idx[int(np.argmax(avg_other))]])  # argmax: first of equal maxima
    relabel = {lab: n + 1 for n, lab in enumerate(sorted(groups, key=lambda lab: groups[lab][0]))}
    return CriteriaClusters(criteria, method, layers, per_layer, mean, [relabel[v] for v in labels],
                            clusters, reps)
