"""The out-of-distribution guard of a corrected solve: the training domain a corrector
remembers (:class:`TrainingDomain`), the per-step score against it, and the guarded loop.

A corrected step is ``y_{n+1} = y* + C(t_n, y_n, dy_n, h)``.  The guard scores the steps, per
sample, by three cheap numbers:

* the squared Mahalanobis distance of the step's features ``z = (y_n, dy_n / h)`` (flattened)
  to the features seen in training, ``d^2 = |W^T (z - mu)|^2`` with ``W`` the whitening of
  the training covariance (per-feature scaling only when ``z`` has more than
  :data:`MAX_FULL_COVARIANCE` entries), folded per step size into two matrix products
  (elementwise products with per-feature scaling);
* where the domain keeps a coreset (at most ``KNN_MAX_FEATURES`` features), the moving average
  of the whitened features' distance to the nearest training feature (:mod:`.guard_knn`): the
  features lie on a thin curved manifold that the ellipsoid cannot resolve;
* the correction's size relative to the step, ``r = |C| / |dy|``, against its training
  quantiles.

A step is *flagged* when ``d^2`` exceeds :attr:`TrainingDomain.distance_threshold`, the
moving average exceeds :attr:`TrainingDomain.knn_threshold` or ``r`` exceeds
:attr:`TrainingDomain.ratio_threshold`, or when the corrected state is not finite.  The score
runs on every :data:`SCORE_EVERY`-th step
(the first included) and its verdict holds until the next score, the nearest-neighbour part on
every ``KNN_EVERY``-th score only, which keeps the guard's cost to a few per cent of the
corrected step.  Without the a-posteriori check the same scores run after the last step,
batched over a record of the scored steps' features (:mod:`.guard_batch`), with the same
verdicts: under ``"warn"`` always, under ``"fallback"`` without autograd, its flagged samples
then solved again from their first flagged step (the per-step fallback's result).  With ``guard_check_every=k`` the guard also checks
from the first step and every ``k`` steps after it a posteriori: the corrected and the classical step against the classical step
refined (error at most 1/16 of the step's), both run as shadow solves from the same state for
:data:`POSTERIORI_WINDOW` ``* k`` steps beside the guarded one; a sample whose guarded solve ends
further from the refined shadow than the classical shadow does, summed over the windows so far
(times the domain's ratio calibrated for ``k``, :func:`attsolver.training.calibrate_check`, else
:data:`POSTERIORI_RATIO`), is flagged from then on (the corrector has been seen to do
worse than no corrector); under ``"fallback"`` it also takes the refined shadow's state at the
window's end and at the outputs stored inside that window (the window's corrected steps are
undone, and its outputs, which the check has just judged, are the refined shadow's).  With ``guard="warn"`` the
solve goes on and one warning names the first flagged time and trajectory; with
``guard="fallback"`` a flagged sample's step is recomputed by the classical method with
:data:`FALLBACK_SUBSTEPS` substeps of ``h / FALLBACK_SUBSTEPS`` (no correction), for the flagged
samples only, and for the rest of the solve (:data:`STICKY_FALLBACK`).  Before the first step,
the system check (:mod:`.guard_system`) compares a built-in system ``f`` with the one the
corrector's training data recorded: another system or parameter flags every sample from step 0
(``"fallback"``: the classical refined step throughout).  The unguarded loop
(:func:`attsolver.integrate.loop.fixed_loop`) is untouched: ``guard=None`` costs nothing.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from . import guard_batch
from .guard_knn import KNN_EMA, KNN_EVERY, calibrate_knn, check_coreset
from .guard_probe import PROBE_RTOL, check_probes, probe_difference, probe_sentence
from .guard_system import system_compared, system_mismatch
from .loop import Outputs, StepPlan

__all__ = ["TrainingDomain", "GuardReport", "OutOfDomainWarning", "guarded_loop", "GUARD_MODES", "check_guard_request",
           "FALLBACK_SUBSTEPS", "MAX_FULL_COVARIANCE", "guard_features", "domain_of", "SCORE_EVERY",
           "POSTERIORI_EVERY", "POSTERIORI_RATIO", "POSTERIORI_WINDOW", "STICKY_FALLBACK", "check_ratio_pairs",
           "CHECK_SCHEDULE"]

GUARD_MODES = ("warn", "fallback")
#: a fallback step is this many classical substeps of ``h / FALLBACK_SUBSTEPS``
FALLBACK_SUBSTEPS = 4
#: above this many features the distance uses per-feature scaling, not the full covariance
MAX_FULL_COVARIANCE = 256
#: ``solve(..., guard_check_every=k)``: every ``k`` steps a window of the guarded solve is
#: checked a posteriori against a classical and a refined shadow solve (see
#: :data:`POSTERIORI_WINDOW`, :data:`POSTERIORI_RATIO`).  Off by default; the shadows cost
#: (1 + 2) RK4 steps of ``f`` per window step, half the steps: 1.5x more ``f`` evaluations
POSTERIORI_EVERY = 16
#: the a-posteriori check's window is this fraction of ``guard_check_every`` (at least one step):
#: that many steps of a classical and a refined shadow solve beside the guarded one, from the same
#: state.  Long windows matter: on Lorenz-63 (h = 0.02) a trained corrector's guarded solve is
#: further from the refined one than the classical solve on 52 % of single steps and 48 % of
#: 8-step windows, but on 19 % of 32-step windows, while its error at the horizon is 4x smaller
POSTERIORI_WINDOW = 0.5
#: a sample is distrusted when its guarded solve's distance to the refined shadow at the windows'
#: ends, summed over the windows so far, exceeds this times the classical shadow's: the default,
#: for an interval the domain has no calibrated ratio for (:func:`attsolver.training.calibrate_check`
#: stores one: on Lorenz-63 at 32 steps, 1.0 flags 41 of 100 in-distribution rollouts)
POSTERIORI_RATIO = 1.0
#: the a-posteriori check's schedule: its first window opens at the solve's first step, then one
#: every ``guard_check_every`` steps (a start outside the domain is judged at once, and a solve
#: shorter than ``guard_check_every`` steps is checked too).  Saved with a domain's calibrated
#: ratios; a checkpoint's ratios from the earlier schedule (the first window after
#: ``guard_check_every`` steps) are dropped on load, with a warning
CHECK_SCHEDULE = "from_start"
#: the feature score runs on every this many steps (its verdict holds until the next): the
#: score is about ten small tensor operations, a few per cent of a small network's step, and the
#: features move little in a few steps
SCORE_EVERY = 4
#: under ``"fallback"``, a flagged sample stays on the refined classical step for the rest of the
#: solve: an error made outside the domain cannot be undone by later corrected steps, and
#: switching back re-exposes the sample to a corrector that has just been seen to be off its
#: domain (``False``: each score's verdict holds until the next score only)
STICKY_FALLBACK = True
#: quantiles of ``|C| / |dy|`` that a domain records
RATIO_QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)


class OutOfDomainWarning(UserWarning):
    """A guarded solve (``guard="warn"``) left the corrector's training domain."""


def guard_features(y: Tensor, dy: Tensor, h: float, state_dim: int) -> Tensor:
    """The guard's features ``[B, 2 D]``: the state and the classical rate ``dy / h``, flattened
    per sample (``y``, ``dy``: ``[*batch, *state]`` with ``D = state_dim`` entries per state)."""
    return torch.cat((y.reshape(-1, state_dim), dy.reshape(-1, state_dim) / h), dim=1)


@dataclass(frozen=True, eq=False)
class TrainingDomain:
    """What a corrector saw in training (``fit`` records it; so does
    :func:`attsolver.training.record_domain` from data, for an older checkpoint).

    Attributes:
        mean: feature mean ``[F]`` (``F = 2 D``: the state and ``dy / h``), float64.
        whiten: ``[F, F]`` with ``W^T Sigma W = I`` (full covariance), or ``[F]`` per-feature
            ``1 / std`` when ``F > MAX_FULL_COVARIANCE``.
        low, high: per-feature ranges ``[F]``.
        distance_max: the largest training ``d^2``; ``distance_threshold`` is it times the margin.
        ratio_quantiles: ``|C| / |dy|`` at :data:`RATIO_QUANTILES` over the training steps.
        ratio_threshold: flag a step whose ``|C| / |dy|`` is above this.
        horizon: the span of the training trajectories (time units); ``step_size``: the step.
        n_samples: training steps the statistics come from.
        coreset: ``[M, F]`` whitened training features (farthest-point sampled) for the
            nearest-neighbour score (:mod:`.guard_knn`), or ``None`` (more than
            ``KNN_MAX_FEATURES`` features, or a domain recorded before the coreset existed: the
            Mahalanobis score alone, as before).
        knn_threshold: flag a sample whose moving average of the distance to the coreset
            exceeds this (``None`` with no coreset).
        check_ratios: ``((check_every, ratio), ...)``: the a-posteriori check's calibrated ratio
            per interval (:func:`attsolver.training.calibrate_check`); an interval not listed
            uses :data:`POSTERIORI_RATIO`.
        probe_y, probe_f: ``[P, D]`` float64: training states and the right-hand side there at
            time ``probe_t``, for the right-hand-side probe (:mod:`.guard_probe`); ``None`` for a
            domain recorded before probes existed.
        probe_rtol: the probe's tolerance on its largest relative difference.
    """

    mean: Tensor
    whiten: Tensor
    low: Tensor
    high: Tensor
    distance_max: float
    distance_threshold: float
    ratio_quantiles: tuple[float, ...]
    ratio_threshold: float
    horizon: float
    step_size: float
    n_samples: int
    coreset: Tensor | None = None
    knn_threshold: float | None = None
    check_ratios: tuple[tuple[int, float], ...] = ()
    probe_y: Tensor | None = None
    probe_f: Tensor | None = None
    probe_t: float = 0.0
    probe_rtol: float = PROBE_RTOL
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def feature_dim(self) -> int:
        return int(self.mean.numel())

    @classmethod
    def from_samples(cls, features: Tensor, ratios: Tensor, *, horizon: float, step_size: float,
                     distance_margin: float = 1.5, ratio_margin: float = 2.0, groups: Tensor | None = None,
                     knn_margin: float = 1.0) -> TrainingDomain:
        """The domain of training features ``[N, F]`` and correction ratios ``[N]``; the
        Mahalanobis and ratio thresholds are the training maxima times the margins.  With at
        most ``KNN_MAX_FEATURES`` features it also keeps a coreset and a nearest-neighbour
        threshold calibrated on held-out trajectories (:func:`.guard_knn.calibrate_knn`;
        ``groups [N]``: the trajectory of each sample, the samples in time order within each;
        ``None``: one trajectory)."""
        z = features.detach().double().cpu()
        n, dim = z.shape
        if n < 2:
            raise ValueError(f"a training domain needs at least 2 samples, got {n}")
        mean = z.mean(0)
        zc = z - mean
        if dim <= MAX_FULL_COVARIANCE:
            cov = zc.T @ zc / (n - 1)
            # a ridge of 1e-9 of the mean variance: a feature constant in training (a fixed
            # parameter component) still gets a finite, very large distance when it moves
            ridge = 1e-9 * float(cov.diagonal().mean()) + 1e-300
            chol = torch.linalg.cholesky(cov + ridge * torch.eye(dim, dtype=cov.dtype))
            whiten = torch.linalg.inv(chol).T.contiguous()  # (z - mu) @ W has identity covariance
        else:
            whiten = 1.0 / zc.std(0).clamp_min(1e-12 * float(zc.abs().max()) + 1e-300)
        d2 = _distance2(zc, whiten)
        r = ratios.detach().double().cpu().reshape(-1)
        r = r[torch.isfinite(r)]
        quant = tuple(float(v) for v in torch.quantile(r, torch.tensor(RATIO_QUANTILES, dtype=r.dtype))) \
            if len(r) else (0.0,) * len(RATIO_QUANTILES)
        dmax = float(d2.max())
        u = zc @ whiten if whiten.ndim == 2 else zc * whiten
        knn = calibrate_knn(u, torch.zeros(n, dtype=torch.long) if groups is None else groups.cpu(),
                            SCORE_EVERY * KNN_EVERY, knn_margin)
        return cls(mean, whiten, z.min(0).values, z.max(0).values, dmax, dmax * distance_margin, quant,
                   max(quant[-1], 1e-12) * ratio_margin, float(horizon), float(step_size), int(n),
                   *(knn if knn is not None else (None, None)))

    def to_dict(self) -> dict[str, Any]:
        """Plain types and tensors (a checkpoint loads it with ``weights_only=True``)."""
        return {"mean": self.mean, "whiten": self.whiten, "low": self.low, "high": self.high,
                "distance_max": self.distance_max, "distance_threshold": self.distance_threshold,
                "ratio_quantiles": list(self.ratio_quantiles), "ratio_threshold": self.ratio_threshold,
                "horizon": self.horizon, "step_size": self.step_size, "n_samples": self.n_samples,
                # only when recorded: a domain without them reads as before (Mahalanobis score alone)
                **({} if self.coreset is None else {"coreset": self.coreset, "knn_threshold": self.knn_threshold}),
                **({"check_ratios": [[k, r] for k, r in self.check_ratios], "check_schedule": CHECK_SCHEDULE}
                   if self.check_ratios else {}),
                **({} if self.probe_y is None else {"probe_y": self.probe_y, "probe_f": self.probe_f,
                                                    "probe_t": self.probe_t, "probe_rtol": self.probe_rtol})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingDomain:
        try:
            domain = cls(*(d[k].double() for k in ("mean", "whiten", "low", "high")),
                         float(d["distance_max"]), float(d["distance_threshold"]),
                         tuple(float(v) for v in d["ratio_quantiles"]), float(d["ratio_threshold"]),
                         float(d["horizon"]), float(d["step_size"]), int(d["n_samples"]))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"the checkpoint's training domain is damaged ({e!r})") from None
        if d.get("check_ratios") and d.get("check_schedule") != CHECK_SCHEDULE:
            warnings.warn("the checkpoint's a-posteriori check ratios were calibrated on an earlier schedule of the "
                          "check (its first window after guard_check_every steps; now from the first step) and are "
                          "dropped: calibrate them again with attsolver.training.calibrate_check(corrector, data, "
                          "check_every=...)", UserWarning, stacklevel=2)
        elif d.get("check_ratios"):
            domain = replace(domain, check_ratios=check_ratio_pairs(d["check_ratios"]), _cache={})
        if any(k in d for k in ("probe_y", "probe_f")):  # absent: recorded before probes existed
            domain = domain.with_probes(d.get("probe_y"), d.get("probe_f"), d.get("probe_t"), d.get("probe_rtol"))
        if d.get("coreset") is None and d.get("knn_threshold") is None:
            return domain  # recorded before the coreset existed, or too many features for it
        coreset, threshold = d.get("coreset"), d.get("knn_threshold")
        check_coreset(coreset, threshold, domain.feature_dim)
        return replace(domain, coreset=coreset.double(), knn_threshold=float(threshold), _cache={})

    def with_probes(self, probe_y: Tensor | None, probe_f: Tensor | None, probe_t: float = 0.0,
                    probe_rtol: float = PROBE_RTOL) -> TrainingDomain:
        """This domain with the right-hand-side probe's states ``[P, D]``, the values of ``f``
        there, their time and the tolerance (checked; ``probe_y=None``: without the probe)."""
        if probe_y is None and probe_f is None:
            return replace(self, probe_y=None, probe_f=None, _cache={})
        check_probes(probe_y, probe_f, probe_t, probe_rtol, self.feature_dim // 2)
        return replace(self, probe_y=probe_y.detach().double().cpu(), probe_f=probe_f.detach().double().cpu(),
                       probe_t=float(probe_t), probe_rtol=float(probe_rtol), _cache={})

    def with_check_ratios(self, pairs: tuple[tuple[int, float], ...]) -> TrainingDomain:
        """This domain with the a-posteriori check's calibrated ratios ``pairs`` (checked)."""
        return replace(self, check_ratios=check_ratio_pairs(pairs), _cache={})

    def check_ratio(self, check_every: int) -> float:
        """The a-posteriori check's ratio for ``check_every``: the calibrated one, else
        :data:`POSTERIORI_RATIO`."""
        return dict(self.check_ratios).get(int(check_every), POSTERIORI_RATIO)

    def _on(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, whiten)`` in ``like``'s dtype and device (cached)."""
        key = (like.dtype, like.device)
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = (self.mean.to(like), self.whiten.to(like))
        return got

    def distance2(self, z: Tensor) -> Tensor:
        """Squared Mahalanobis distance ``[B]`` of features ``z [B, F]`` to the training mean."""
        mean, whiten = self._on(z)
        return _distance2(z - mean, whiten)


def _distance2(zc: Tensor, whiten: Tensor) -> Tensor:
    u = zc @ whiten if whiten.ndim == 2 else zc * whiten
    return u.square().sum(1)


def check_guard_request(guard: str, options: Any, event: Any) -> None:
    """What every guarded solve needs, a corrector's or a learned interpolation's: a known mode,
    no event, the eager loop."""
    if guard not in GUARD_MODES:
        raise ValueError(f"guard must be None, 'warn' or 'fallback', got {guard!r}")
    if event is not None:
        raise ValueError("guard= and event= do not combine yet: pass one of them")
    if isinstance(options, dict) and options.get("compile", False):
        raise ValueError("guard= runs the eager loop; drop options={'compile': True} or use guard=None")


def domain_of(corrector: Any) -> TrainingDomain:
    """The corrector's recorded domain, or a ``ValueError`` that says how to record one."""
    domain = getattr(corrector, "domain", None)
    if domain is None:
        raise ValueError(
            "guard= needs the corrector's training domain, and this corrector has none (it was trained "
            "or saved before domains were recorded); record it from its training data without "
            "retraining: attsolver.training.record_domain(corrector, data) (then corrector.save(path) "
            "keeps it), or solve with guard=None"
        )
    return domain


@dataclass(frozen=True)
class GuardReport:
    """What the guard saw (``SolveStats.guard``).

    Attributes:
        mode: ``"warn"`` or ``"fallback"``.
        n_checked: sample-steps under the guard (each covered by a score every :data:`SCORE_EVERY` steps).
        n_flagged: sample-steps judged outside the domain.
        n_fallbacks: sample-steps recomputed classically (``"fallback"``; else 0).
        fallback_f_evals: evaluations of ``f`` by the fallback substeps (each on the flagged samples
            only) and by the a-posteriori checks (on all samples).
        flagged: per trajectory (flattened batch), whether any of its steps was flagged.
        first: ``(time, trajectory)`` of the first flagged step, or ``None``.
        beyond_horizon: the solve ran longer than the training trajectories.
        n_rewinds: samples set to the refined shadow's state at the end of the window that first
            distrusted them, and at that window's outputs (``"fallback"`` with ``guard_check_every``).
        reason: what flagged the first step: ``"system"`` (the solve's system is not the one the
            corrector was trained on, :mod:`.guard_system`: every step from the start),
            ``"features"`` (the feature scores), ``"check"`` (the a-posteriori check); ``None``
            when nothing was flagged.
        system: the system check's sentence naming the differing parameter, or the
            right-hand-side probe's naming the difference (:mod:`.guard_probe`), or ``None``.
        check_ratio: with ``guard_check_every``, per trajectory the largest ratio, over the
            windows, of the guarded solve's summed distance to the refined shadow to the
            classical shadow's (the check distrusts a trajectory when it exceeds the ratio in
            use); ``None`` without the check.  :func:`attsolver.training.calibrate_check` picks
            the ratio from it on in-distribution trajectories.
        probe: the right-hand-side probe's largest relative difference between the solve's ``f``
            and the recorded values at the probe states (:mod:`.guard_probe`; above the domain's
            ``probe_rtol`` every rollout is flagged from step 0, reason ``"system"``), or ``None``
            (the domain has no probes, or the system check compared the parameters).
    """

    mode: str
    n_checked: int
    n_flagged: int
    n_fallbacks: int
    fallback_f_evals: int
    flagged: tuple[bool, ...]
    first: tuple[float, int] | None
    beyond_horizon: bool
    n_rewinds: int = 0
    reason: str | None = None
    system: str | None = None
    check_ratio: tuple[float, ...] | None = None
    probe: float | None = None

    @classmethod
    def of_pieces(cls, pieces: Sequence[GuardReport]) -> GuardReport:
        first = next((p.first for p in pieces if p.first is not None), None)
        flagged = tuple(any(col) for col in zip(*(p.flagged for p in pieces)))
        return cls(pieces[0].mode, sum(p.n_checked for p in pieces), sum(p.n_flagged for p in pieces),
                   sum(p.n_fallbacks for p in pieces), sum(p.fallback_f_evals for p in pieces), flagged, first,
                   any(p.beyond_horizon for p in pieces), sum(p.n_rewinds for p in pieces),
                   next((p.reason for p in pieces if p.reason is not None), None),
                   next((p.system for p in pieces if p.system is not None), None),
                   _largest([p.check_ratio for p in pieces if p.check_ratio is not None]),
                   max((p.probe for p in pieces if p.probe is not None), default=None))


def _largest(ratios: list[tuple[float, ...]]) -> tuple[float, ...] | None:
    """Elementwise maximum of per-trajectory ratios (``None`` for none); NaN is kept."""
    return tuple(max(col, key=lambda v: math.inf if math.isnan(v) else v) for col in zip(*ratios)) if ratios else None


def check_ratio_pairs(pairs: Any) -> tuple[tuple[int, float], ...]:
    """``((check_every, ratio), ...)`` sorted, each interval a positive int and each ratio a finite
    number > 0, or a ``ValueError`` naming the fix."""
    fix = ("; calibrate it again: attsolver.training.calibrate_check(corrector, data, check_every=...)")
    try:
        out = {int(k): float(r) for k, r in pairs}
    except (TypeError, ValueError):
        raise ValueError(f"the training domain's check_ratios must be (check_every, ratio) pairs, got {pairs!r}"
                         + fix) from None
    for k, r in out.items():
        if k < 1 or not (math.isfinite(r) and r > 0):
            raise ValueError(f"the training domain's check ratio {r!r} for check_every={k} must be a finite "
                             "number > 0 with check_every >= 1" + fix)
    return tuple(sorted(out.items()))


@dataclass(eq=False)
class _ScoreState:
    """One solve's scoring state, shared by its scorers (one per step size of the solve)."""

    #: per sample, the moving average of the nearest-neighbour distance (``None`` before the first update)
    average: Tensor | None = None
    #: whether every sample's average was within the threshold at the last update (it holds until the next)
    knn_in: bool = True
    #: feature scores until the next nearest-neighbour update (0: the next score updates)
    knn_due: int = 0
    #: the update's buffers (``[B, M]`` product, float32 features, ``|u|^2``, distances), kept per solve
    knn_buffers: tuple[Tensor, ...] | None = None
    #: the all-true verdict ``[B]`` a score returns when every sample is in (never written to)
    all_in: Tensor | None = None
    #: the score's buffers (:func:`_score_buffers`)
    score_buffers: tuple[Tensor, ...] | None = None


class _Scorer:
    """The per-step test, folded for one step ``h`` and one dtype (:func:`_folded`, built once per
    domain, step and dtype).  With the full covariance: one ``cat`` of ``x = [y, dy, C]``, one
    ``addmm`` ``p = x M + m = [u, dy, C]`` (``u = (z - mu) W`` the whitened features, the ``dy``
    rows of ``W`` divided by ``h``), its square, one ``addmm`` of the squares into the two margins
    ``|u|^2 - d_max`` and ``|C|^2 - r_max^2 |dy|^2`` per sample (in: both ``<= 0``), and their
    largest value read on the host: when every sample is in (the common case) the score returns
    the solve's all-true verdict (:meth:`_Guard.verdict` knows it: no second synchronisation)
    without building the per-sample one.  Six tensor operations per score where the previous
    form had seventeen (each a few microseconds on a small batch, more than the arithmetic).
    With per-feature scaling (``F > MAX_FULL_COVARIANCE``) the features are two elementwise
    ``addcmul`` (no dense ``F x F`` diagonal) and the tests as written."""

    def __init__(self, domain: TrainingDomain, h: float, like: Tensor, state: _ScoreState | None = None):
        self.__dict__.update(_folded(domain, h, like))
        self.state = _ScoreState() if state is None else state  # the solve's, shared by its scorers

    def whitened(self, y2: Tensor, dy2: Tensor) -> Tensor:
        """The whitened features ``u = (z - mu) W`` ``[B, F]`` of states and increments ``[B, D]``."""
        if self.diagonal:
            dim = self.dim
            return torch.cat((torch.addcmul(self.b[:dim], y2, self.a_y), torch.addcmul(self.b[dim:], dy2, self.a_dy)),
                             dim=1)
        return torch.addmm(self.b, y2, self.a_y).addmm_(dy2, self.a_dy)

    def ok(self, y: Tensor, dy: Tensor, c: Tensor) -> Tensor:
        """Per-sample ``[B]``: inside the domain (NaN compares false: a non-finite step is outside);
        every sample in: the shared all-true tensor (``state.all_in``, not to be written to)."""
        dim = self.dim
        if self.diagonal:
            return self._ok_diagonal(y.detach().reshape(-1, dim), dy.detach().reshape(-1, dim), c)
        # [B, D] already (the usual batch of vectors): no reshape dispatch
        parts = tuple(v if v.ndim == 2 and v.shape[1] == dim else v.reshape(-1, dim) for v in (y, dy, c))
        state = self.state
        bufs = state.score_buffers
        if (y.requires_grad or c.requires_grad) and torch.is_grad_enabled():  # no out= with autograd
            x = torch.cat(parts, dim=1).detach()
            p = torch.addmm(self.m, x, self.fused)
            sq = p.square()
            margin = torch.addmm(self.limits, sq, self.margins)
        else:  # into the solve's buffers: no allocation per score
            if bufs is None or bufs[0].shape[0] != parts[0].shape[0] or bufs[0].dtype != self.fused.dtype:
                bufs = state.score_buffers = _score_buffers(parts[0].shape[0], self.fused, self.margins)
            x, p, sq, margin = bufs
            torch.cat(parts, dim=1, out=x)
            torch.addmm(self.m, x, self.fused, out=p)  # [u, dy, C]
            torch.square(p, out=sq)
            torch.addmm(self.limits, sq, self.margins, out=margin)  # [B, 2]; <= 0: in
        near = self._near(p, sq) if self.core_t is not None else True
        if near and float(margin.amax()) <= 0.0:  # NaN compares false: the per-sample verdict below
            every = state.all_in
            if every is None or every.shape[0] != x.shape[0]:
                every = state.all_in = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            return every
        ok = margin.amax(1) <= 0.0  # amax keeps NaN: outside
        return ok if self.core_t is None else ok.logical_and_(state.average <= self.knn)

    def _ok_diagonal(self, y2: Tensor, dy2: Tensor, c: Tensor) -> Tensor:
        u = self.whitened(y2, dy2)
        u_sq = u.square()
        near = u_sq.sum(1) <= self.radius ** 2
        small = torch.linalg.vector_norm(c.detach().reshape(-1, self.dim), dim=1) <= torch.linalg.vector_norm(
            dy2, dim=1).mul_(self.ratio)
        if self.core_t is not None:
            self._near(u, u_sq)
            near = near.logical_and_(self.state.average <= self.knn)
        return near.logical_and_(small)

    def _near(self, u: Tensor, u_sq: Tensor) -> bool:
        """Update the nearest-neighbour moving average on every ``KNN_EVERY``-th score (the first
        included; whitened features ``u`` and their squares); whether every sample's average is
        within the threshold (the last update's verdict holds in between; per sample:
        ``state.average <= knn``, NaN compares false)."""
        state = self.state
        if state.knn_due <= 0:
            state.knn_due = KNN_EVERY
            f, b = self.core_t.shape[0], u.shape[0]  # u and u_sq may carry more columns (the fused [u, dy, C])
            bufs = state.knn_buffers
            if bufs is None or bufs[0].shape[0] != b or bufs[2].dtype != u_sq.dtype:
                # [B, M] and the rest, kept: no allocation per score (a fresh [B, M] cost more than the product)
                bufs = state.knn_buffers = (u.new_empty((b, self.core_t.shape[1]), dtype=self.knn_dtype),
                                   u.new_empty((b, f), dtype=self.knn_dtype), u_sq.new_empty(b),
                                   u.new_empty(b, dtype=self.knn_dtype))
            buf, u32, u2, d = bufs
            u32.copy_(u[:, :f])
            torch.addmm(self.core_sq, u32, self.core_t, out=buf)
            torch.sum(u_sq[:, :f], 1, out=u2)
            torch.amin(buf, 1, out=d)
            d.add_(u2).clamp_min_(0.0).sqrt_()
            avg = state.average = d.clone() if state.average is None else state.average.lerp_(d, KNN_EMA)
            state.knn_in = float(avg.amax()) <= self.knn  # NaN compares false
        state.knn_due -= 1
        return state.knn_in


#: the folded scorer constants per domain (weakly: a domain's entries go with it), then per step
#: size, dtype and device; a solve's output intervals have steps that differ in the last bits, and
#: each solve used to fold them again (~40 us each, 8 step sizes on a 100-step Lorenz-63 solve)
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: at most this many step sizes per domain are kept (then the domain's entries start again)
FOLDED_STEPS = 64


def _folded(domain: TrainingDomain, h: float, like: Tensor) -> dict[str, Any]:
    """The constants of :class:`_Scorer` for ``domain``, step ``h`` and ``like``'s dtype and device
    (built once, cached in :data:`_FOLDED`)."""
    per = _FOLDED.get(domain)
    if per is None or len(per) >= FOLDED_STEPS:
        per = _FOLDED[domain] = {}
    key = (h, like.dtype, like.device)
    got = per.get(key)
    if got is None:
        got = per[key] = _fold(domain, h, like)
    return got


def _fold(domain: TrainingDomain, h: float, like: Tensor) -> dict[str, Any]:
    dim = domain.feature_dim // 2
    w = domain.whiten
    diagonal = w.ndim == 1
    radius, ratio = math.sqrt(domain.distance_threshold), domain.ratio_threshold
    # the state's and the increment's rows of the whitening, the latter divided by h.  Per-feature
    # scaling (F > MAX_FULL_COVARIANCE) stays elementwise: u = z * w - mu * w, O(F) to build
    # and per step (a dense F x F diagonal cost F^2 memory and a matrix product per score)
    got: dict[str, Any] = {
        "dim": dim, "diagonal": diagonal, "radius": radius, "ratio": ratio,
        "a_y": w[:dim].to(like).contiguous(), "a_dy": (w[dim:] / h).to(like).contiguous(),
        "b": (-(domain.mean * w if diagonal else domain.mean @ w)).to(like)}
    if not diagonal:
        got.update(_fused(w, domain.mean, h, radius, ratio, like))
    # the nearest-neighbour score (guard_knn): |u|^2 + min_c (|c|^2 - 2 u.c), one addmm, in
    # float32 at most (the [B, M] product is the score's largest tensor: half the memory
    # traffic; distances of order 0.1-1 whitened units keep ~1e-3 absolute accuracy)
    got["core_t"] = got["core_sq"] = None
    if domain.coreset is not None:
        got["knn_dtype"] = torch.float32 if like.dtype == torch.float64 else like.dtype
        core = domain.coreset.to(device=like.device, dtype=got["knn_dtype"])
        got["core_t"], got["core_sq"] = (-2.0 * core).T.contiguous(), core.square().sum(1)
        got["knn"] = domain.knn_threshold
    return got


def _fused(w: Tensor, mean: Tensor, h: float, radius: float, ratio: float, like: Tensor) -> dict[str, Tensor]:
    """The full-covariance score as two matrix products (:class:`_Scorer`): ``fused [3D, F + 2D]``
    and ``m`` map ``x = [y, dy, C]`` to ``[u, dy, C]``; ``margins [F + 2D, 2]`` and ``limits``
    map the squares to ``(|u|^2 - radius^2, |C|^2 - ratio^2 |dy|^2)``.  An infinite threshold
    drops its test (its column stays 0, and a NaN feature still makes it NaN: outside)."""
    dim = w.shape[0] // 2
    f = 2 * dim
    fused = torch.zeros(3 * dim, f + 2 * dim, dtype=torch.float64)
    fused[:dim, :f] = w[:dim]
    fused[dim:f, :f] = w[dim:] / h
    eye = torch.eye(dim, dtype=torch.float64)
    fused[dim:f, f:f + dim] = eye
    fused[f:, f + dim:] = eye
    m = torch.cat((-(mean @ w), torch.zeros(2 * dim, dtype=torch.float64)))
    margins = torch.zeros(f + 2 * dim, 2, dtype=torch.float64)
    limits = torch.zeros(2, dtype=torch.float64)
    if math.isfinite(radius):
        margins[:f, 0] = 1.0
        limits[0] = -radius ** 2
    if math.isfinite(ratio * ratio):
        margins[f:f + dim, 1] = -ratio * ratio
        margins[f + dim:, 1] = 1.0
    return {"fused": fused.to(like), "m": m.to(like), "margins": margins.to(like), "limits": limits.to(like)}


def _score_buffers(b: int, fused: Tensor, margins: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A solve's buffers for :meth:`_Scorer.ok` on ``b`` samples: ``x [b, 3D]``, ``p`` and its
    square ``[b, F + 2D]``, the margins ``[b, 2]``."""
    return (fused.new_empty((b, fused.shape[0])), fused.new_empty((b, fused.shape[1])),
            fused.new_empty((b, fused.shape[1])), fused.new_empty((b, margins.shape[1])))


def _fallback(stepper, y: Tensor, rows: Tensor, t0: float, h: float, dtype: torch.dtype,
              substeps: int = FALLBACK_SUBSTEPS) -> Tensor:
    """``substeps`` classical substeps of ``h / substeps`` from ``y[rows]`` (``rows`` an index
    tensor or ``slice(None)``)."""
    sub = h / substeps
    state = stepper.to_state(y[rows])
    for k in range(substeps):
        start = t0 + k * sub
        ts = [torch.tensor(start + c * sub, dtype=dtype, device=y.device) for c in stepper.nodes]
        state = stepper.step(ts, state, sub)
    return stepper.from_state(state)


class _Guard:
    """The guard of one solve: the scorers per step size, the counts, the flagged steps' handling."""

    def __init__(self, plan: StepPlan, domain: TrainingDomain):
        self.plan, self.domain = plan, domain
        self.dim = domain.feature_dim // 2
        # the corrector's state shape (trailing dimensions of y); the batch is what precedes it
        self.state_shape = tuple(getattr(plan.corrector, "state_shape", (self.dim,)))
        if math.prod(self.state_shape) != self.dim:
            raise ValueError(f"the corrector's training domain is for states of {self.dim} entries, its "
                             f"state_shape {self.state_shape} has {math.prod(self.state_shape)}; record the "
                             "domain again")
        self.batch = plan.y0.numel() // self.dim
        self.scorers: dict[float, _Scorer] = {}
        self.state = _ScoreState()  # the scorers' shared state: one moving average per solve, whatever the step
        self.sticky = plan.guard == "fallback" and STICKY_FALLBACK
        self.flagged = torch.zeros(self.batch, dtype=torch.bool, device=plan.y0.device)
        self.n_flagged = self.n_fallbacks = self.f_evals = 0
        self.first: tuple[float, int] | None = None
        self.distrust: Tensor | None = None  # samples that failed an a-posteriori check
        self.evidence: tuple[Tensor, Tensor] | None = None  # summed corrected and classical check errors
        self.check_ratio = POSTERIORI_RATIO  # guarded_loop sets the domain's calibrated one
        self.largest: Tensor | None = None  # per sample, the largest evidence ratio so far
        self.window: list | None = None  # [classical shadow, refined shadow, steps left]
        self.window_outputs: list[tuple[int, Tensor]] = []  # (output index, refined shadow there) inside the window
        self.newly: Tensor | None = None  # the samples the last window distrusted first
        self.fine_end: Tensor | None = None  # the refined shadow at the last window's end
        self.n_rewinds = 0
        self.reason: str | None = None  # what flagged the first step (GuardReport.reason)
        self.system: str | None = None  # the system check's or the probe's sentence (guard_system, guard_probe)
        self.probe_error: float | None = None  # the probe's largest relative difference (guard_probe)
        self.scored_all_ok = True  # the last feature score flagged nothing
        self.handled: tuple = (None, None, 0)  # (verdict, its flagged rows, their count): handle's cache
        # the refined shadow's substeps: its error at most 1/16 of the classical step's
        self.ref_substeps = max(2, math.ceil(16 ** (1 / max(1, int(getattr(plan.corrector, "order", 4)))) - 1e-9))

    def probe(self) -> str | None:
        """The right-hand-side probe (:mod:`.guard_probe`): ``None`` when the solve's ``f`` (its
        stepper's) reproduces the recorded values at the domain's probe states (or the domain has
        none), else the sentence naming the difference; the difference is kept for the report."""
        d = self.domain
        if d.probe_y is None:
            return None
        e, p = probe_difference(self.plan.stepper.f, self.plan.y0, self.state_shape, d.probe_y, d.probe_f,
                                d.probe_t, self.plan.t.dtype)
        self.probe_error = e
        return None if e <= d.probe_rtol else probe_sentence(e, p, d.probe_rtol)

    def open_window(self, y: Tensor, steps: int) -> None:
        """Start the a-posteriori window from the guarded state ``y``: a classical and a refined
        shadow solve run beside the corrected one for ``steps`` steps."""
        flat = y.detach().reshape(-1, *self.state_shape)
        self.window = [flat, flat, steps]  # window_outputs is empty: rewind emptied it when the last one closed

    def advance_window(self, ts: list[Tensor], y_next: Tensor, h: float) -> bool:
        """One step of both shadows; at the window's end, compare (:meth:`judge`) and close it.
        Returns whether the window closed."""
        stepper, w = self.plan.stepper, self.window
        t0 = float(ts[0])
        w[0] = _fallback(stepper, w[0], slice(None), t0, h, self.plan.t.dtype, 1)
        w[1] = _fallback(stepper, w[1], slice(None), t0, h, self.plan.t.dtype, self.ref_substeps)
        self.f_evals += (1 + self.ref_substeps) * len(stepper.nodes)
        w[2] -= 1
        if w[2] > 0:
            return False
        self.window = None
        self.judge(y_next, w[0], w[1])
        return True

    def note_output(self, i: int) -> None:
        """Output ``i`` was stored while a window is open: keep the refined shadow's state there,
        for :meth:`rewind`."""
        if self.window is not None and self.plan.guard == "fallback":
            self.window_outputs.append((i, self.window[1]))

    def rewind(self, y: Tensor, out: Outputs) -> Tensor:
        """Under ``"fallback"``: the samples the last window distrusted for the first time take
        the refined shadow's state (a better solution over that window than the corrected one),
        at the window's end and at the outputs stored inside it."""
        new, inside = self.newly, self.window_outputs
        self.window_outputs = []
        if self.plan.guard != "fallback" or new is None or not bool(new.any()):
            return y
        rows = new.nonzero().squeeze(1)
        for i, fine in inside:  # the outputs the check has just seen to be worse than no corrector's
            out.replace_rows(i, rows, fine.reshape(-1, self.dim)[rows])
        flat = y.reshape(-1, self.dim).clone()
        flat[rows] = self.fine_end[rows].to(flat.dtype)
        self.n_rewinds += int(rows.numel())
        return flat.reshape(y.shape)

    def judge(self, y_next: Tensor, y_cls: Tensor, fine: Tensor) -> None:
        """Distrust the samples whose guarded solve is further from the refined shadow than the
        classical shadow is, summed over the windows so far (times the check's ratio:
        :meth:`TrainingDomain.check_ratio`)."""
        # over a window, not one step: a good corrector's one-step errors can be as large as
        # the classical step's (they scatter), while the classical errors add up coherently
        fine = fine.reshape(-1, self.dim)
        e_corr = torch.linalg.vector_norm(y_next.detach().reshape(-1, self.dim) - fine, dim=1)
        e_cls = torch.linalg.vector_norm(y_cls.reshape(-1, self.dim) - fine, dim=1)
        if self.evidence is None:
            self.evidence = (e_corr, e_cls)
        else:
            self.evidence = (self.evidence[0] + e_corr, self.evidence[1] + e_cls)
        ratio = self.evidence[0] / self.evidence[1]  # x / 0 = inf (> any ratio), 0 / 0 = NaN (not)
        self.largest = ratio if self.largest is None else torch.fmax(self.largest, ratio)
        worse = ratio > self.check_ratio  # the reported ratio decides (no rounding between the two)
        self.newly = worse if self.distrust is None else worse & ~self.distrust
        self.fine_end = fine
        self.distrust = worse if self.distrust is None else self.distrust | worse

    def scorer(self, h: float, like: Tensor) -> _Scorer:
        got = self.scorers.get(h)
        if got is None:
            got = self.scorers[h] = _Scorer(self.domain, h, like, self.state)
        return got

    def verdict(self, ok: Tensor) -> tuple[Tensor, bool]:
        """A score's verdict ``ok`` with the distrusted samples out, and whether all are in (the
        one host synchronisation of a score); under a sticky ``"fallback"``
        (:data:`STICKY_FALLBACK`) the samples it flags are distrusted from now on.  The scorer's
        all-true verdict (``state.all_in``: it has seen every sample in) needs no synchronisation."""
        self.scored_all_ok = True
        every = ok is self.state.all_in
        if self.distrust is None and every:
            return ok, True
        if self.distrust is not None:
            raw, ok = ok, ok & ~self.distrust
            all_ok = bool(ok.all())
            if not all_ok and self.reason is None and not every:  # the score's own flags, or earlier distrust
                self.scored_all_ok = bool(raw.all())
        else:
            all_ok = self.scored_all_ok = bool(ok.all())
        if self.sticky and not all_ok:
            self.distrust = ~ok if self.distrust is None else self.distrust | ~ok
        return ok, all_ok

    def handle(self, ok: Tensor, ts: list[Tensor], y: Tensor, y_next: Tensor, h: float) -> Tensor:
        """Count a step with flagged samples; under ``"fallback"`` recompute them classically."""
        if ok is not self.handled[0]:  # a new verdict (it holds for the steps until the next score)
            bad = ~ok
            rows = bad.nonzero().squeeze(1)
            self.handled = (ok, rows, int(rows.numel()))
            self.flagged |= bad
        _, rows, n_bad = self.handled  # the same verdict as the last step's: no nonzero, no host sync
        self.n_flagged += n_bad
        if self.first is None:
            self.first = (float(ts[0]), int(rows[0]))
        if self.reason is None:
            self.reason = "features" if not self.scored_all_ok else "check"
        if self.plan.guard != "fallback":
            return y_next
        stepper = self.plan.stepper
        flat = y_next.reshape(-1, self.dim).clone()
        fine = _fallback(stepper, y.reshape(-1, *self.state_shape), rows, float(ts[0]), h, self.plan.t.dtype)
        flat[rows] = fine.reshape(n_bad, self.dim).to(flat.dtype)
        self.n_fallbacks += n_bad
        self.f_evals += FALLBACK_SUBSTEPS * len(stepper.nodes)
        return flat.reshape(y_next.shape)

    def report(self) -> GuardReport:
        plan = self.plan
        span = abs(float(plan.t_np[-1] - plan.t_np[0]))
        return GuardReport(plan.guard, plan.n_steps * self.batch, self.n_flagged, self.n_fallbacks, self.f_evals,
                           tuple(bool(v) for v in self.flagged.tolist()), self.first,
                           span > self.domain.horizon * (1 + 1e-9), self.n_rewinds, self.reason, self.system,
                           None if self.largest is None else tuple(float(v) for v in self.largest.tolist()),
                           self.probe_error)

    def warn(self, stacklevel: int = 5) -> None:
        """The one warning of ``"warn"`` (``stacklevel``: the user's call to ``solve``)."""
        if self.system is not None:
            warnings.warn(f"{self.system}: every rollout is outside the corrector's training domain from the first "
                          "step, and its result may be worse than the classical solver's — solve with "
                          "guard='fallback' to take the classical refined step instead", OutOfDomainWarning,
                          stacklevel=stacklevel)
            return
        t_first, row = self.first
        warnings.warn(
            f"the corrected solve left the corrector's training domain at t = {t_first:g} on trajectory "
            f"{row} (flattened batch index; {self.n_flagged} of {self.plan.n_steps * self.batch} sample-steps "
            f"flagged, {int(self.flagged.sum())} of {self.batch} trajectories); its result there may be worse "
            "than the classical solver's — solve with guard='fallback' to recompute such steps classically",
            OutOfDomainWarning, stacklevel=stacklevel)


def _classical_loop(guard: _Guard, times) -> tuple[Tensor, GuardReport]:
    """Every step of every sample by the classical method at ``h / FALLBACK_SUBSTEPS`` (``"fallback"``
    when the system check failed: no step of the corrector is trusted, none is computed)."""
    plan, y = guard.plan, guard.plan.y0
    out = Outputs(y, len(plan.t_np))
    guard.flagged.fill_(True)
    nodes = len(plan.stepper.nodes)
    for i, (n, h) in enumerate(zip(plan.n_sub.tolist(), plan.h_int.tolist()), 1):
        for _ in range(n):
            t0 = float(next(times)[0])
            if guard.first is None:
                guard.first = (t0, 0)
            shape = y.shape
            y = _fallback(plan.stepper, y.reshape(-1, *guard.state_shape), slice(None), t0, h,
                          plan.t.dtype).reshape(shape)
            guard.n_flagged += guard.batch
            guard.n_fallbacks += guard.batch
            guard.f_evals += FALLBACK_SUBSTEPS * nodes
        out.put(i, y)
    return out.result(), guard.report()


def guarded_loop(plan: StepPlan, times, check_every: int | None = None, score_every: int | None = None,
                 f: Any = None) -> tuple[Tensor, GuardReport]:
    """The eager corrected loop with the guard (``plan.guard`` is ``"warn"`` or ``"fallback"``;
    ``check_every``: the a-posteriori check's interval, ``None`` for none; ``score_every``: the
    feature score's interval, default :data:`SCORE_EVERY`; ``f``: the user's right-hand side,
    for the system check of :mod:`.guard_system`); the outputs as
    :func:`~attsolver.integrate.loop.fixed_loop`'s, and the guard's report.

    When ``f`` is not the system the corrector was trained on, every sample is flagged from the
    first step: ``"warn"`` runs the corrected loop and warns once naming the parameter,
    ``"fallback"`` runs the classical refined step (:func:`_classical_loop`).

    A score's verdict holds until the next score: a sample flagged at step ``n`` is handled
    (counted, and under ``"fallback"`` recomputed) on steps ``n .. n + score_every - 1`` too;
    under a sticky ``"fallback"`` (:data:`STICKY_FALLBACK`) for the rest of the solve.  The
    guard's memory (sticky flags, the nearest-neighbour moving average, the a-posteriori
    evidence) is per call: ``solve(..., progress=True)`` runs up to 100 pieces, each with a fresh one."""
    every, score_every = check_every or 0, score_every or SCORE_EVERY
    guard = _Guard(plan, domain_of(plan.corrector))
    guard.check_ratio = guard.domain.check_ratio(every) if every else POSTERIORI_RATIO
    guard.system = system_mismatch(f, plan.corrector)
    if guard.system is None and not system_compared(f, plan.corrector):
        guard.system = guard.probe()
    if guard.system is not None:
        guard.reason = "system"
        guard.distrust = torch.ones_like(guard.flagged)
        if plan.guard == "fallback":
            return _classical_loop(guard, times)
    if _deferrable(guard, every, score_every):
        return _deferred_loop(guard, times, score_every)
    stepper, corrector, y = plan.stepper, plan.corrector, plan.y0
    step, to_state, from_state = stepper.step, stepper.to_state, stepper.from_state
    out = Outputs(y, len(plan.t_np))
    # k counts to the next window, the first at the first step (CHECK_SCHEDULE)
    k, j, ok, all_ok = max(every - 1, 0), score_every, None, True
    window = max(1, int(POSTERIORI_WINDOW * every))
    left = int(plan.n_sub.sum())  # steps still to take: a window that cannot close is not opened
    for i, (n, h) in enumerate(zip(plan.n_sub.tolist(), plan.h_int.tolist()), 1):
        score = guard.scorer(h, y).ok
        for _ in range(n):
            ts = next(times)
            y_cls = from_state(step(ts, to_state(y), h))
            dy = y_cls - y
            c = corrector(ts[0], y, dy, h)
            y_next = y_cls + c
            j += 1
            if every:  # the a-posteriori check (none by default: nothing else per step)
                k, left = k + 1, left - 1
                if k == every:
                    k = 0
                    if left + 1 >= window:  # this step and the rest: the window closes within the solve
                        guard.open_window(y, window)
            if j >= score_every:  # the first step is scored
                j = 0
                ok, all_ok = guard.verdict(score(y, dy, c))
            y = y_next if all_ok else guard.handle(ok, ts, y, y_next, h)
            if every and guard.window is not None and guard.advance_window(ts, y, h):
                y = guard.rewind(y, out)
                ok = ok & ~guard.distrust
                all_ok = bool(ok.all())
        out.put(i, y)
        if every:
            guard.note_output(i)
    if plan.guard == "warn" and guard.first is not None:
        guard.warn()
    return out.result(), guard.report()


def _deferrable(guard: _Guard, every: int, score_every: int) -> bool:
    """Whether this solve's scores can wait for its end (:mod:`.guard_batch`): ``"warn"``, or a
    sticky ``"fallback"`` without autograd (its flagged samples are solved again from their first
    flagged step: :func:`_replay`); without the a-posteriori check and without a failed system
    check or probe; the full-covariance score; a record of the scored features below
    ``guard_batch.DEFERRED_MAX_BYTES``."""
    plan = guard.plan
    if every or guard.system is not None or guard.domain.whiten.ndim != 2:
        return False
    if plan.guard != "warn" and not (plan.guard == "fallback" and STICKY_FALLBACK and not torch.is_grad_enabled()):
        return False
    n_scores = -(-int(plan.n_sub.sum()) // score_every)
    return 0 < guard_batch.record_size(n_scores, guard.batch, guard.dim, plan.y0.dtype) <= \
        guard_batch.DEFERRED_MAX_BYTES


def _deferred_loop(guard: _Guard, times, score_every: int) -> tuple[Tensor, GuardReport]:
    """The guarded loop with the scores deferred (:mod:`.guard_batch`): the corrected loop, the
    features of every ``score_every``-th step (the first included) copied into one record, scored
    after the last step; the counts, the first flagged step and the warning as the per-step score
    gives them (each verdict holds for the steps until the next score).  Under ``"fallback"`` a
    flagged sample is then solved again from the step of its first flag (:func:`_replay`): the
    solve the per-step score gives, whose sticky fallback takes that sample's every step from
    there at ``h / FALLBACK_SUBSTEPS``."""
    plan, dim, b = guard.plan, guard.dim, guard.batch
    fallback = plan.guard == "fallback"
    stepper, corrector, y = plan.stepper, plan.corrector, plan.y0
    step, to_state, from_state = stepper.step, stepper.to_state, stepper.from_state
    out = Outputs(y, len(plan.t_np))
    n_steps = int(plan.n_sub.sum())
    record = torch.empty((-(-n_steps // score_every), b, 3 * dim), dtype=y.dtype, device=y.device)
    sizes: list[float] = []  # the step size of each score
    starts: list[Tensor] = []  # each step's start time
    j = score_every
    for i, (n, h) in enumerate(zip(plan.n_sub.tolist(), plan.h_int.tolist()), 1):
        for _ in range(n):
            ts = next(times)
            y_cls = from_state(step(ts, to_state(y), h))
            dy = y_cls - y
            c = corrector(ts[0], y, dy, h)
            j += 1
            if j >= score_every:
                j = 0
                torch.cat((y.detach().reshape(b, dim), dy.detach().reshape(b, dim), c.detach().reshape(b, dim)),
                          dim=1, out=record[len(sizes)])
                sizes.append(h)
            starts.append(ts[0])
            y = y_cls + c
        out.put(i, y)
    # recorded_verdicts rescales the record's dy and C columns only: its y columns stay the scored states
    bad = ~guard_batch.recorded_verdicts(guard.scorer(sizes[0], y), record, sizes, KNN_EVERY, KNN_EMA)
    guard.flagged = bad.any(0)
    if not bool(guard.flagged.any()):
        return out.result(), guard.report()
    guard.reason = "features"
    if not fallback:
        holds = torch.full((len(sizes),), score_every, dtype=torch.long, device=bad.device)
        holds[-1] = n_steps - score_every * (len(sizes) - 1)  # the last verdict holds to the end
        guard.n_flagged = int((bad.sum(1) * holds).sum())
        s = int(bad.any(1).nonzero()[0])
        guard.first = (float(starts[s * score_every]), int(bad[s].nonzero()[0]))
        guard.warn(stacklevel=6)
    else:
        _replay(guard, out, bad, record[:, :, :dim], starts, score_every, n_steps)
    return out.result(), guard.report()


def _replay(guard: _Guard, out: Outputs, bad: Tensor, scored_states: Tensor, starts: list[Tensor],
            score_every: int, n_steps: int) -> None:
    """The deferred ``"fallback"``: each flagged sample (``bad [S, B]``: flagged per score)
    solved again classically at ``h / FALLBACK_SUBSTEPS`` from the state its first flagged step
    started from (``scored_states [S, B, D]``) to the end, in one batch of the samples flagged so
    far (in index order, as the per-step fallback batches them); its stored outputs from then on
    replaced; the counts as the per-step fallback's (its sticky fallback: a sample's first flag
    decides)."""
    plan, dim = guard.plan, guard.dim
    first = bad.to(torch.uint8).argmax(0)  # each sample's first flagged score (0 where never flagged)
    flagged_at = {}  # step -> the samples whose first flag is there
    for s in torch.unique(first[guard.flagged]).tolist():
        flagged_at[s * score_every] = (guard.flagged & (first == s)).nonzero().squeeze(1)
    k0 = min(flagged_at)
    rows = torch.empty(0, dtype=torch.long, device=bad.device)
    state = None
    k = 0
    for i, (n, h) in enumerate(zip(plan.n_sub.tolist(), plan.h_int.tolist()), 1):
        if k + n <= k0:
            k += n
            continue
        for _ in range(n):
            if k >= k0:
                new = flagged_at.get(k)
                if new is not None:  # join the batch, kept in index order
                    start = scored_states[k // score_every, new].reshape(-1, *guard.state_shape)
                    joined = torch.cat((rows, new))
                    order = torch.argsort(joined)
                    rows = joined[order]
                    state = start if state is None else torch.cat((state, start))[order]
                    guard.n_flagged += int(new.numel()) * (n_steps - k)
                    guard.n_fallbacks += int(new.numel()) * (n_steps - k)
                    if k == k0:
                        guard.first = (float(starts[k]), int(rows[0]))
                state = _fallback(plan.stepper, state, slice(None), float(starts[k]), h, plan.t.dtype)
                guard.f_evals += FALLBACK_SUBSTEPS * len(plan.stepper.nodes)
            k += 1
        out.replace_rows(i, rows, state.reshape(-1, dim))
