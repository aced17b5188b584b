"""``fit``'s training loss: ``"mse"``, ``"relative"`` or ``"correlation"``.

``"mse"`` (the default) averages each sample's normalised squared error ``e_i`` (a one-step
pair's, or a rollout window's, as :mod:`.trainer` describes).  ``"relative"`` divides it by the
same error of the *zero correction* (the uncorrected classical step or rollout) on that sample,

    loss_i = e_i / (z_i + floor),    floor = FLOOR_FRACTION * median_j z_j,

the median over the training samples (of the same window length), computed once.  ``e_i / z_i``
is the scale on which a corrector must beat the classical step: below 1 the corrected sample is
better than no corrector, above 1 worse.  Under ``"mse"`` a sample whose classical error is tiny
(a state near a fixed point, where the error is proportional to the distance from it) weighs
nothing, and the corrector may leave an absolute error there many times the classical one.

``"correlation"`` (rollout training only) scores each window by the mean, over its frames, of
``1 - rho``, with ``rho`` the Pearson correlation across the state's components (each divided by
the scale ``"mse"`` normalises it with) of the predicted and the observed state at that frame:

    loss_i = mean_j (1 - corr(pred_ij, obs_ij)),   0 (the same pattern) .. 2 (the opposite one).

It is the error measure of chaotic fields, whose skill is read off the time their correlation
with the truth stays above a threshold (Kochkov et al. 2021's vorticity correlation; for a
zero-mean field, such as the vorticity of a periodic flow, the Pearson correlation is that
uncentred one).  A squared error of a decorrelating rollout can be lowered by damping its small
scales towards the mean, the correlation cannot; it is blind to a change of amplitude, so a model
that drifts in amplitude is not penalised for it (the rollout's physics must hold the amplitude,
as a flux-form advection does).  A frame with a constant state has no correlation: it scores 1.

A window whose classical rollout blew up (non-finite) has ``z_i = inf``: any finite correction
beats it, and it weighs nothing; the median is over the finite ones.

**The floor.**  A sample with ``z_i = 0`` (a fixed point, an exactly integrated stretch) would
divide by zero, and samples with ``z_i`` near zero would dominate the loss: a network's error has
an absolute size it cannot go below, and a weight ``1 / z_i`` without bound spends the whole
optimisation on the few samples nearest the fixed point.  ``floor`` is ``FLOOR_FRACTION = 0.1``
of the median sample's ``z``: no sample weighs more than 11 times the median sample, and the
loss is relative for every sample whose classical error is above about a third (``sqrt(0.1)``)
of the median's in norm.  Being a fraction of the data's own median, it leaves the loss
unchanged when the states and targets are scaled by a constant.  Smaller floors were measured
and rejected on the OOD benchmark's calibration trajectories (``benchmarks/results/ood_loss.md``):
at 1e-4 and 1e-3 the corrector of the Van der Pol neural ODE was worse than classical on 16 and 7
of 100 rollouts with a median error ratio near 0.9; at 0.1 on none; at 1 (nearly the mean squared
error's weighting) on 1 again, 12.8x worse, the rollout nearest the fixed point.  On Lorenz-63
(100 epochs) 0.1 and 1 made 2 and 1 of 100 worse, the smaller floors 3.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._validate import one_of
from .targets import Prepared, batch_of

__all__ = ["LOSSES", "FLOOR_FRACTION", "check_loss", "relative_loss", "correlation_error", "RelativeWeights"]

#: the losses ``fit(loss=...)`` accepts
LOSSES = ("mse", "relative", "correlation")
#: the floor added to the zero correction's per-sample error, as a fraction of its median over
#: the training samples (module docstring: why 0.1)
FLOOR_FRACTION = 0.1
#: samples per no-grad chunk when computing the zero correction's errors
_CHUNK = 4096


def check_loss(loss: Any) -> str:
    """``loss`` if it is one of :data:`LOSSES` (the error lists them)."""
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a string, one of {', '.join(map(repr, LOSSES))}; got {type(loss).__name__}")
    return one_of("loss", loss, LOSSES)


def relative_loss(err: Tensor, zero_err: Tensor, floor: float) -> Tensor:
    """Per-sample relative losses ``err / (zero_err + floor)`` (``err``, ``zero_err``: ``[b]``)."""
    return err / (zero_err + floor)


def correlation_error(pred: Tensor, obs: Tensor) -> Tensor:
    """Each window's mean over its frames of ``1 - rho`` (module docstring): ``pred`` and ``obs``
    are ``[b, k, *state]``, already normalised per component; returns ``[b]``.  Non-finite
    predictions give a non-finite loss (``fit`` stops on it)."""
    p = pred.reshape(pred.shape[0], pred.shape[1], -1)
    q = obs.reshape(obs.shape[0], obs.shape[1], -1)
    p = p - p.mean(dim=-1, keepdim=True)
    q = q - q.mean(dim=-1, keepdim=True)
    rho = (p * q).sum(dim=-1) / (p.norm(dim=-1) * q.norm(dim=-1)).clamp_min(torch.finfo(p.dtype).tiny)
    return (1 - rho).mean(dim=1)


class RelativeWeights:
    """The zero correction's per-sample errors of the training and validation samples (one
    no-grad pass per window length, cached) and the floor, for ``loss="relative"``.

    ``objective`` is :class:`attsolver.training.loop.Objective`; its ``per_sample(kind, batch,
    None)`` is the zero correction's error of each sample, on the normalisation the training
    loss uses (so it must be called after the corrector's normalisation is set).
    """

    def __init__(self, objective, samples: dict[str, Prepared | None]):
        self.objective = objective
        self.samples = samples
        self._zero: dict[tuple[str, int], Tensor] = {}
        self._floor: dict[int, float] = {}

    def zero_errors(self, which: str, k: int) -> Tensor:
        """The zero correction's error of every sample of ``which`` (``"train"``, ``"val"``) in
        windows of ``k`` data intervals, ``[count(k)]``."""
        key = (which, k)
        if key not in self._zero:
            prep = self.samples[which]
            n = prep.count(k)
            parts = []
            with torch.no_grad():
                for s in range(0, n, _CHUNK):
                    kind, batch = batch_of(prep, torch.arange(s, min(n, s + _CHUNK)), k)
                    parts.append(self.objective.per_sample(kind, batch, None))
            z = torch.cat(parts)
            # a window whose classical rollout blew up: any finite correction beats it (weight 0)
            self._zero[key] = torch.where(torch.isfinite(z), z, torch.full_like(z, math.inf))
        return self._zero[key]

    def floor(self, k: int) -> float:
        """``FLOOR_FRACTION`` times the median zero-correction error of the training samples
        (those whose classical rollout stayed finite)."""
        if k not in self._floor:
            z = self.zero_errors("train", k)
            z = z[torch.isfinite(z)]
            if not len(z):
                raise ValueError(
                    "loss='relative' divides by the uncorrected step's error, and the classical rollout is not "
                    "finite on every training window: the step is unstable on this data; use a smaller step "
                    "(or fewer rollout_steps) or loss='mse'"
                )
            median = float(z.median())
            if not median > 0:
                median = float(z.max())
            if not median > 0:
                raise ValueError(
                    "loss='relative' divides by the uncorrected step's error, which is zero on every training "
                    "sample (the classical method is exact on this data): nothing to correct; use loss='mse' "
                    "or a coarser step"
                )
            self._floor[k] = FLOOR_FRACTION * median
        return self._floor[k]

    def weigh(self, err: Tensor, which: str, idx: Tensor, k: int) -> Tensor:
        """The relative losses of the samples ``idx`` of ``which`` from their errors ``err``."""
        zero = self.zero_errors(which, k)
        return relative_loss(err, zero[idx.to(zero.device)], self.floor(k))

    def zero_loss(self, which: str, k: int) -> float:
        """The zero correction's mean relative loss on ``which`` (what "learned nothing" is)."""
        z = self.zero_errors(which, k)
        return float(relative_loss(z, z, self.floor(k)).mean())
