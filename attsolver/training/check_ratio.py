"""Calibrate the guard's a-posteriori check (``solve(..., guard_check_every=k)``) on held-out
in-distribution trajectories.

The check distrusts a trajectory when its guarded solve's distance to a refined classical
shadow, summed over the check's windows, exceeds ``ratio`` times the classical shadow's
(:mod:`attsolver.integrate.guard`).  With ``ratio = 1`` a corrector that is better than the
classical solver over the horizon can still lose a window or two: on Lorenz-63 (every 32 steps)
41 of 100 in-distribution rollouts were flagged.  The calibrated ratio is the smallest that
flags at most a chosen fraction ``rate`` of in-distribution trajectories, the feature scores'
flags included: each calibration trajectory's largest summed-error ratio over its windows
(``GuardReport.check_ratio``; infinite for a trajectory the feature scores flag, which is flagged
at any ratio), and their ``ceil(n (1 - rate))``-th smallest value (a trajectory is flagged when
its ratio is strictly above the threshold, so at most ``n - ceil(n (1 - rate)) <= rate n`` of
them are).  Like a
conformal bound, the rate holds on fresh trajectories from the same distribution in expectation
(up to ``1 / (n + 1)``), not on every draw.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from .._validate import finite_number, positive_int
from ..correctors import Corrector
from ..integrate import solve
from ..integrate.guard import POSTERIORI_WINDOW, OutOfDomainWarning, check_ratio_pairs, domain_of
from .arguments import as_dataset, right_hand_side

__all__ = ["calibrate_check", "set_check_ratio", "check_ratio_threshold", "DEFAULT_CHECK_RATE"]

#: the fraction of in-distribution trajectories the calibrated check may flag (issue 23's target)
DEFAULT_CHECK_RATE = 0.05


def check_ratio_threshold(ratios: Tensor, rate: float) -> float:
    """The smallest threshold ``r`` with ``#{ratios > r} <= rate * n``: the
    ``ceil(n (1 - rate))``-th smallest of the per-trajectory ratios ``[n]`` (NaN, a trajectory
    whose check never had a nonzero error, counts as 0)."""
    v = torch.nan_to_num(torch.as_tensor(ratios, dtype=torch.float64).reshape(-1), nan=0.0)
    k = math.ceil(round(len(v) * (1.0 - rate), 9))
    return float(v.sort().values[max(k, 1) - 1])


def set_check_ratio(corrector: Corrector, check_every: int, ratio: float) -> None:
    """Store the a-posteriori check's ratio for ``guard_check_every=check_every`` on the
    corrector's training domain (saved with its checkpoint); ``ratio`` a finite number > 0."""
    every = positive_int("check_every", check_every)
    r = finite_number("ratio", ratio, low=0.0, low_open=True,
                      why=" (the check distrusts a trajectory whose guarded error exceeds ratio times the "
                          "classical one)")
    domain = domain_of(corrector)
    pairs = dict(domain.check_ratios)
    pairs[every] = r
    corrector.domain = domain.with_check_ratios(check_ratio_pairs(pairs.items()))


@torch.no_grad()
def calibrate_check(corrector: Corrector, data: Any, *, check_every: int, rate: float = DEFAULT_CHECK_RATE,
                    f: Any = None, step_size: float | None = None) -> float:
    """Calibrate the check's ratio for ``guard_check_every=check_every`` on in-distribution
    trajectories ``data`` (not the training ones: held out), store it on the corrector's domain
    (:func:`set_check_ratio`) and return it.

    Args:
        corrector: a corrector with a training domain (``fit`` records one).
        data: held-out in-distribution trajectories (a ``TrajectoryDataset`` or an HDF5 path),
            at least ``ceil(1 / rate)`` of them.
        check_every: the check's interval the ratio is for.
        rate: the fraction of such trajectories the guard may flag, in (0, 1): the check's flags
            and the feature scores' together (a trajectory the scores flag is flagged whatever
            the ratio, so the check may add at most ``rate * n`` minus their count).
        f: the right-hand side; default the data's built-in system.
        step_size: the solve's step; default the domain's (the training step).
    """
    data = as_dataset(data)
    every = positive_int("check_every", check_every)
    rate = finite_number("rate", rate, low=0.0, high=1.0, low_open=True, high_open=True)
    n_min = math.ceil(round(1.0 / rate, 9))
    if len(data) < n_min:
        raise ValueError(f"a calibration set of {len(data)} trajectories is too small for rate={rate:g}: "
                         f"give at least ceil(1/rate) = {n_min}, or a larger rate")
    domain = domain_of(corrector)
    f, _ = right_hand_side(corrector, data, None, f, None)
    h = domain.step_size if step_size is None else step_size
    kw = dict(step_size=h, corrector=corrector, guard="warn", return_stats=True, options={"check_finite": False})
    with warnings.catch_warnings():  # the feature scores' verdicts are counted, not warned about
        warnings.simplefilter("ignore", OutOfDomainWarning)
        _, stats = solve(f, data.y[:, 0], data.t, guard_check_every=every, **kw)
        _, scored = solve(f, data.y[:, 0], data.t, **kw)  # the feature scores' (and system checks') flags alone
    ratios = stats.guard.check_ratio
    if ratios is None:
        window = max(1, int(POSTERIORI_WINDOW * every))
        raise ValueError(f"the check never ran: data spans fewer than the {window} steps of {h:g} of one window of "
                         f"check_every={every} (POSTERIORI_WINDOW x check_every); give longer trajectories or a "
                         "smaller check_every")
    v = torch.nan_to_num(torch.tensor(ratios, dtype=torch.float64), nan=0.0)
    flagged = torch.tensor(scored.guard.flagged, dtype=torch.bool)
    if int(flagged.sum()) > rate * len(v):  # the scores alone flag more than the rate: the check adds none
        warnings.warn(f"the guard's feature scores alone flag {int(flagged.sum())} of {len(v)} calibration "
                      f"trajectories, more than rate={rate:g}: the check's ratio is set to flag none beyond them "
                      "(the largest calibration ratio); the data may not be in distribution, or the domain's "
                      "margins too tight (record_domain)", UserWarning, stacklevel=2)
        ratio = float(v.max())
    else:  # a trajectory the scores flag is flagged at any ratio: it uses up the rate first
        ratio = check_ratio_threshold(torch.where(flagged, torch.full_like(v, math.inf), v), rate)
    ratio = max(ratio, 1e-12)
    set_check_ratio(corrector, every, ratio)
    return ratio
