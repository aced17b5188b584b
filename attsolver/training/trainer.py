"""``fit()``: train a corrector on (noisy) reference trajectories.

The loop: one-step residual targets (docs/method.md §1 and §4) or a k-interval rollout loss through
:func:`attsolver.solve`; Adam with cosine decay; a validation split by trajectory with early
stopping; a tqdm bar; an atomic checkpoint every epoch that ``resume=True`` continues from
to bit-identical weights; a clear error (and the last good checkpoint kept) when the loss
turns non-finite; and DistributedDataParallel on the gloo backend when run under
``torchrun``.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..correctors.base import (
    FIT_CHECKPOINT_FORMAT, SCHEMA_VERSION, Corrector, _dtype_name, read_checkpoint,
)

__all__ = ["fit", "FitHistory", "NonFiniteLossError", "FitCheckWarning"]

# relative tolerance for "the data interval is a whole number of steps" and "t is uniform"
_GRID_RTOL = 1e-9


class NonFiniteLossError(FloatingPointError):
    """The training loss (or its gradient) became NaN/inf.

    Attributes:
        epoch: the epoch (1-based) in which it happened.
        batch: the batch index (0-based) within that epoch.
        checkpoint: the checkpoint path left untouched (the last completed epoch), or ``None``.
    """

    def __init__(self, message: str, *, epoch: int, batch: int, checkpoint: Path | None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.checkpoint = checkpoint


class FitCheckWarning(UserWarning):
    """``fit``'s check of its own result found a problem (worse than classical, nothing learned,
    noise-dominated targets); the message says what to change."""


@dataclass(repr=False)
class FitHistory:
    """What :func:`fit` returns.

    Attributes:
        train_loss, val_loss, lr: one entry per epoch run (``val_loss`` is NaN without a
            validation split); losses are mean squared errors of the *normalised* residual
            (1.0 = no better than the zero correction when the residuals have zero mean).
        best_epoch: 1-based epoch with the lowest monitored loss (0 if none ran).
        best_loss: that loss.
        monitor: ``"val"`` or ``"train"`` (without a validation split).
        epochs_run: epochs completed in total (including those before a resume).
        stopped_early: early stopping ended the run.
        resumed_from: the completed epoch the run resumed from, else ``None``.
        wall_time_s: seconds spent in this call.
        check: the end-of-fit check (``check=True``): ``rollout`` (validation rollout error of
            the corrected and the uncorrected solver from each trajectory's first state, up to a
            few horizons, and their ratio), ``zero_loss`` (the loss of the zero correction on the
            monitored data: the uncorrected one-step residuals or k-interval rollouts), ``residual_to_noise`` (RMS of the classical
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
                f"{_fmt_ratio(r)} at {k} step{'s' if k > 1 else ''}" for k, r in zip(roll["horizons"], roll["ratio"])))
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
                lines.append(f"  {k:5d} steps: corrected {ec:.3g}, classical {e0:.3g}, ratio {_fmt_ratio(r)}")
        rn = self.check.get("residual_to_noise")
        if rn and rn.get("ratio") is not None:
            lines.append(f"classical residual / observation noise in the one-step targets: {rn['ratio']:.3g} "
                         f"({rn['how']})")
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        if not self.warnings and self.check:
            lines.append("check passed: the corrected rollout beats the classical one at every horizon checked")
        return "\n".join(lines)


def _fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None or not math.isfinite(r) else f"{r:.3g}x"


# --------------------------------------------------------------------------- public entry


def fit(
    corrector: Corrector,
    data: Any,
    *,
    method: str | None = None,
    step_size: float | None = None,
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 256,
    rollout_steps: int = 0,
    val_fraction: float = 0.2,
    patience: int | None = 20,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    min_lr_ratio: float = 0.0,
    restore_best: bool = True,
    system: Callable[[Tensor, Tensor], Tensor] | None = None,
    autonomous: bool | None = None,
    on_epoch_end: Callable[[int, FitHistory], None] | None = None,
    f: Callable[[Tensor, Tensor], Tensor] | None = None,
    check: bool = True,
) -> FitHistory:
    """Train ``corrector`` in place on the trajectories in ``data``.

    **Targets.**  With ``rollout_steps=0`` and a data interval ``dt`` equal to the step
    ``h``, each pair of consecutive observations gives the one-step residual
    ``r_n = y_obs(t_{n+1}) - Phi_h(y_obs(t_n))`` (``Phi_h`` the classical step, computed in
    float64) and the loss is ``mean(((C(y_n, dy_n, h) - r_n) / sigma)^2)`` with ``sigma`` the
    corrector's output scale.  With ``rollout_steps=k >= 1``, or when ``dt`` is a multiple
    ``m > 1`` of ``h`` (a single step's residual is then not observed), the loss is taken on
    windows of ``k`` data intervals (``max(k, 1)``): the corrected solver is run with
    :func:`attsolver.solve` from ``y_obs(t_n)`` for ``k`` intervals (``k m`` steps) and
    ``mean(((y_hat(t_{n+j}) - y_obs(t_{n+j})) / (m sigma))^2)`` over ``j = 1..k`` is
    back-propagated through all the steps.

    **Normalisation.**  Before training, the corrector's input mean/std and output scale
    are set from the training trajectories (per component; the output scale is the RMS of
    the per-step residual ``r / (m h^{output_order})``).

    **Optimisation.**  Adam, learning rate decayed per epoch by a cosine from ``lr`` to
    ``min_lr_ratio * lr`` over ``epochs``; the trajectories are split into training and
    validation parts (``val_fraction``, by trajectory, seeded); training stops after
    ``patience`` epochs without a better monitored loss and, with ``restore_best``, the
    best epoch's weights are put back.  The corrector ends in eval mode with
    ``training_info`` recording the data and settings.

    **Checkpoints.**  With ``checkpoint=path`` a checkpoint (model, best weights, optimizer,
    scheduler, RNG states, epoch, history, settings) is written atomically after every
    epoch.  ``resume=True`` continues from it to the same weights an uninterrupted run
    would reach (a missing file starts afresh); the settings, the data and the number of
    processes must match (``epochs`` and ``patience`` may change; the cosine schedule then
    follows the new ``epochs``).
    Without ``resume`` an existing file is an error unless ``overwrite=True``.
    ``attsolver.correctors.load_corrector(path)`` reads the best weights from it.

    **Distributed.**  Under ``torchrun --nproc_per_node=N`` (or with a process group already
    initialised) the model is wrapped in DistributedDataParallel (gloo on CPU), the training
    samples are sharded with a DistributedSampler (each process takes ``batch_size // N``
    samples per step, so the global batch is unchanged) and only rank 0 writes the
    checkpoint.  All ranks end with the same weights.

    Args:
        corrector: a :class:`attsolver.correctors.Corrector`; its dtype is the training dtype.
        data: a :class:`attsolver.data.TrajectoryDataset` or the path of an HDF5 file from
            :func:`attsolver.data.save_h5`.  ``t`` must be uniform.
        method, step_size: default the corrector's; if given they must equal it.
        epochs: epochs to run in total (>= 1).
        lr: Adam learning rate.
        batch_size: samples (pairs or windows) per optimisation step, over all processes.
        rollout_steps: ``k`` data intervals per training window (0: one-step targets).
        val_fraction: fraction of trajectories held out for validation, in ``[0, 1)``; 0
            monitors the training loss instead.
        patience: epochs without improvement before stopping; ``None`` never stops early.
        seed: seeds the split and the per-epoch shuffling; equal seeds give equal runs.
        checkpoint: path of the training checkpoint, or ``None``.
        resume: continue from ``checkpoint`` if it exists.
        overwrite: allow replacing an existing ``checkpoint`` without resuming.
        progress: report the epochs (rank 0): a tqdm bar on a terminal, otherwise INFO log
            lines on the ``attsolver.progress`` logger every few seconds (a cluster log shows them).
        weight_decay: Adam weight decay.
        grad_clip: clip the gradient norm to this value, or ``None``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        restore_best: put the best epoch's weights back at the end.
        system: the right-hand side ``f(t, y)`` — any callable in torchdiffeq's convention;
            default ``data.make_system()`` (the built-in system the data records).  Required
            for data of a user's own ``f`` (``f=`` is the same argument).
        autonomous: whether ``f`` ignores ``t`` (windows starting at different times then
            share one solve); default ``True`` for attsolver systems, else ``False``.
        on_epoch_end: called as ``on_epoch_end(epoch, history)`` after each epoch's
            checkpoint is written.
        f: the same as ``system`` (the name ``solve`` uses); give one of them.
        check: at the end, check the result (see ``FitHistory.check``): the validation
            rollout error of the corrected solver against the uncorrected one at a few
            horizons; warn (:class:`FitCheckWarning`) when the corrected rollout is worse,
            when the loss did not fall well below the zero correction's, or when the
            one-step targets are dominated by observation noise — with what to change.

    Returns:
        A :class:`FitHistory`.

    Raises:
        TypeError / ValueError: bad arguments or data (NaN rows, mismatched state shape,
            non-uniform times, ``dt`` not a whole multiple of ``step_size``, too few
            trajectories for the split), or a checkpoint that cannot be resumed (another
            corrector class or config, other settings or data, newer schema, damaged file).
            Files already written are left as they were.
        FileExistsError: ``checkpoint`` exists and neither ``resume`` nor ``overwrite``.
        NonFiniteLossError: the loss became non-finite; the corrector is put back to its
            state at the end of the last completed epoch (what the checkpoint holds).
    """
    started = time.perf_counter()
    args = _check_args(corrector, method, step_size, epochs, lr, batch_size, rollout_steps, val_fraction,
                       patience, seed, weight_decay, grad_clip, min_lr_ratio)
    data = _as_dataset(data)
    ckpt_path = None if checkpoint is None else Path(checkpoint)
    if resume and ckpt_path is None:
        raise ValueError("resume=True needs checkpoint=path (the checkpoint of the run to continue)")
    if ckpt_path is not None and ckpt_path.exists() and not resume and not overwrite:
        raise FileExistsError(
            f"checkpoint {ckpt_path} exists; pass resume=True to continue that run, overwrite=True "
            "to start a new one over it, or another path"
        )
    if f is not None and system is not None:
        raise ValueError("give the right-hand side once: system=f or f=f, not both")
    f = system if system is not None else f
    if f is None:
        try:
            f = data.make_system()
        except ValueError as e:
            raise ValueError(
                f"fit needs the right-hand side: pass system=f (the f(t, y) the data came from); the data's "
                f"system {data.system['name']!r} cannot be rebuilt from the registry ({e})"
            ) from None
    if not callable(f):
        raise TypeError(f"system must be callable as f(t, y), got {type(f).__name__}")
    if autonomous is None:
        from ..systems import System

        autonomous = isinstance(f, System)
    if getattr(corrector, "uses_time", False):
        autonomous = False  # the corrector reads the time: windows keep their own start times

    rank, world, owned_group = _distributed_context()
    try:
        history = _fit(corrector, data, f, bool(autonomous), args, ckpt_path, resume, progress, restore_best,
                       on_epoch_end, rank, world, started)
        if check:
            history.check = _check_result(corrector, data, f, args, history, rank == 0, bool(autonomous))
            history.wall_time_s = time.perf_counter() - started
        return history
    finally:
        if owned_group:
            import torch.distributed as dist

            dist.destroy_process_group()


# --------------------------------------------------------------------------- validation


def _check_args(corrector, method, step_size, epochs, lr, batch_size, rollout_steps, val_fraction,
                patience, seed, weight_decay, grad_clip, min_lr_ratio) -> dict[str, Any]:
    if not isinstance(corrector, Corrector):
        raise TypeError(
            f"corrector must be an attsolver Corrector (NeurVec, Hypersolver, AttSolver, ...), "
            f"got {type(corrector).__name__}"
        )
    if method is not None and method != corrector.method:
        raise ValueError(
            f"method {method!r} differs from the corrector's {corrector.method!r}; build the "
            f"corrector for the method it will correct ({type(corrector).__name__}(..., method={method!r}))"
        )
    if step_size is not None:
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) \
                or abs(step_size - corrector.step_size) > _GRID_RTOL * corrector.step_size:
            raise ValueError(
                f"step_size {step_size!r} differs from the corrector's {corrector.step_size:g}; build "
                f"the corrector for the step it will correct ({type(corrector).__name__}(..., "
                f"step_size={step_size!r}))"
            )

    def positive_int(name, v):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
        return int(v)

    def number(name, v, lo, hi=math.inf, lo_open=False):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or v < lo or (lo_open and v == lo) or v > hi:
            raise ValueError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}")
        return float(v)

    if isinstance(rollout_steps, bool) or not isinstance(rollout_steps, numbers.Integral) or rollout_steps < 0:
        raise ValueError(f"rollout_steps must be an integer >= 0, got {rollout_steps!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) \
            or not (0 <= val_fraction < 1):
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    return {
        "method": corrector.method,
        "step_size": corrector.step_size,
        "epochs": positive_int("epochs", epochs),
        "lr": number("lr", lr, 0.0, lo_open=True),
        "batch_size": positive_int("batch_size", batch_size),
        "rollout_steps": int(rollout_steps),
        "val_fraction": float(val_fraction),
        "patience": None if patience is None else positive_int("patience", patience),
        "seed": int(seed),
        "weight_decay": number("weight_decay", weight_decay, 0.0),
        "grad_clip": None if grad_clip is None else number("grad_clip", grad_clip, 0.0, lo_open=True),
        "min_lr_ratio": number("min_lr_ratio", min_lr_ratio, 0.0, 1.0),
    }


def _as_dataset(data):
    from ..data import TrajectoryDataset, load_h5

    if isinstance(data, (str, os.PathLike)):
        data = load_h5(data)
    if not isinstance(data, TrajectoryDataset):
        raise TypeError(
            f"data must be a TrajectoryDataset (attsolver.data.generate_trajectories / load_h5) or "
            f"an HDF5 path, got {type(data).__name__}"
        )
    return data


def _check_data(data, corrector: Corrector, args: dict[str, Any]) -> tuple[float, int]:
    """Finite values, matching state shape, uniform grid; returns ``(dt, steps per interval)``."""
    y = data.y
    ok = torch.isfinite(y.reshape(y.shape[0], -1)).all(dim=1)
    if not bool(ok.all()):
        bad = (~ok).nonzero().flatten().tolist()
        shown = ", ".join(map(str, bad[:10])) + (f", ... ({len(bad)} in all)" if len(bad) > 10 else "")
        raise ValueError(
            f"data.y has NaN or infinite values in trajectory index(es) {shown}; drop them with "
            "data.subset([...]) before fit"
        )
    if tuple(data.state_shape) != corrector.state_shape:
        raise ValueError(
            f"the data's states have shape {tuple(data.state_shape)} but the {type(corrector).__name__} "
            f"was built for state shape {corrector.state_shape}; build it with "
            f"state_shape={tuple(data.state_shape)} (data.state_shape)"
        )
    t = data.t.double()
    if len(t) < 2:
        raise ValueError("the data has a single time point; fit needs at least two per trajectory")
    dts = (t[1:] - t[:-1]).numpy()
    dt = float(dts.mean())
    if np.abs(dts - dt).max() > 1e-6 * dt:
        raise ValueError(
            f"the data's time grid is not uniform (intervals from {dts.min():g} to {dts.max():g}); "
            "fit needs equally spaced observations"
        )
    h = args["step_size"]
    ratio = dt / h
    m = round(ratio)
    if m < 1 or abs(ratio - m) > 1e-6 * max(1.0, ratio):
        raise ValueError(
            f"the data interval dt={dt:g} is not a whole multiple of the corrector's step_size={h:g}; "
            f"train with step_size=dt/m for an integer m (e.g. {dt / max(1, math.floor(ratio)):g}) or "
            "regenerate the data on a grid of multiples of the step"
        )
    k = max(args["rollout_steps"], 1)
    if len(t) < k + 1:
        raise ValueError(
            f"rollout_steps={args['rollout_steps']} needs trajectories of at least {k + 1} times; "
            f"the data has {len(t)}"
        )
    return dt, m


# --------------------------------------------------------------------------- data preparation


def _classical(method: str, f, y: Tensor, t0: np.ndarray, h: float, n_steps: int, autonomous: bool) -> Tensor:
    """``Phi_h^{n_steps}`` applied to ``y [n, m, *state]`` whose column ``j`` starts at time ``t0[j]``."""
    from ..steppers import get_method

    spec = get_method(method)
    n, m = y.shape[:2]
    state_shape = y.shape[2:]

    def advance(yb: Tensor, t_start: float) -> Tensor:
        stepper = spec.build(f, yb)
        nodes = stepper.nodes
        state = stepper.to_state(yb)
        for s in range(n_steps):
            ts0 = t_start + s * h
            ts = [torch.tensor(ts0 + c * h, dtype=yb.dtype, device=yb.device) for c in nodes]
            state = stepper.step(ts, state, h)
        return stepper.from_state(state)

    with torch.no_grad():
        if autonomous:
            return advance(y.reshape(n * m, *state_shape), 0.0).reshape(y.shape)
        return torch.stack([advance(y[:, j], float(t0[j])) for j in range(m)], dim=1)


@dataclass
class _Prepared:
    """Training or validation samples in the corrector's dtype and device."""

    kind: str  # "step" (one-step regression) or "window" (rollout through solve)
    n_samples: int
    tensors: tuple[Tensor, ...]


def _prepare(corrector, data, f, autonomous, dt, m, args, fit_stats: bool) -> tuple[_Prepared, dict[str, Any]]:
    h = args["step_size"]
    y = data.y.to(torch.float64)
    n, nt = y.shape[:2]
    t = data.t.double().numpy()
    y_step = _classical(args["method"], f, y[:, :-1], t[:-1], h, 1, autonomous)
    dy1 = y_step - y[:, :-1]
    t_start = torch.as_tensor(t[:-1], dtype=torch.float64).expand(n, nt - 1)  # each sample's start time
    # residual over one data interval (m steps); for m == 1 the one-step target
    y_interval = y_step if m == 1 else _classical(args["method"], f, y[:, :-1], t[:-1], h, m, autonomous)
    r_interval = y[:, 1:] - y_interval
    stats = {}
    if fit_stats:
        r = r_interval.reshape(-1, corrector.state_dim)
        u = corrector.compute_features(y[:, :-1].reshape(-1, corrector.state_dim),
                                       dy1.reshape(-1, corrector.state_dim), h, t_start.reshape(-1))
        mean = u.mean(dim=0)
        std = u.std(dim=0, correction=0)
        # a constant feature (e.g. h itself) is centred but not scaled
        std = torch.where(std > 1e-12 * torch.clamp(mean.abs(), min=1.0), std, torch.ones_like(std))
        per_step = r / (m * (h ** corrector.output_order))
        rms = per_step.square().mean(dim=0).sqrt()
        top = float(rms.max())
        floor = 1e-12 * top if top > 0 else 1.0
        rms = torch.where(rms > floor, rms, torch.full_like(rms, top if top > 0 else 1.0))
        stats = {"in_mean": mean, "in_std": std, "out_scale": rms}
    dev, dtype = corrector.out_scale.device, corrector.dtype
    k = max(args["rollout_steps"], 1)
    if args["rollout_steps"] == 0 and m == 1:
        flat = [v.reshape(-1, corrector.state_dim).to(device=dev, dtype=dtype) for v in (y[:, :-1], dy1, r_interval)]
        flat.append(t_start.reshape(-1).to(device=dev, dtype=dtype))
        return _Prepared("step", flat[0].shape[0], tuple(flat)), stats
    n_windows = nt - k
    return _Prepared("window", n * n_windows, (y.to(device=dev, dtype=dtype),)), stats


class _Objective(nn.Module):
    """Per-sample losses of a batch; wraps the corrector so DDP sees one forward per step."""

    def __init__(self, corrector: Corrector, f, args: dict[str, Any], m: int, t_grid: Tensor, autonomous: bool):
        super().__init__()
        self.corrector = corrector
        self.f = f
        self.method = args["method"]
        self.h = args["step_size"]
        self.k = max(args["rollout_steps"], 1)
        self.m = m
        self.t_grid = t_grid  # float64 data times
        self.autonomous = autonomous

    def forward(self, kind: str, batch: tuple[Tensor, ...]) -> Tensor:
        c = self.corrector
        scale = c.output_scale(self.h).detach()
        if kind == "step":
            y, dy, r, ts = batch
            return ((c(ts if c.uses_time else None, y, dy, self.h) - r) / scale).square().mean(dim=1)
        from ..integrate.boundary import solve

        y_start, targets, starts = batch  # [b, *s], [b, k, *s], [b]
        opts = {"check_finite": False}
        if self.autonomous:
            t = self.t_grid[: self.k + 1] - self.t_grid[0]
            pred = solve(self.f, y_start, t, method=self.method, step_size=self.h, corrector=c, options=opts)[1:]
            pred = pred.transpose(0, 1)
        else:
            order, parts = [], []
            for s in torch.unique(starts).tolist():
                sel = (starts == s).nonzero().flatten()
                t = self.t_grid[s: s + self.k + 1]
                parts.append(solve(self.f, y_start[sel], t, method=self.method, step_size=self.h,
                                   corrector=c, options=opts)[1:].transpose(0, 1))
                order.append(sel)
            pred = torch.cat(parts)[torch.argsort(torch.cat(order))]
        err = (pred - targets) / (self.m * scale).reshape(c.state_shape)
        return err.square().reshape(err.shape[0], -1).mean(dim=1)


def _batch(prep: _Prepared, idx: Tensor, k: int) -> tuple[str, tuple[Tensor, ...]]:
    if prep.kind == "step":
        return "step", tuple(v[idx] for v in prep.tensors)
    (y,) = prep.tensors
    n_windows = y.shape[1] - k
    traj, start = idx // n_windows, idx % n_windows
    times = start[:, None] + torch.arange(k + 1)
    win = y[traj[:, None], times]  # [b, k+1, *s]
    return "window", (win[:, 0], win[:, 1:], start)


# --------------------------------------------------------------------------- distributed


def _distributed_context() -> tuple[int, int, bool]:
    """``(rank, world_size, whether fit created the process group)``."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("MASTER_ADDR"):
        dist.init_process_group(backend="gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _all_sum(values: list[float], world: int) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


class _Count:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


# --------------------------------------------------------------------------- checkpoints


def _fingerprint(data) -> str:
    h = hashlib.sha256()
    for v in (data.t, data.y):
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def _set_rng_state(state: dict[str, Any], source: Path | None = None) -> None:
    try:
        torch.set_rng_state(state["torch"])
        s = state["numpy"]
        np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"],
                             s["cached_gaussian"]))
        p = state["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as e:
        raise ValueError(
            f"{source or 'the checkpoint'}: its random-number-generator state cannot be restored "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); the checkpoint is "
            "damaged — start a new run (overwrite=True) or use another checkpoint path"
        ) from None


def _load_for_resume(path: Path, corrector: Corrector, settings: dict[str, Any]) -> dict[str, Any]:
    ckpt = read_checkpoint(path, map_location=corrector.out_scale.device)
    if ckpt.get("format") != FIT_CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is a saved corrector, not a training checkpoint written by fit(); it cannot be "
            "resumed (load it with load_corrector, or train with another checkpoint path)"
        )
    needed = ("model", "optimizer", "scheduler", "epoch", "history", "settings", "rng")
    missing = [k for k in needed if k not in ckpt]
    if missing:
        raise ValueError(f"{path} lacks {missing}; the checkpoint is damaged")
    held = ckpt["model"].get("class")
    if held != type(corrector).__name__:
        raise ValueError(
            f"{path} is a checkpoint of a {held} corrector, but fit was given a "
            f"{type(corrector).__name__}; resume with a {held} or use another checkpoint path"
        )
    old = ckpt["settings"]
    diffs = [f"{k}: checkpoint {old.get(k)!r}, now {v!r}" for k, v in settings.items() if old.get(k) != v]
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: the run differs from the one that wrote it ("
            + "; ".join(diffs) + "); resume with the same settings and data, or start a new run "
            "with another checkpoint path (or overwrite=True)"
        )
    return ckpt


def _write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    from .._io import save_checkpoint

    save_checkpoint(path, payload)  # sealed; verified by read_checkpoint on resume


def _clone_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- the loop


def _fit(corrector, data, f, autonomous, args, ckpt_path, resume, progress, restore_best, on_epoch_end,
         rank, world, started) -> FitHistory:
    from torch.utils.data.distributed import DistributedSampler

    from .._progress import progress as make_progress

    dt, m = _check_data(data, corrector, args)
    n = len(data)
    if args["val_fraction"] > 0:
        n_val = max(1, round(args["val_fraction"] * n))
        if n - n_val < 1:
            raise ValueError(
                f"too few trajectories: val_fraction={args['val_fraction']:g} of {n} leaves none for "
                f"training; give at least 2 trajectories or val_fraction=0"
            )
        train_data, val_data = data.split([n - n_val, n_val], seed=args["seed"])
    else:
        train_data, val_data = data, None
    k = max(args["rollout_steps"], 1)

    settings = _settings(corrector, data, args, world, autonomous)
    resumed = None
    if resume and ckpt_path is not None and ckpt_path.exists():
        resumed = _load_for_resume(ckpt_path, corrector, settings)

    train, stats = _prepare(corrector, train_data, f, autonomous, dt, m, args, fit_stats=resumed is None)
    val = None if val_data is None else _prepare(corrector, val_data, f, autonomous, dt, m, args, False)[0]
    if resumed is None:
        bad = [k for k in ("in_mean", "in_std", "out_scale")
               if not bool(torch.isfinite(torch.as_tensor(stats[k])).all())]
        if bad:  # e.g. values near 1e308: finite, but their squares overflow
            raise ValueError(
                f"the data's scale overflows its dtype: the normalisation statistics {bad} are not finite "
                f"(|y| reaches {float(data.y.abs().max()):.3g}); rescale the data (or drop the outlying "
                "trajectories) before fit"
            )
        corrector.set_normalization(stats["in_mean"], stats["in_std"], stats["out_scale"])

    objective = _Objective(corrector, f, args, m, data.t.double().to(corrector.out_scale.device), autonomous)
    params = [p for p in corrector.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args["lr"], weight_decay=args["weight_decay"])
    epochs, floor = args["epochs"], args["min_lr_ratio"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs))
    )

    history = FitHistory(monitor="val" if val is not None else "train")
    best_state, bad_epochs, start_epoch, stopped = None, 0, 0, False
    if resumed is not None:
        corrector.load_state_dict(resumed["model"]["state_dict"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        _set_rng_state(resumed["rng"], ckpt_path)
        h = resumed["history"]
        history.train_loss, history.val_loss, history.lr = list(h["train_loss"]), list(h["val_loss"]), list(h["lr"])
        history.best_epoch, history.best_loss = int(resumed["best_epoch"]), float(resumed["best_loss"])
        best_state = resumed.get("best_state_dict")
        bad_epochs, start_epoch = int(resumed["bad_epochs"]), int(resumed["epoch"])
        stopped = bool(resumed.get("stopped", False))
        history.stopped_early = stopped
        history.resumed_from = start_epoch

    model: nn.Module = objective
    if world > 1:  # after any resume: DDP starts by broadcasting rank 0's parameters and buffers
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(objective)
    local_bs = max(1, args["batch_size"] // world)
    sampler = DistributedSampler(_Count(train.n_samples), num_replicas=world, rank=rank, shuffle=True,
                                 seed=args["seed"], drop_last=False)
    val_idx = None if val is None else torch.arange(rank, val.n_samples, world)
    bar = make_progress(epochs, f"fit {type(corrector).__name__}", unit="epoch",
                        enabled=bool(progress) and rank == 0, initial=min(start_epoch, epochs))
    corrector.train()
    try:
        for epoch in range(start_epoch, epochs):
            if stopped:
                break
            sampler.set_epoch(epoch)
            order = torch.tensor(list(iter(sampler)), dtype=torch.long)
            last_good = _clone_state(corrector)
            loss_sum, count = 0.0, 0
            for b, s in enumerate(range(0, len(order), local_bs)):
                idx = order[s: s + local_bs]
                kind, batch = _batch(train, idx, k)
                loss = model(kind, batch).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = nn.utils.clip_grad_norm_(params, args["grad_clip"] if args["grad_clip"] else math.inf)
                finite = float(bool(torch.isfinite(loss)) and bool(torch.isfinite(gnorm)))
                if _all_sum([finite], world)[0] < world:
                    corrector.load_state_dict(last_good)
                    kept = (f"the checkpoint {ckpt_path} still holds epoch {epoch}" if ckpt_path is not None
                            and epoch > 0 else "no checkpoint was written")
                    raise NonFiniteLossError(
                        f"the training loss became non-finite in epoch {epoch + 1}, batch {b} (loss "
                        f"{float(loss.detach()):g}, gradient norm {float(gnorm):g}); the corrector is back at its "
                        f"state after epoch {epoch} and {kept}. Lower lr (now {scheduler.get_last_lr()[0]:g}), "
                        "set grad_clip, or check the data for outliers",
                        epoch=epoch + 1, batch=b, checkpoint=ckpt_path,
                    )
                optimizer.step()
                loss_sum += float(loss.detach()) * len(idx)
                count += len(idx)
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            scheduler.step()
            total, cnt = _all_sum([loss_sum, float(count)], world)
            train_loss = total / cnt
            val_loss = _evaluate(objective, val, val_idx, k, args["batch_size"], world) if val is not None else math.nan
            if val is not None and not math.isfinite(val_loss):
                kept = (f"the checkpoint {ckpt_path} still holds epoch {epoch}" if ckpt_path is not None
                        and epoch > 0 else "no checkpoint was written")
                raise NonFiniteLossError(
                    f"the validation loss is {val_loss} after epoch {epoch + 1} (training loss {train_loss:g}); "
                    f"{kept}. Check the validation data for outliers or overflow, or lower lr",
                    epoch=epoch + 1, batch=-1, checkpoint=ckpt_path,
                )
            history.train_loss.append(train_loss)
            history.val_loss.append(val_loss)
            monitored = val_loss if val is not None else train_loss
            if monitored < history.best_loss:
                history.best_loss, history.best_epoch = monitored, epoch + 1
                best_state, bad_epochs = _clone_state(corrector), 0
            else:
                bad_epochs += 1
            stopped = args["patience"] is not None and bad_epochs >= args["patience"]
            history.stopped_early = stopped
            history.epochs_run = epoch + 1
            _record(corrector, data, train_data, val_data, args, history, world, m, dt)
            if ckpt_path is not None and rank == 0:
                _write_checkpoint(ckpt_path, {
                    "format": FIT_CHECKPOINT_FORMAT, "schema_version": SCHEMA_VERSION,
                    "model": corrector.checkpoint_dict(), "best_state_dict": best_state,
                    "training_info": copy.deepcopy(corrector.training_info),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(), "epoch": epoch + 1, "best_epoch": history.best_epoch,
                    "best_loss": history.best_loss, "bad_epochs": bad_epochs, "stopped": stopped,
                    "history": {"train_loss": history.train_loss, "val_loss": history.val_loss,
                                "lr": history.lr},
                    "settings": settings,
                })
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.3g}", val=f"{val_loss:.3g}")
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, history)
    finally:
        bar.close()
    history.epochs_run = max(history.epochs_run, start_epoch)
    if restore_best and best_state is not None:
        corrector.load_state_dict(best_state)
    _record(corrector, data, train_data, val_data, args, history, world, m, dt)
    corrector.eval()
    history.wall_time_s = time.perf_counter() - started
    return history


@torch.no_grad()
def _evaluate(objective: _Objective, val: _Prepared, idx: Tensor, k: int, batch_size: int, world: int) -> float:
    corrector = objective.corrector
    was_training = corrector.training
    corrector.eval()
    total, count = 0.0, 0
    try:
        for s in range(0, len(idx), max(batch_size, 1) * 4):
            chunk = idx[s: s + max(batch_size, 1) * 4]
            kind, batch = _batch(val, chunk, k)
            total += float(objective(kind, batch).sum())
            count += len(chunk)
    finally:
        corrector.train(was_training)
    total, count = _all_sum([total, float(count)], world)
    return total / count if count else math.nan


def _settings(corrector, data, args, world, autonomous) -> dict[str, Any]:
    keep = ("method", "step_size", "lr", "batch_size", "rollout_steps", "val_fraction", "seed",
            "weight_decay", "grad_clip", "min_lr_ratio")
    return {
        "class": type(corrector).__name__,
        "config": corrector.config(),
        **{k: args[k] for k in keep},
        "world_size": world,
        "autonomous": autonomous,
        "data": _fingerprint(data),
    }


def _record(corrector, data, train_data, val_data, args, history, world, m, dt) -> None:
    best = history.best_loss
    corrector._trained_dtype = _dtype_name(corrector.dtype)
    corrector.training_info = {
        "data": {
            "system": copy.deepcopy(data.system),
            "n_trajectories": len(data),
            "n_train": len(train_data),
            "n_val": 0 if val_data is None else len(val_data),
            "n_times": data.n_times,
            "dt": dt,
            "noise_level": data.noise_level,
        },
        "fit": {
            "epochs_run": history.epochs_run,
            "best_epoch": history.best_epoch,
            "best_loss": best if math.isfinite(best) else None,
            "monitor": history.monitor,
            "steps_per_interval": m,
            "world_size": world,
            **{k: args[k] for k in ("lr", "batch_size", "rollout_steps", "val_fraction", "seed")},
        },
    }


# --------------------------------------------------------------------------- the end-of-fit check

#: trajectories used by the end-of-fit check (enough for a stable mean, cheap to roll out)
_CHECK_MAX_TRAJ = 64
#: corrected / classical rollout error above this counts as worse (noise in the ratio below it)
_WORSE_RATIO = 1.05
#: best loss above this fraction of the zero correction's: nothing meaningful learned
_NOTHING_LEARNED = 0.9


def _check_result(corrector: Corrector, data, f, args: dict[str, Any], history: FitHistory,
                  speak: bool, autonomous: bool) -> dict[str, Any]:
    """Validation rollout of the corrected vs the uncorrected solver, the zero-correction loss
    and the residual-to-noise ratio of the targets; warnings in plain words."""
    import warnings

    from ..integrate.boundary import solve

    dt, m = _check_data(data, corrector, args)
    h, method = args["step_size"], args["method"]
    n = len(data)
    if args["val_fraction"] > 0 and n >= 2:
        n_val = max(1, round(args["val_fraction"] * n))
        train_data, part = data.split([n - n_val, n_val], seed=args["seed"])
        which = "validation"
    else:
        train_data = part = data
        which = "training"
    if len(part) > _CHECK_MAX_TRAJ:
        part = part.subset(list(range(_CHECK_MAX_TRAJ)))
    model = copy.deepcopy(corrector).double().eval()
    obs = part.y.to(torch.float64)
    t = data.t.to(torch.float64)
    y0 = obs[:, 0].to(model.out_scale.device)
    opts = {"check_finite": False}
    with torch.no_grad():
        pred_c = solve(f, y0, t.to(y0.device), method=method, step_size=h, corrector=model,
                       options=opts).transpose(0, 1).cpu()
        pred_0 = solve(f, y0, t.to(y0.device), method=method, step_size=h, options=opts).transpose(0, 1).cpu()
    n_int = obs.shape[1] - 1
    horizons = sorted({1, max(1, n_int // 4), max(1, n_int // 2), n_int})

    def err(pred: Tensor, k: int) -> float:
        d = (pred[:, 1:k + 1] - obs[:, 1:k + 1]).reshape(len(obs), -1)
        ref = obs[:, 1:k + 1].reshape(len(obs), -1).norm(dim=1)
        e = d.norm(dim=1) / ref
        e = torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))
        return float(e.mean())

    ec = [err(pred_c, k) for k in horizons]
    e0 = [err(pred_0, k) for k in horizons]
    ratio = [c / z if z > 0 and math.isfinite(c) else (math.inf if c > 0 else 1.0) for c, z in zip(ec, e0)]
    out: dict[str, Any] = {
        "rollout": {"data": which, "n_trajectories": len(obs), "method": method, "step_size": h,
                    "horizons": [k * m for k in horizons], "err_corrected": ec, "err_classical": e0,
                    "ratio": ratio, "against": "the observations" + (" (noisy)" if data.noise_level > 0 else "")},
    }
    # residuals of the classical step on (up to _CHECK_MAX_TRAJ) training trajectories
    sub = train_data if len(train_data) <= _CHECK_MAX_TRAJ else train_data.subset(list(range(_CHECK_MAX_TRAJ)))
    y = sub.y.to(torch.float64)
    is_auto = autonomous  # the same rule training used (a forced System subclass is not autonomous)
    r = y[:, 1:] - _classical(method, f, y[:, :-1], sub.t.double().numpy()[:-1], h, m, is_auto)
    r = r.reshape(r.shape[0], r.shape[1], -1)
    if args["rollout_steps"] == 0 and m == 1:
        scale = model.output_scale(h).detach().cpu().to(torch.float64)
        zero_part = part if which == "validation" else sub
        yz = zero_part.y.to(torch.float64)
        rz = yz[:, 1:] - _classical(method, f, yz[:, :-1], zero_part.t.double().numpy()[:-1], h, 1, is_auto)
        out["zero_loss"] = float((rz.reshape(-1, corrector.state_dim) / scale).square().mean())
    else:  # window loss: the uncorrected rollout over k data intervals from every observed state
        scale = model.output_scale(h).detach().cpu().to(torch.float64)
        zero_part = part if which == "validation" else sub
        yz = zero_part.y.to(torch.float64)
        tz = zero_part.t.double().numpy()
        k = max(args["rollout_steps"], 1)
        n_w = yz.shape[1] - k
        x, terms = yz[:, :n_w], []
        for j in range(1, k + 1):
            x = _classical(method, f, x, tz[j - 1:j - 1 + n_w], h, m, is_auto)
            d = (x - yz[:, j:j + n_w]).reshape(yz.shape[0], n_w, -1) / (m * scale)
            terms.append(d.square().mean(dim=-1))
        out["zero_loss"] = float(torch.stack(terms).mean())
    t_sub = sub.t.double().numpy()[:-1]
    out["residual_to_noise"] = _residual_to_noise(
        r, y, data, lambda x: _classical(method, f, x, t_sub, h, m, is_auto))

    warn: list[str] = []
    worst = max(range(len(horizons)), key=lambda i: ratio[i])
    if ratio[worst] > _WORSE_RATIO:
        warn.append(
            f"the corrected rollout is WORSE than the uncorrected {method} h={h:g} on the {which} trajectories "
            f"(error {_fmt_ratio(ratio[worst])} the classical one up to {horizons[worst] * m} steps): this corrector "
            "makes the solve less accurate. Train with a rollout loss (rollout_steps=4 or more), more data or "
            "another step, and measure with attsolver.compare before using it"
        )
    zero = out["zero_loss"]
    if zero is not None and math.isfinite(history.best_loss) and history.best_loss > _NOTHING_LEARNED * zero:
        warn.append(
            f"the loss ({history.best_loss:.3g}) did not fall meaningfully below the zero correction's "
            f"({zero:.3g}): the corrector learned (almost) nothing. Check the noise (below), train longer or "
            "with another lr, or use a coarser step whose error is worth learning"
        )
    rn = out["residual_to_noise"]
    if rn.get("ratio") is not None and rn["ratio"] < 1.0:
        size = "less than 0.01x" if rn["ratio"] < 0.01 else f"about {rn['ratio']:.2g}x"
        warn.append(
            f"the one-step targets are noise-dominated: the classical step's residual is {size} the observation "
            f"noise it is fitted through ({rn['how']}), so the corrector mostly fits noise. Use a coarser step "
            "(the residual grows like h^(p+1)), a rollout loss (rollout_steps=k averages the noise over k steps), "
            "or more or cleaner data"
        )
    out["warnings"] = warn
    if speak:
        for w in warn:
            warnings.warn(w, FitCheckWarning, stacklevel=3)
    return out


def _residual_to_noise(r: Tensor, y: Tensor, data, step: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    """RMS of the classical step's clean residual over the RMS that observation noise adds to a
    target, from the residuals ``r [n, nt-1, D]`` of the observed data ``y [n, nt, *state]``
    (``step`` applies the classical step(s) of one data interval to ``y[:, :-1]``).

    A target ``r_n = y_{n+1} - Phi(y_n)`` carries the clean residual ``c_n`` plus the noise
    ``e_{n+1} - (Phi(y_n + e_n) - Phi(y_n))``, independent of ``c_n``, so ``mean r^2 = C + N``.
    With a known relative noise level ``sigma`` (noise ``sigma`` times each component's spread,
    docs/guide/data.md) ``N`` is measured by pushing a fresh draw of such noise through ``Phi``.
    Unknown, it is estimated from the autocovariances ``g_k`` of successive residuals: the noise
    part ``e_{n+1} - e_n`` (``Phi ~ I``) has ``g_0 = 2 s^2``, ``g_1 = -s^2``, ``g_2 = 0``, while
    a smooth clean residual has ``g_k ~ C (1 - a k^2)``; ``3 g_0 - 4 g_1 + g_2 = 10 s^2``
    cancels the clean part to second order.
    """
    ms = float(r.square().mean())
    if data.noise_level > 0:
        spread = data.y.reshape(data.y.shape[0] * data.y.shape[1], -1).std(dim=0, correction=0).to(torch.float64)
        gen = torch.Generator().manual_seed(0)
        x = y[:, :-1]
        e = data.noise_level * spread.reshape(x.shape[2:]) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        pushed = float((step(x + e) - step(x)).square().mean())
        noise_ms = data.noise_level ** 2 * float(spread.square().mean()) + pushed
        how = f"from the recorded noise level {data.noise_level:g}"
    elif bool(data.config.get("noise_level_known", True)):
        return {"ratio": None, "how": "clean data (noise_level 0)"}
    else:
        if r.shape[1] < 4:
            return {"ratio": None, "how": "too few times to estimate the noise"}
        g0 = ms
        g1 = float((r[:, :-1] * r[:, 1:]).mean())
        g2 = float((r[:, :-2] * r[:, 2:]).mean())
        s2 = max((3 * g0 - 4 * g1 + g2) / 10.0, 0.0)
        noise_ms = 2 * s2
        how = "noise estimated from the autocovariance of successive residuals (no noise level recorded)"
    clean_ms = max(ms - noise_ms, 0.0)
    ratio = math.inf if noise_ms == 0 else math.sqrt(clean_ms / noise_ms)
    return {"ratio": ratio if math.isfinite(ratio) else None, "how": how, "residual_rms": math.sqrt(ms),
            "noise_rms": math.sqrt(noise_ms)}
