"""What ``fit`` returns and raises: :class:`FitHistory` (the per-epoch record, the end-of-fit
check's findings and their plain-words formatting), :class:`NonFiniteLossError` and
:class:`FitCheckWarning`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FitHistory", "NonFiniteLossError", "FitCheckWarning"]


class NonFiniteLossError(FloatingPointError):
    """The training loss (or its gradient) became NaN/inf.

    Attributes:
        epoch: the epoch (1-based) in which it happened.
        batch: the batch index (0-based) within that epoch.
        checkpoint: the checkpoint path left untouched (the last completed epoch), or ``None``.
        history: the :class:`FitHistory` of the epochs completed before it (their losses,
            windows and learning rates; ``epochs_run`` counts them), or ``None``.
    """

    def __init__(self, message: str, *, epoch: int, batch: int, checkpoint: Path | None,
                 history: FitHistory | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.checkpoint = checkpoint
        self.history = history


class FitCheckWarning(UserWarning):
    """``fit``'s check of its own result found a problem (worse than classical, nothing learned,
    noise-dominated targets); the message says what to change."""


@dataclass(repr=False)
class FitHistory:
    """What :func:`fit` returns.

    Attributes:
        train_loss, val_loss, lr: one entry per epoch run (``val_loss`` is NaN without a
            validation split); with ``loss="mse"`` losses are mean squared errors of the
            *normalised* residual (1.0 = no better than the zero correction when the residuals
            have zero mean); with ``loss="relative"`` each sample's error over the zero
            correction's plus a floor (about 1.0 = no better than no corrector;
            :mod:`attsolver.training.loss`); with ``loss="correlation"`` the mean of one minus
            the predicted and observed states' correlation (0: the same pattern at every frame).
        loss: the training loss, ``"mse"``, ``"relative"`` or ``"correlation"``.
        rollout_steps: one entry per epoch run: the data intervals per training window that
            epoch used (0: one-step targets); it follows ``rollout_schedule`` when one is given.
        best_epoch: 1-based epoch with the lowest monitored loss (0 if none ran); under a
            ``rollout_schedule`` only epochs of the same window length compete.
        best_loss: that loss.
        monitor: ``"val"`` or ``"train"`` (without a validation split).
        epochs_run: epochs completed in total (including those before a resume).
        stopped_early: early stopping ended the run.
        resumed_from: the completed epoch the run resumed from, else ``None``.
        wall_time_s: seconds spent in this call.
        check: the end-of-fit check (``check=True``): ``rollout`` (validation rollout error of
            the corrected and the uncorrected solver from each trajectory's first state, up to a
            few horizons, and their ratio), ``zero_loss`` (the loss of the zero correction on the
            monitored data: the uncorrected one-step residuals or k-interval rollouts, in the
            training loss), ``residual_to_noise`` (RMS of the classical
            step's clean residual over the RMS the observation noise adds to a target, and how
            it was estimated) and ``warnings`` (plain-words problems, also issued as
            :class:`FitCheckWarning`).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    monitor: str = "val"
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None
    wall_time_s: float = 0.0
    check: dict[str, Any] = field(default_factory=dict)
    rollout_steps: list[int] = field(default_factory=list)
    loss: str = "mse"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def warnings(self) -> list[str]:
        return list(self.check.get("warnings", []))

    def __repr__(self) -> str:
        parts = [f"{self.epochs_run} epochs" + (" (early stop)" if self.stopped_early else ""),
                 f"best {self.monitor} loss {self.best_loss:.3g} at epoch {self.best_epoch}"]
        zero = self.check.get("zero_loss")
        if zero is not None:
            parts.append(f"zero-corrector level {zero:.3g}")
        roll = self.check.get("rollout")
        if roll:
            parts.append("rollout error corrected/classical " + ", ".join(
                f"{format_ratio(r)} at {k} step{'s' if k > 1 else ''}" for k, r in zip(roll["horizons"], roll["ratio"])))
        n_warn = len(self.warnings)
        if n_warn:
            parts.append(f"{n_warn} warning{'s' if n_warn > 1 else ''}")
        return "FitHistory(" + "; ".join(parts) + ")"

    def summary(self) -> str:
        """A few plain lines: the loss, the rollout check and any warnings."""
        lines = [
            f"trained {self.epochs_run} epochs{' (stopped early)' if self.stopped_early else ''} in "
            f"{self.wall_time_s:.1f} s; best {self.monitor} loss {self.best_loss:.4g} at epoch {self.best_epoch}"
            + (f" (the zero correction scores {self.check['zero_loss']:.4g})"
               if self.check.get("zero_loss") is not None else ""),
        ]
        roll = self.check.get("rollout")
        if roll:
            lines.append(f"validation rollout ({roll['n_trajectories']} {roll['data']} trajectories, "
                         f"{roll['method']} h={roll['step_size']:g}), relative L2 error up to each horizon:")
            for k, ec, e0, r in zip(roll["horizons"], roll["err_corrected"], roll["err_classical"], roll["ratio"]):
                lines.append(f"  {k:5d} steps: corrected {ec:.3g}, classical {e0:.3g}, ratio {format_ratio(r)}")
        rn = self.check.get("residual_to_noise")
        if rn and rn.get("ratio") is not None:
            lines.append(f"classical residual / observation noise in the one-step targets: {rn['ratio']:.3g} "
                         f"({rn['how']})")
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        if not self.warnings and self.check:
            ratios = roll["ratio"] if roll else []
            if all(r is not None and r < 1.0 for r in ratios):
                lines.append("check passed: the corrected rollout beats the classical one at every horizon checked")
            else:
                worst = max((r for r in ratios if r is not None), default=None)
                lines.append(f"check: no warning, but the corrected rollout does not beat the classical one at "
                             f"every horizon (ratio up to {format_ratio(worst)}, within the 5 % tolerated)")
        return "\n".join(lines)


def format_ratio(r: float | None) -> str:
    """``"1.23x"``, or ``"n/a"`` for a missing or non-finite ratio."""
    return "n/a" if r is None or not math.isfinite(r) else f"{r:.3g}x"
