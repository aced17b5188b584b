"""The training domain of a learned interpolation, and the guard that falls back to its base scheme.

A learned interpolation acts inside the right-hand side, so the corrector guard of
:mod:`attsolver.integrate.guard` (which scores post-step corrections and falls back to the
classical step of the same ``f``) cannot take it out.  This guard works inside the model:

* **The domain** (:func:`attsolver.systems.interpolation_domain.record_interpolation_domain`;
  ``fit`` records it for an :class:`~attsolver.correctors.InterpolationHost`) is two maxima over
  the training states: of ``|omega|``, and of the model's *departure* from its base scheme,
  ``max |w - w0|`` over the face weights it chooses there (the flux form: ``max |d|``, its
  face-value correction), with a margin on each (:data:`STATE_MARGIN`,
  :data:`DEPARTURE_MARGIN`).  It is a buffer of the model, saved with its weights.
* **The check** runs wherever the model computes its weights (once per step with
  ``weights_per="step"``, in every stage otherwise): a trajectory is flagged when its
  ``max |omega|`` or the departure of its weights exceeds the training maximum times the margin,
  or is not finite.  A handful of tensor operations and one host read a step: 0-10 % of a
  learned step on the CPU, the most on the cheapest (the linear map).
* **Under** ``"fallback"`` a flagged trajectory's faces take the base scheme's weights (the
  consistent classical scheme an untrained model is, e.g. the centred 2-point mean) for the rest
  of the solve; the others keep the learned ones.  Under ``"warn"`` nothing changes and one
  warning names the first flagged time and trajectory.

Why these two numbers: the one long-run blow-up of the Re = 500 benchmark's 16-channel model (a
held-out initial condition, ``benchmarks/results/kolmogorov_li_guard``) starts as grid-scale
vorticity that the model answers with weights further from the base scheme than in training,
which feeds it: ``max |omega|`` goes 21 -> 40 -> 154 -> inf in 0.45 time units while the
velocity stays within the CFL limit.  The base scheme is stable from any of those states (its
flux form with divergence-free face velocities does not create enstrophy), so falling back when
``max |omega|`` passes 1.5 times the training maximum keeps the trajectory finite.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["GuardRun", "InterpolationGuardReport", "InterpolationDomainWarning", "STATE_MARGIN",
           "DEPARTURE_MARGIN", "GUARD_MODES", "domain_tensor", "domain_text"]

GUARD_MODES = ("warn", "fallback")
#: a trajectory is outside the domain when its ``max |omega|`` exceeds the training maximum times
#: this (the held-out Re = 500 rollouts of every build stay below 1.0x over 20 time units; the
#: blow-up above passes 1.5x 0.15 time units before it overflows)
STATE_MARGIN = 1.5
#: ... or when the departure of its weights from the base scheme exceeds the training maximum
#: times this (healthy held-out rollouts reach 0.8-1.25x of it)
DEPARTURE_MARGIN = 2.0


class InterpolationDomainWarning(UserWarning):
    """A guarded solve (``guard="warn"``) left the learned interpolation's training domain."""


def domain_tensor(max_state: float, max_departure: float, state_margin: float, departure_margin: float) -> Tensor:
    """The domain as the model stores it: float64 ``[4]`` (all zeros: not recorded; a recorded
    domain's margins are >= 1)."""
    return torch.tensor([max_state, max_departure, state_margin, departure_margin], dtype=torch.float64)


def domain_text(domain: Tensor) -> str:
    """The domain in words."""
    m = [float(x) for x in domain]
    return (f"max |omega| {m[0]:.4g} (flagged above {m[2]:g}x), departure from the base scheme "
            f"{m[1]:.4g} (flagged above {m[3]:g}x)")


@dataclass
class InterpolationGuardReport:
    """What the guard of a learned interpolation saw in one solve (``SolveStats.guard``).

    Attributes:
        mode: ``"warn"`` or ``"fallback"``.
        flagged: per trajectory (flattened batch), whether it left the domain.
        first_time: per trajectory, the time of its first flagged step (``inf``: never).
        reasons: per flagged trajectory (flattened index), what flagged it first, in words.
        checks: how many times the weights were computed and checked (steps or stages).
    """
    mode: str
    flagged: Tensor
    first_time: Tensor
    reasons: dict[int, str] = field(default_factory=dict)
    checks: int = 0

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    @property
    def first(self) -> tuple[float, int] | None:
        """``(time, trajectory)`` of the earliest flag, or ``None``."""
        if not bool(self.flagged.any()):
            return None
        i = int(torch.argmin(self.first_time))
        return float(self.first_time[i]), i


class GuardRun:
    """One guarded solve's state: the thresholds, the flags so far (sticky), the report."""

    def __init__(self, mode: str, domain: Tensor):
        if mode not in GUARD_MODES:
            raise ValueError(f"guard must be None, 'warn' or 'fallback', got {mode!r}")
        d = [float(x) for x in domain]
        self.mode = mode
        self.max_state, self.max_departure = d[0] * d[2], d[1] * d[3]
        self.report: InterpolationGuardReport | None = None
        self._any = False  # whether any trajectory has been flagged (the fallback's mask is needed)

    def check(self, w: Tensor, departure: Tensor, t) -> Tensor | None:
        """Flag the trajectories of ``w [..., n, n]`` outside the domain (``departure``: their
        weights' largest departure from the base scheme, ``w``'s batch shape); returns the
        trajectories to fall back (``"fallback"``: every one flagged so far) or ``None``.

        The usual case (every trajectory inside, none flagged before) is a handful of tensor
        operations and one read on the host; the bookkeeping runs only when something is out."""
        state = w.detach().abs().amax(dim=(-2, -1)).reshape(-1)
        dep = departure.detach().reshape(-1)
        new = ~((state <= self.max_state) & (dep <= self.max_departure))  # NaN is outside
        r = self.report
        if r is None or r.flagged.shape != new.shape:
            r = self.report = InterpolationGuardReport(
                self.mode, torch.zeros(new.shape, dtype=torch.bool), torch.full(new.shape, math.inf, dtype=torch.float64))
            self._any = False
        r.checks += 1
        if bool(new.any()):
            fresh = (new.cpu() & ~r.flagged).nonzero().reshape(-1).tolist()
            time = float(t) if t is not None else math.nan
            for i in fresh:
                r.first_time[i] = time
                r.reasons[i] = self._reason(float(state[i]), float(dep[i]))
                r.flagged[i] = True
            self._any = True
        if self.mode != "fallback" or not self._any:
            return None
        return r.flagged.to(w.device).reshape(w.shape[:-2])

    def _reason(self, state: float, dep: float) -> str:
        if not (math.isfinite(state) and math.isfinite(dep)):
            return "the state or the weights are not finite"
        if not state <= self.max_state:
            return f"max |omega| = {state:.4g} > {self.max_state:.4g}"
        return f"departure of the weights from the base scheme {dep:.4g} > {self.max_departure:.4g}"

    def warn(self, stacklevel: int = 4) -> None:
        """The one warning of ``"warn"`` (nothing when no trajectory was flagged)."""
        first = self.report.first if self.report is not None else None
        if first is None:
            return
        t, i = first
        warnings.warn(
            f"the learned interpolation left its training domain at t = {t:g} on trajectory {i} (flattened "
            f"batch index; {self.report.n_flagged} of {len(self.report.flagged)} trajectories flagged): "
            f"{self.report.reasons[i]}; its result there may blow up or be worse than the base scheme's — "
            "solve with guard='fallback' to take the base scheme's weights there", InterpolationDomainWarning,
            stacklevel=stacklevel)
