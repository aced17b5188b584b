"""``fit``'s epochs: the loss of a batch (one-step regression, or a rollout through
:func:`attsolver.solve`), Adam with cosine decay, validation and early stopping, the
non-finite guard, the per-epoch checkpoint and the record on the corrector."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._progress import progress as make_progress
from ..correctors.base import _dtype_name
from ..integrate import solve
from .arguments import check_data
from .checkpoint import clone_state, epoch_payload, load_for_resume, restore, run_settings, write_checkpoint
from .distributed import all_sum, epoch_order, wrap
from .history import FitHistory, NonFiniteLossError
from .loss import RelativeWeights, correlation_error
from .schedule import as_pairs
from .targets import Prepared, batch_of, prepare

__all__ = ["train"]


class Objective(nn.Module):
    """Per-sample losses of a batch; wraps the corrector so DDP sees one forward per step."""

    def __init__(self, corrector, f, args: dict[str, Any], m: int, t_grid: Tensor, autonomous: bool):
        super().__init__()
        self.corrector = corrector
        self.f = f
        self.method = args["method"]
        self.h = args["step_size"]
        self.m = m
        self.t_grid = t_grid  # float64 data times
        self.autonomous = autonomous
        self.checkpoint_steps = args.get("checkpoint_steps")
        self.correlation = args.get("loss") == "correlation"

    def forward(self, kind: str, batch: tuple[Tensor, ...]) -> Tensor:
        return self.per_sample(kind, batch, self.corrector)

    def per_sample(self, kind: str, batch: tuple[Tensor, ...], corrector) -> Tensor:
        """Each sample's normalised squared error with ``corrector`` (``None``: the zero
        correction, the uncorrected step or rollout; ``loss="relative"`` divides by it)."""
        c = self.corrector  # its output scale normalises the errors either way
        scale = c.output_scale(self.h).detach()
        if kind == "step":
            y, dy, r, ts = batch
            if corrector is None:
                return (r / scale).square().mean(dim=1)
            return ((c(ts if c.uses_time else None, y, dy, self.h) - r) / scale).square().mean(dim=1)
        y_start, targets, starts = batch  # [b, *s], [b, k, *s], [b]
        k = targets.shape[1]
        opts = {"check_finite": False}
        if self.checkpoint_steps is not None and torch.is_grad_enabled():
            opts["checkpoint_steps"] = self.checkpoint_steps
        if self.autonomous:
            t = self.t_grid[: k + 1] - self.t_grid[0]
            pred = solve(self.f, y_start, t, method=self.method, step_size=self.h, corrector=corrector,
                         options=opts)[1:]
            pred = pred.transpose(0, 1)
        else:
            order, parts = [], []
            for s in torch.unique(starts).tolist():
                sel = (starts == s).nonzero().flatten()
                t = self.t_grid[s: s + k + 1]
                parts.append(solve(self.f, y_start[sel], t, method=self.method, step_size=self.h,
                                   corrector=corrector, options=opts)[1:].transpose(0, 1))
                order.append(sel)
            pred = torch.cat(parts)[torch.argsort(torch.cat(order))]
        s = (self.m * scale).reshape(c.state_shape)
        if self.correlation:
            return correlation_error(pred / s, targets / s)
        err = (pred - targets) / s
        return err.square().reshape(err.shape[0], -1).mean(dim=1)


@torch.no_grad()
def evaluate(objective: Objective, val: Prepared, k: int, batch_size: int, rank: int, world: int,
             relative: RelativeWeights | None = None) -> float:
    """Mean loss over the validation samples (windows of ``k`` intervals), over all processes
    (``relative``: the relative loss, else the mean squared error)."""
    idx = torch.arange(rank, val.count(k), world)
    corrector = objective.corrector
    was_training = corrector.training
    corrector.eval()
    total, count = 0.0, 0
    try:
        for s in range(0, len(idx), max(batch_size, 1) * 4):
            chunk = idx[s: s + max(batch_size, 1) * 4]
            kind, batch = batch_of(val, chunk, k)
            per = objective(kind, batch)
            total += float((per if relative is None else relative.weigh(per, "val", chunk, k)).sum())
            count += len(chunk)
    finally:
        corrector.train(was_training)
    total, count = all_sum([total, float(count)], world)
    return total / count if count else math.nan


@dataclass
class _Run:
    """What the epochs of one ``fit`` share, and where they stand."""

    corrector: Any
    objective: Objective
    model: nn.Module  # the objective, in DistributedDataParallel when world > 1
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: FitHistory
    train: Prepared
    val: Prepared | None
    args: dict[str, Any]
    settings: dict[str, Any]
    data_info: dict[str, Any]
    m: int
    rank: int
    world: int
    ckpt_path: Path | None
    relative: RelativeWeights | None = None  # loss="relative": the zero correction's errors, the floor
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0
    start_epoch: int = 0
    stopped: bool = False


def train(corrector, data, f, autonomous: bool, args: dict[str, Any], *, ckpt_path: Path | None, resume: bool,
          progress: bool, restore_best: bool, on_epoch_end, rank: int, world: int, started: float) -> FitHistory:
    """Run the epochs (from a checkpoint with ``resume``); the corrector ends in eval mode."""
    run = _set_up(corrector, data, f, autonomous, args, ckpt_path, resume, rank, world)
    epochs, history = args["epochs"], run.history
    bar = make_progress(epochs, f"fit {type(corrector).__name__}", unit="epoch",
                        enabled=bool(progress) and rank == 0, initial=min(run.start_epoch, epochs))
    corrector.train()
    try:
        for epoch in range(run.start_epoch, epochs):
            if run.stopped:
                break
            k = args["schedule"].at(epoch)
            train_loss = _train_epoch(run, epoch, max(k, 1))
            val_loss = _end_epoch(run, epoch, k, train_loss)
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.3g}", val=f"{val_loss:.3g}")
            if on_epoch_end is not None and on_epoch_end(epoch + 1, history) is True:  # the callback asks to stop
                run.stopped = history.stopped_early = True
    finally:
        bar.close()
    history.epochs_run = max(history.epochs_run, run.start_epoch)
    history.loss = args["loss"]
    if run.relative is not None and history.best_epoch:  # the check's "learned nothing" level, on this scale
        k = max(history.rollout_steps[history.best_epoch - 1], 1)
        history.check = {"zero_loss": run.relative.zero_loss("val" if run.val is not None else "train", k)}
    if restore_best and run.best_state is not None:
        corrector.load_state_dict(run.best_state)
    _record(run)
    corrector.eval()
    history.wall_time_s = time.perf_counter() - started
    return history


def _set_up(corrector, data, f, autonomous, args, ckpt_path, resume, rank, world) -> _Run:
    """Split, prepare the samples, set the normalisation, build the optimizer; resume."""
    dt, m = check_data(data, corrector, args)
    train_data, val_data = _split(data, args)
    settings = run_settings(corrector, data, args, world, autonomous)
    resumed = load_for_resume(ckpt_path, corrector, settings) if resume and ckpt_path is not None \
        and ckpt_path.exists() else None
    schedule = args["schedule"]
    one_step = not schedule.scheduled and args["rollout_steps"] == 0 and m == 1
    if one_step and args["loss"] == "correlation":
        raise ValueError(
            "fit: loss='correlation' compares rolled-out states frame by frame, and this is one-step training "
            "(rollout_steps=0 with data one step apart): pass rollout_steps >= 1 (or a rollout_schedule), "
            "or loss='mse'")
    train_set, stats = prepare(corrector, train_data, f, autonomous, m, args, one_step=one_step,
                               fit_stats=resumed is None)
    val = None if val_data is None else prepare(corrector, val_data, f, autonomous, m, args, one_step=one_step,
                                                fit_stats=False)[0]
    if resumed is None:
        _set_normalization(corrector, data, stats)
    objective = Objective(corrector, f, args, m, data.t.double().to(corrector.out_scale.device), autonomous)
    params = [p for p in corrector.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args["lr"], weight_decay=args["weight_decay"])
    epochs, floor = args["epochs"], args["min_lr_ratio"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs))
    )
    data_info = {"system": data.system, "n_trajectories": len(data), "n_train": len(train_data),
                 "n_val": 0 if val_data is None else len(val_data), "n_times": data.n_times, "dt": dt,
                 "noise_level": data.noise_level}
    run = _Run(corrector, objective, objective, params, optimizer, scheduler,
               FitHistory(monitor="val" if val is not None else "train"), train_set, val, args, settings,
               data_info, m, rank, world, ckpt_path)
    if resumed is not None:
        run.best_state, run.bad_epochs, run.start_epoch, run.stopped = restore(
            resumed, ckpt_path, corrector, optimizer, scheduler, run.history, schedule.steps)
    if args.get("loss", "mse") == "relative":  # the zero-correction errors use the normalisation set above
        run.relative = RelativeWeights(objective, {"train": train_set, "val": val})
    run.model = wrap(objective, world)  # after any resume: DDP broadcasts rank 0's state
    return run


def _split(data, args: dict[str, Any]):
    """``(train, val)`` by trajectory, seeded (``val`` is ``None`` without a validation split)."""
    n = len(data)
    if args["val_fraction"] <= 0:
        return data, None
    n_val = max(1, round(args["val_fraction"] * n))
    if n - n_val < 1:
        raise ValueError(
            f"too few trajectories: val_fraction={args['val_fraction']:g} of {n} leaves none for "
            f"training; give at least 2 trajectories or val_fraction=0"
        )
    return data.split([n - n_val, n_val], seed=args["seed"])


def _set_normalization(corrector, data, stats: dict[str, Tensor]) -> None:
    bad = [k for k in ("in_mean", "in_std", "out_scale") if not bool(torch.isfinite(torch.as_tensor(stats[k])).all())]
    if bad:  # e.g. values near 1e308: finite, but their squares overflow
        raise ValueError(
            f"the data's scale overflows its dtype: the normalisation statistics {bad} are not finite "
            f"(|y| reaches {float(data.y.abs().max()):.3g}); rescale the data (or drop the outlying "
            "trajectories) before fit"
        )
    corrector.set_normalization(stats["in_mean"], stats["in_std"], stats["out_scale"])


def _train_epoch(run: _Run, epoch: int, k: int) -> float:
    """One pass over the training samples (windows of ``k`` intervals); the mean loss."""
    args, world = run.args, run.world
    order = epoch_order(run.train.count(k), world, run.rank, args["seed"], epoch)
    local_bs = max(1, args["batch_size"] // world)
    last_good = clone_state(run.corrector)
    loss_sum, count = 0.0, 0
    for b, s in enumerate(range(0, len(order), local_bs)):
        idx = order[s: s + local_bs]
        kind, batch = batch_of(run.train, idx, k)
        per = run.model(kind, batch)
        loss = (per if run.relative is None else run.relative.weigh(per, "train", idx, k)).mean()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = nn.utils.clip_grad_norm_(run.params, args["grad_clip"] if args["grad_clip"] else math.inf)
        finite = float(bool(torch.isfinite(loss)) and bool(torch.isfinite(gnorm)))
        if all_sum([finite], world)[0] < world:
            run.corrector.load_state_dict(last_good)
            raise NonFiniteLossError(
                f"the training loss became non-finite in epoch {epoch + 1}, batch {b} (loss "
                f"{float(loss.detach()):g}, gradient norm {float(gnorm):g}); the corrector is back at its "
                f"state after epoch {epoch} and {_kept(run, epoch)}. Lower lr (now "
                f"{run.scheduler.get_last_lr()[0]:g}), set grad_clip, or check the data for outliers",
                epoch=epoch + 1, batch=b, checkpoint=run.ckpt_path, history=_so_far(run, epoch),
            )
        run.optimizer.step()
        loss_sum += float(loss.detach()) * len(idx)
        count += len(idx)
    run.history.lr.append(float(run.optimizer.param_groups[0]["lr"]))
    run.scheduler.step()
    total, cnt = all_sum([loss_sum, float(count)], world)
    return total / cnt


def _end_epoch(run: _Run, epoch: int, k: int, train_loss: float) -> float:
    """Validate, keep the best weights, decide on early stopping, record and checkpoint."""
    history, val = run.history, run.val
    val_loss = evaluate(run.objective, val, max(k, 1), run.args["batch_size"], run.rank, run.world,
                        run.relative) if val is not None else math.nan
    if val is not None and not math.isfinite(val_loss):
        raise NonFiniteLossError(
            f"the validation loss is {val_loss} after epoch {epoch + 1} (training loss {train_loss:g}); "
            f"{_kept(run, epoch)}. Check the validation data for outliers or overflow, or lower lr",
            epoch=epoch + 1, batch=-1, checkpoint=run.ckpt_path, history=_so_far(run, epoch),
        )
    history.train_loss.append(train_loss)
    history.val_loss.append(val_loss)
    history.rollout_steps.append(k)
    monitored = val_loss if val is not None else train_loss
    # a window of another length scores on another scale: only epochs of one length compete
    comparable = history.best_epoch == 0 or history.rollout_steps[history.best_epoch - 1] == k
    if not comparable or monitored < history.best_loss:
        history.best_loss, history.best_epoch = monitored, epoch + 1
        run.best_state, run.bad_epochs = clone_state(run.corrector), 0
    else:
        run.bad_epochs += 1
    run.stopped = run.args["patience"] is not None and run.bad_epochs >= run.args["patience"]
    history.stopped_early = run.stopped
    history.epochs_run = epoch + 1
    _record(run)
    if run.ckpt_path is not None and run.rank == 0:
        write_checkpoint(run.ckpt_path, epoch_payload(run.corrector, run.best_state, run.optimizer, run.scheduler,
                                                      epoch + 1, history, run.bad_epochs, run.stopped, run.settings))
    return val_loss


def _so_far(run: _Run, epoch: int) -> FitHistory:
    """The history of the epochs completed before a failure in ``epoch`` (0-based)."""
    run.history.epochs_run = epoch
    run.history.loss = run.args["loss"]
    return run.history


def _kept(run: _Run, epoch: int) -> str:
    """What the checkpoint holds after a failure in ``epoch`` (0-based)."""
    if run.ckpt_path is not None and epoch > 0:
        return f"the checkpoint {run.ckpt_path} still holds epoch {epoch}"
    return "no checkpoint was written"


def _record(run: _Run) -> None:
    """``training_info`` on the corrector: the data, the settings and the outcome so far."""
    corrector, history, args = run.corrector, run.history, run.args
    best = history.best_loss
    corrector._trained_dtype = _dtype_name(corrector.dtype)
    fit_info = {
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch,
        "best_loss": best if math.isfinite(best) else None,
        "monitor": history.monitor,
        "steps_per_interval": run.m,
        "world_size": run.world,
        **{k: args[k] for k in ("lr", "batch_size", "rollout_steps", "val_fraction", "seed", "loss")},
    }
    if args["schedule"].scheduled and history.rollout_steps:  # what ran: (first epoch index, steps) pairs
        fit_info["rollout_steps"] = history.rollout_steps[-1]
        fit_info["rollout_schedule"] = as_pairs(history.rollout_steps)
    corrector.training_info = {"data": copy.deepcopy(run.data_info), "fit": fit_info}
