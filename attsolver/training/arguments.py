"""``fit``'s boundary: its arguments, the data and the right-hand side, checked once before any
work starts; each error names the argument and the fix."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validate import (finite_number, integer, is_real, nonnegative_number, positive_int, positive_number,
                         whole_multiple)
from ..correctors import Corrector
from ..data import TrajectoryDataset, load_h5
from .loss import check_loss
from .schedule import rollout_schedule

__all__ = ["check_args", "as_dataset", "checkpoint_path", "right_hand_side", "check_data"]

# relative tolerance for "the corrector's step is the step_size given"
_GRID_RTOL = 1e-9


def check_args(corrector, method, step_size, epochs, lr, batch_size, rollout_steps, schedule, val_fraction,
               patience, seed, weight_decay, grad_clip, min_lr_ratio, loss="mse") -> dict[str, Any]:
    """The settings as plain numbers (``"schedule"``: a :class:`~.schedule.RolloutSchedule`)."""
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
    if step_size is not None and (not is_real(step_size)
                                  or abs(step_size - corrector.step_size) > _GRID_RTOL * corrector.step_size):
        raise ValueError(
            f"step_size {step_size!r} differs from the corrector's {corrector.step_size:g}; build "
            f"the corrector for the step it will correct ({type(corrector).__name__}(..., "
            f"step_size={step_size!r}))"
        )
    epochs = positive_int("epochs", epochs)
    steps = rollout_schedule(rollout_steps, schedule, epochs)  # checks rollout_steps too
    return {
        "method": corrector.method,
        "step_size": corrector.step_size,
        "epochs": epochs,
        "lr": positive_number("lr", lr),
        "batch_size": positive_int("batch_size", batch_size),
        "rollout_steps": int(rollout_steps),
        "schedule": steps,
        "val_fraction": finite_number("val_fraction", val_fraction, low=0.0, high=1.0, high_open=True),
        "patience": None if patience is None else positive_int("patience", patience),
        "seed": integer("seed", seed),
        "weight_decay": nonnegative_number("weight_decay", weight_decay),
        "grad_clip": None if grad_clip is None else positive_number("grad_clip", grad_clip),
        "min_lr_ratio": finite_number("min_lr_ratio", min_lr_ratio, low=0.0, high=1.0),
        "loss": check_loss(loss),
    }


def as_dataset(data) -> TrajectoryDataset:
    """``data`` itself, or the HDF5 file it names, loaded."""
    if isinstance(data, (str, os.PathLike)):
        data = load_h5(data)
    if not isinstance(data, TrajectoryDataset):
        raise TypeError(
            f"data must be a TrajectoryDataset (attsolver.data.generate_trajectories / load_h5) or "
            f"an HDF5 path, got {type(data).__name__}"
        )
    return data


def checkpoint_path(checkpoint, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint's path, refused where the run would resume nothing or overwrite a file."""
    path = None if checkpoint is None else Path(checkpoint)
    if resume and path is None:
        raise ValueError("resume=True needs checkpoint=path (the checkpoint of the run to continue)")
    if path is not None and path.exists() and not resume and not overwrite:
        raise FileExistsError(
            f"checkpoint {path} exists; pass resume=True to continue that run, overwrite=True "
            "to start a new one over it, or another path"
        )
    return path


def right_hand_side(corrector, data: TrajectoryDataset, system, f, autonomous) -> tuple[Any, bool]:
    """``(f, autonomous)``: the ``f(t, y)`` given (or the data's built-in system) and whether
    windows starting at different times may share one solve."""
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
    if autonomous is None:  # attsolver's systems declare it (System.autonomous); any other f may read t
        autonomous = getattr(f, "autonomous", False) is True
    if getattr(corrector, "uses_time", False):
        autonomous = False  # the corrector reads the time: windows keep their own start times
    return f, bool(autonomous)


def check_data(data, corrector: Corrector, args: dict[str, Any]) -> tuple[float, int]:
    """Finite values, matching state shape, uniform grid, windows that fit in the trajectories;
    returns ``(dt, steps per interval)``."""
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
    m = whole_multiple(ratio, 1e-6)
    if m is None:
        raise ValueError(
            f"the data interval dt={dt:g} is not a whole multiple of the corrector's step_size={h:g}; "
            f"train with step_size=dt/m for an integer m (e.g. {dt / max(1, math.floor(ratio)):g}) or "
            "regenerate the data on a grid of multiples of the step"
        )
    _check_window_fits(args["schedule"], len(t))
    return dt, m


def _check_window_fits(schedule, n_times: int) -> None:
    k = schedule.longest
    if n_times >= k + 1:
        return
    if schedule.scheduled:
        raise ValueError(
            f"rollout_schedule asks for windows of {k} data intervals (epoch index {schedule.longest_epoch()}), "
            f"which need trajectories of at least {k + 1} times; the data has {n_times}"
        )
    raise ValueError(
        f"rollout_steps={schedule.at(0)} needs trajectories of at least {k + 1} times; the data has {n_times}"
    )
