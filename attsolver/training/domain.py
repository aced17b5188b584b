"""Record a corrector's training domain (:class:`~attsolver.integrate.guard.TrainingDomain`) from
trajectories: ``fit`` calls :func:`record_domain` at its end; a corrector saved before domains
existed gets one from its training data without retraining."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validate import finite_number
from ..correctors import Corrector, InterpolationHost
from ..integrate.guard import TrainingDomain, guard_features
from ..integrate.guard_probe import PROBE_RTOL, PROBES
from .arguments import as_dataset, right_hand_side
from .targets import classical_steps

__all__ = ["record_domain", "DEFAULT_DOMAIN_SAMPLES"]

#: at most this many observed states (drawn with a fixed seed) make the domain's statistics
DEFAULT_DOMAIN_SAMPLES = 20000


@torch.no_grad()
def record_domain(corrector: Corrector, data: Any, *, f: Any = None, max_samples: int = DEFAULT_DOMAIN_SAMPLES,
                  distance_margin: float = 1.5, ratio_margin: float = 2.0, knn_margin: float = 1.0,
                  seed: int = 0, probe_rtol: float | None = PROBE_RTOL) -> TrainingDomain:
    """Set ``corrector.domain`` from the states of ``data`` and return it.

    Every observed state ``y_n`` but the last of each trajectory (at most ``max_samples`` of
    them per data set, a seeded draw) is advanced by one classical step ``h =
    corrector.step_size``; the domain records the features ``(y_n, dy_n / h)`` (mean,
    whitening, ranges, largest squared Mahalanobis distance), the correction's relative size
    ``|C| / |dy|`` (quantiles), the horizon ``t[-1] - t[0]`` (the longest) and the step.  The
    thresholds a guard uses are the training maxima times ``distance_margin`` (on ``d^2``) and
    ``ratio_margin``.  With at most ``KNN_MAX_FEATURES`` features
    (:mod:`attsolver.integrate.guard_knn`) it also keeps a farthest-point coreset of the whitened
    features and the threshold of their nearest-neighbour distance's moving average: its
    ``KNN_QUANTILE`` quantile on held-out trajectories (4 folds of whole trajectories) times
    ``knn_margin``.

    Args:
        corrector: a trained corrector (left in eval mode).
        data: the trajectories it was trained on (a :class:`~attsolver.data.TrajectoryDataset`
            or an HDF5 path), or a list of them (e.g. the training set and further
            in-distribution trajectories on another time grid: more trajectories sample the
            training manifold more densely and sharpen the nearest-neighbour score).
        f: the right-hand side; default the data's built-in system.
        probe_rtol: the tolerance of the right-hand-side probe
            (:mod:`attsolver.integrate.guard_probe`): the domain keeps ``PROBES`` states of the
            first data set and ``f`` there, and a guarded solve whose ``f`` does not reproduce
            those values to this relative difference is outside the domain from step 0.
            ``None``: keep no probes (the feature scores and the system check alone).
    """
    sets = [as_dataset(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
    if not sets:
        raise ValueError("data is an empty list; give the training trajectories")
    for name, v in (("distance_margin", distance_margin), ("ratio_margin", ratio_margin), ("knn_margin", knn_margin)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 1):
            raise ValueError(f"{name} must be a finite number >= 1, got {v!r}")
    if probe_rtol is not None:
        finite_number("probe_rtol", probe_rtol, low=0.0, low_open=True, why=" (or None: no right-hand-side probe)",
                      type_error=False)
    pieces = [_samples(corrector, d, f, max_samples, seed) for d in sets]
    offset, groups = 0, []
    for _, _, g, _, _ in pieces:  # trajectories of different sets are different trajectories
        groups.append(g + offset)
        offset += int(g.max()) + 1 if len(g) else 0
    domain = TrainingDomain.from_samples(
        torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces]),
        horizon=max(p[3] for p in pieces), step_size=corrector.step_size, distance_margin=distance_margin,
        ratio_margin=ratio_margin, groups=torch.cat(groups), knn_margin=knn_margin)
    if pieces[0][4] is not None and probe_rtol is not None:  # the right-hand-side probe: the first data set's states
        domain = domain.with_probes(*pieces[0][4], probe_rtol)
    corrector.domain = domain
    if isinstance(corrector, InterpolationHost):  # the learned part inside f has a domain of its own
        corrector.record_interpolation_domain(torch.cat([d.y.reshape(-1, *d.y.shape[2:]) for d in sets]))
    return domain


def _samples(corrector: Corrector, data, f, max_samples: int, seed: int):
    """``(features [N, 2 D], ratios [N], trajectory of each [N], horizon)`` of one data set."""
    if len(data.t) < 2:
        raise ValueError("data needs at least 2 times per trajectory to record a training domain")
    f, autonomous = right_hand_side(corrector, data, None, f, None)
    h = corrector.step_size
    dtype, device = corrector.dtype, corrector.out_scale.device
    # the classical step runs in the data's dtype, as fit's targets do (f may be a float64
    # module while the corrector is float32); features are then cast to the corrector's dtype
    y = data.y[:, :-1].to(device=device)
    state_shape = tuple(y.shape[2:])
    dim = math.prod(state_shape)
    # a seeded draw of the states, at most max_samples and ~16 MB of features (a 2-D field's
    # 8192 features keep ~250 states)
    n_all = y.shape[0] * y.shape[1]
    n_keep = min(n_all, max_samples, max(256, 2_000_000 // (2 * dim)))
    pick = torch.randperm(n_all, generator=torch.Generator().manual_seed(seed))[:n_keep].sort().values
    starts = data.t[:-1].to(dtype).expand(y.shape[0], -1).reshape(-1)[pick].to(device)
    if autonomous:  # one batched step of the drawn states
        y = y.reshape(n_all, *state_shape)[pick.to(device)]
        y1 = classical_steps(corrector.method, f, y[:, None], [0.0], h, 1, True)[:, 0]
    else:  # each start time its own solve: step every state, then draw
        y1 = classical_steps(corrector.method, f, y, data.t[:-1].numpy(), h, 1, False)
        y = y.reshape(n_all, *state_shape)[pick.to(device)]
        y1 = y1.reshape(n_all, *state_shape)[pick.to(device)]
    keep = torch.isfinite(y1.reshape(len(y1), -1)).all(1)
    probes = _probes(f, y[keep], starts[keep], autonomous, state_shape)
    y, y1 = y.to(dtype), y1.to(dtype)
    # the trajectory of each drawn state (``pick`` is sorted: time order within each), for the
    # nearest-neighbour threshold's held-out trajectories
    groups = (pick // (data.y.shape[1] - 1))[keep.cpu()]
    y, y1, starts = y[keep], y1[keep], starts[keep]
    dy = y1 - y
    was_training = corrector.training
    corrector.eval()
    c = corrector(starts, y, dy, h)
    corrector.train(was_training)
    ratios = torch.linalg.vector_norm(c.reshape(-1, dim), dim=1) / torch.linalg.vector_norm(
        dy.reshape(-1, dim), dim=1).clamp_min(torch.finfo(dy.dtype).tiny)
    return guard_features(y, dy, h, dim), ratios, groups, float(data.t[-1] - data.t[0]), probes


def _probes(f, y, starts, autonomous: bool, state_shape: tuple[int, ...]) -> tuple | None:
    """``(probe_y [P, D], probe_f [P, D], probe_t)`` in the data's dtype: at most ``PROBES``
    drawn states spread over the draw (which is in trajectory, then time order), and ``f`` there.
    An autonomous ``f`` is evaluated at ``t = 0``; otherwise the probes share one observed time
    (the guard evaluates them in one call): the time with the most drawn states."""
    if len(y) == 0:
        return None
    if autonomous:
        t0, rows = 0.0, torch.arange(len(y))
    else:
        times, counts = torch.unique(starts.cpu(), return_counts=True)
        t0 = float(times[int(torch.argmax(counts))])
        rows = (starts.cpu() == t0).nonzero().squeeze(1)
    pick = rows[torch.linspace(0, len(rows) - 1, min(PROBES, len(rows))).round().long()].to(y.device)
    yp = y[pick]
    fp = f(torch.tensor(t0, dtype=y.dtype, device=y.device), yp.reshape(len(yp), *state_shape))  # record_domain: no_grad
    return yp.reshape(len(yp), -1), fp.reshape(len(yp), -1).to(yp.dtype), t0
