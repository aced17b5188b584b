"""``fit``'s training checkpoint: what it holds (model, best weights, optimizer, scheduler, RNG
states, history, the settings and a fingerprint of the data), its atomic write, and the checks
and restore of a resume."""

from __future__ import annotations

import copy
import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._io import save_checkpoint
from ..correctors import FIT_CHECKPOINT_FORMAT, SCHEMA_VERSION, Corrector, read_checkpoint
from .history import FitHistory

__all__ = ["fingerprint", "run_settings", "load_for_resume", "restore", "epoch_payload", "write_checkpoint",
           "clone_state"]


#: settings that checkpoints written before they were recorded ran with
_BEFORE = {"loss": "mse"}


def fingerprint(data) -> str:
    """SHA-256 of the data's times and states (shapes included)."""
    h = hashlib.sha256()
    for v in (data.t, data.y):
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_settings(corrector, data, args: dict[str, Any], world: int, autonomous: bool) -> dict[str, Any]:
    """What a resume must match: the corrector's class and config, the settings, the data."""
    keep = ("method", "step_size", "lr", "batch_size", "rollout_steps", "val_fraction", "seed",
            "weight_decay", "grad_clip", "min_lr_ratio", "loss")
    return {
        "class": type(corrector).__name__,
        "config": corrector.config(),
        **{k: args[k] for k in keep},
        "world_size": world,
        "autonomous": autonomous,
        "data": fingerprint(data),
    }


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


def load_for_resume(path: Path, corrector: Corrector, settings: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to be one ``fit`` wrote for this corrector and run."""
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
    old = {**_BEFORE, **ckpt["settings"]}
    diffs = [f"{k}: checkpoint {old.get(k)!r}, now {v!r}" for k, v in settings.items() if old.get(k) != v]
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: the run differs from the one that wrote it ("
            + "; ".join(diffs) + "); resume with the same settings and data, or start a new run "
            "with another checkpoint path (or overwrite=True)"
        )
    return ckpt


def restore(ckpt: dict[str, Any], path: Path, corrector: Corrector, optimizer, scheduler, history: FitHistory,
            steps: tuple[int, ...]) -> tuple[dict[str, Tensor] | None, int, int, bool]:
    """Put the checkpoint's weights, optimizer, scheduler, RNG states and history back.

    ``steps`` is the window length of each epoch now; the epochs already run must have used the
    same.  Returns ``(best_state, bad_epochs, epoch, stopped)``.
    """
    h = ckpt["history"]
    done = int(ckpt["epoch"])
    # a checkpoint written before the history recorded the window lengths ran the fixed one
    ran = list(h.get("rollout_steps", [ckpt["settings"].get("rollout_steps", 0)] * len(h["train_loss"])))
    for e, (then, now) in enumerate(zip(ran, steps)):
        if then != now:
            raise ValueError(
                f"cannot resume from {path}: epoch index {e} ran windows of {then} data intervals, the rollout "
                f"schedule now gives {now}; resume with the same rollout_schedule, or start a new run with another "
                "checkpoint path (or overwrite=True)"
            )
    corrector.load_state_dict(ckpt["model"]["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"], path)
    history.train_loss, history.val_loss, history.lr = list(h["train_loss"]), list(h["val_loss"]), list(h["lr"])
    history.rollout_steps = ran
    history.best_epoch, history.best_loss = int(ckpt["best_epoch"]), float(ckpt["best_loss"])
    stopped = bool(ckpt.get("stopped", False))
    history.stopped_early = stopped
    history.resumed_from = done
    return ckpt.get("best_state_dict"), int(ckpt["bad_epochs"]), done, stopped


def epoch_payload(corrector: Corrector, best_state, optimizer, scheduler, epoch: int, history: FitHistory,
                  bad_epochs: int, stopped: bool, settings: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint after ``epoch`` (1-based) epochs."""
    return {
        "format": FIT_CHECKPOINT_FORMAT, "schema_version": SCHEMA_VERSION,
        "model": corrector.checkpoint_dict(), "best_state_dict": best_state,
        "training_info": copy.deepcopy(corrector.training_info),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": _rng_state(), "epoch": epoch, "best_epoch": history.best_epoch,
        "best_loss": history.best_loss, "bad_epochs": bad_epochs, "stopped": stopped,
        "history": {"train_loss": history.train_loss, "val_loss": history.val_loss, "lr": history.lr,
                    "rollout_steps": history.rollout_steps},
        "settings": settings,
    }


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically and sealed (:func:`attsolver._io.save_checkpoint`; verified on resume)."""
    save_checkpoint(path, payload)


def clone_state(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of ``module``'s state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
