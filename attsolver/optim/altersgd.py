"""AlterSGD (arXiv 2107.05804): plain SGD until training "tends to converge", then
alternating descent and ascent steps, which drives the iterate toward flat minima.

Why it flattens.  A descent step followed by an ascent step with the same rate ``η`` at
points ``w`` and ``w - η g(w)`` moves the weights by

    Δ = -η g(w) + η g(w - η g(w)) = -η² H g + O(η³) = -η² ∇(½‖∇L‖²)(w) + O(η³),

one gradient step of size ``η²`` on the squared gradient norm, whose minima are the
flat, stationary points.  To leading order the pair changes the loss by ``-η² gᵀHg`` and
the squared gradient norm ``½‖g‖²`` by ``-η² ‖Hg‖²`` (``docs/altersgd.md``; checked
numerically in ``tests/test_optim_altersgd.py``).

How the loss reaches the optimizer.  The trigger needs the training loss.  Either pass a
closure (torch's convention: it re-evaluates the model, calls ``backward`` and returns the
loss) to :meth:`AlterSGD.step`, which observes the returned loss before stepping, or call
:meth:`AlterSGD.observe` yourself with each mini-batch loss, then ``step()`` without a
closure.  Use one of the two per step, not both, or the loss is counted twice.

Trigger (``trigger="plateau"``).  Observed losses are averaged over consecutive,
non-overlapping windows of ``window`` observations.  A window mean ``m`` *improves* if
``m < best - max(rel_tol · best, abs_tol)`` (``best``: the lowest improving mean so far;
the first window always improves).  ``abs_tol`` (default 0) makes a loss that keeps
shrinking by a constant factor towards zero count as converged once its absolute progress
per window is small; with ``abs_tol=0`` such a loss never plateaus.  After ``patience`` consecutive windows without improvement the trigger
fires and stays fired until :meth:`AlterSGD.reset_trigger` (call it at the start of each
new task in continual learning).  ``trigger="manual"`` never fires by itself; call
:meth:`AlterSGD.start_alternating`.

After the trigger the steps go descent, ascent, descent, ... (the paper's order).

Momentum and weight decay.
- A descent step is exactly ``torch.optim.SGD``'s step (same momentum buffer update,
  dampening, Nesterov, weight decay), bit for bit.
- An ascent step is a plain gradient step *up* the data loss with ``ascent_lr``, without
  momentum, and it neither reads nor writes the momentum buffer.  The ascent is a local
  probe, like SAM's perturbation: the second-order argument above needs it to be a pure
  gradient step at the current point.  Pushed through the shared buffer, the alternating
  ``±g`` would largely cancel there (with ``momentum=0.9`` the "ascent" would still move
  downhill); a separate ascent buffer would accumulate ascents across pairs and drift
  uphill out of the minimum.
- Weight decay shrinks the weights on every step, descent or ascent
  (``w ← w - lr·λw`` with the step's own rate).  It stands for the prior ½λ‖w‖², which the
  method does not try to make flat; ascending it would grow the weights and cancel the
  decay of the descent steps, so the alternating phase would silently lose its
  regularisation.

The trigger state (window, best mean, bad-window count, phase, parity, counters) is
saved and restored by ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._validate import is_integer, is_real

__all__ = ["AlterSGD", "TRIGGERS"]

TRIGGERS = ("plateau", "manual")
_STATE_KEY = "altersgd"


def _check_real(name: str, value: Any, *, low: float = 0.0, low_open: bool = False, high: float | None = None,
                high_open: bool = True, hint: str = "") -> float:
    if not is_real(value) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        lo = f"({low}" if low_open else f"[{low}"
        hi = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise ValueError(f"{name} must lie in {lo}, {hi}, got {value!r}{hint}")
    return v


def _check_int(name: str, value: Any, *, low: int) -> int:
    # _validate.integer words low=1 as "a positive integer"; this optimiser's messages say ">= 1"
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class AlterSGD(Optimizer):
    """SGD that switches to alternating descent/ascent steps once the training loss plateaus.

    Args:
        params: parameters or parameter groups, as for ``torch.optim.SGD``.
        lr: descent learning rate (>= 0).
        momentum, dampening, weight_decay, nesterov: as ``torch.optim.SGD``; momentum and
            Nesterov act on descent steps only, weight decay on every step (see the module
            docstring for why).
        ascent_lr: learning rate of the ascent steps (>= 0); ``None`` (default) uses the
            group's current ``lr`` (so it follows an LR scheduler).
        trigger: ``"plateau"`` (fire on a plateau of the windowed mean training loss) or
            ``"manual"`` (only :meth:`start_alternating` fires it).
        window: number of observed losses averaged into one window mean (>= 1).
        rel_tol: relative improvement a window mean needs to count as progress, in [0, 1).
        abs_tol: absolute improvement it needs (>= 0); the larger of the two applies.
        patience: consecutive non-improving windows that fire the trigger (>= 1).

    Example::

        opt = AlterSGD(model.parameters(), lr=0.05, momentum=0.9, window=50, patience=2)
        for x, y in loader:
            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss
            opt.step(closure)          # observes the loss, then descends (or ascends)
        opt.reset_trigger()            # next task: plain descent until the next plateau
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 ascent_lr: float | None = None, trigger: str = "plateau", window: int = 50,
                 rel_tol: float = 1e-2, abs_tol: float = 0.0, patience: int = 2):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, ascent_lr=ascent_lr)
        self._check_group(defaults)
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
        self.trigger = trigger
        self.window = _check_int("window", window, low=1)
        self.rel_tol = _check_real("rel_tol", rel_tol, high=1.0,
                                   hint=" (the relative drop of the window mean that counts as progress)")
        self.abs_tol = _check_real("abs_tol", abs_tol, hint=" (the absolute drop that counts as progress)")
        self.patience = _check_int("patience", patience, low=1)
        super().__init__(params, defaults)
        self._reset_state()

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_group(group: dict) -> None:
        _check_real("lr", group["lr"], hint=" (use ascent_lr for the ascent steps; lr is the descent rate)")
        if group.get("ascent_lr") is not None:
            _check_real("ascent_lr", group["ascent_lr"], hint=" (the ascent direction is built in)")
        _check_real("momentum", group["momentum"], high=1.0)
        _check_real("dampening", group["dampening"], high=1.0, high_open=False)
        _check_real("weight_decay", group["weight_decay"])
        if not isinstance(group["nesterov"], bool):
            raise TypeError(f"nesterov must be a bool, got {group['nesterov']!r}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    # ------------------------------------------------------------------ trigger
    def _reset_state(self) -> None:
        self._window_losses: list[float] = []
        self._best: float | None = None
        self._bad_windows = 0
        self._window_means: list[float] = []  # every completed window mean since the last reset
        self.alternating = False
        self.next_is_ascent = False  # the first step after the trigger is a descent
        self.trigger_step: int | None = None  # value of ``steps`` when the trigger fired
        self.steps = 0  # steps taken since the last reset
        self.ascent_steps = 0

    def reset_trigger(self, *, clear_momentum: bool = False) -> None:
        """Back to plain descent and an empty loss window (the start of a new task).

        ``clear_momentum=True`` also drops the momentum buffers."""
        self._reset_state()
        if clear_momentum:
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p].pop("momentum_buffer", None)

    def start_alternating(self) -> None:
        """Fire the trigger now: the next step is a descent, then an ascent, and so on."""
        if not self.alternating:
            self.alternating = True
            self.next_is_ascent = False
            self.trigger_step = self.steps

    @property
    def window_means(self) -> list[float]:
        """The completed window means since the last reset (oldest first)."""
        return list(self._window_means)

    def observe(self, loss: float | Tensor) -> bool:
        """Record one training loss for the trigger; returns whether the optimizer alternates.

        ``loss``: a finite number or a one-element tensor (detached here)."""
        if isinstance(loss, Tensor):
            if loss.numel() != 1:
                raise ValueError(f"loss must be a scalar (one-element tensor), got shape {tuple(loss.shape)}")
            value = float(loss.detach())
        elif is_real(loss):
            value = float(loss)
        else:
            raise TypeError(f"loss must be a number or a one-element tensor, got {type(loss).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"loss must be finite, got {value} (training has diverged: lower lr)")
        if self.alternating or self.trigger != "plateau":
            return self.alternating
        self._window_losses.append(value)
        if len(self._window_losses) == self.window:
            mean = math.fsum(self._window_losses) / self.window
            self._window_losses = []
            self._window_means.append(mean)
            if self._best is None or mean < self._best - max(self.rel_tol * self._best, self.abs_tol):
                self._best = mean
                self._bad_windows = 0
            else:
                self._bad_windows += 1
                if self._bad_windows >= self.patience:
                    self.start_alternating()
        return self.alternating

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One descent or ascent step (see the class docstring).

        ``closure``: re-evaluates the model, calls ``backward`` and returns the loss; the
        loss is passed to :meth:`observe` before the step.  Without a closure, gradients
        must already be in ``.grad`` (and call :meth:`observe` yourself for the trigger).
        Returns the closure's loss, or None."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            if loss is None:
                raise ValueError("the closure must return the loss (the trigger needs it), got None")
            self.observe(loss)
        ascent = self.alternating and self.next_is_ascent
        for group in self.param_groups:
            wd, lr = group["weight_decay"], group["lr"]
            if ascent:
                a_lr = lr if group["ascent_lr"] is None else group["ascent_lr"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.is_sparse:
                        raise RuntimeError("AlterSGD does not support sparse gradients")
                    if wd != 0:
                        p.mul_(1.0 - a_lr * wd)  # decay always shrinks (module docstring)
                    p.add_(p.grad, alpha=a_lr)
                continue
            momentum, dampening, nesterov = group["momentum"], group["dampening"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AlterSGD does not support sparse gradients")
                # exactly torch.optim.SGD's single-tensor update
                grad = p.grad
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = grad.detach().clone()
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - dampening)
                    grad = grad.add(buf, alpha=momentum) if nesterov else buf
                p.add_(grad, alpha=-lr)
        self.steps += 1
        if ascent:
            self.ascent_steps += 1
        if self.alternating:
            self.next_is_ascent = not self.next_is_ascent
        return loss

    # ------------------------------------------------------------------ state
    def trigger_state(self) -> dict[str, Any]:
        """The trigger's state as plain Python values (saved in ``state_dict()``)."""
        return {"trigger": self.trigger, "window": self.window, "rel_tol": self.rel_tol, "abs_tol": self.abs_tol,
                "patience": self.patience, "window_losses": list(self._window_losses), "best": self._best,
                "bad_windows": self._bad_windows, "window_means": list(self._window_means),
                "alternating": self.alternating, "next_is_ascent": self.next_is_ascent,
                "trigger_step": self.trigger_step, "steps": self.steps, "ascent_steps": self.ascent_steps}

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd[_STATE_KEY] = self.trigger_state()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if _STATE_KEY not in state_dict:
            raise ValueError("state_dict has no AlterSGD trigger state (key 'altersgd'): it was not saved by "
                             "AlterSGD.state_dict()")
        t = dict(state_dict[_STATE_KEY])
        rest = {k: v for k, v in state_dict.items() if k != _STATE_KEY}
        super().load_state_dict(rest)
        for group in self.param_groups:
            self._check_group(group)
        if t["trigger"] not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {t['trigger']!r}")
        self.trigger = t["trigger"]
        self.window = _check_int("window", t["window"], low=1)
        self.rel_tol = _check_real("rel_tol", t["rel_tol"], high=1.0)
        self.abs_tol = _check_real("abs_tol", t["abs_tol"])
        self.patience = _check_int("patience", t["patience"], low=1)
        self._window_losses = [float(v) for v in t["window_losses"]]
        self._best = None if t["best"] is None else float(t["best"])
        self._bad_windows = int(t["bad_windows"])
        self._window_means = [float(v) for v in t["window_means"]]
        self.alternating = bool(t["alternating"])
        self.next_is_ascent = bool(t["next_is_ascent"])
        self.trigger_step = None if t["trigger_step"] is None else int(t["trigger_step"])
        self.steps = int(t["steps"])
        self.ascent_steps = int(t["ascent_steps"])

    def __repr__(self) -> str:
        phase = "alternating" if self.alternating else "descent"
        return (f"AlterSGD(lr={self.defaults['lr']}, momentum={self.defaults['momentum']}, "
                f"weight_decay={self.defaults['weight_decay']}, trigger={self.trigger!r}, window={self.window}, "
                f"rel_tol={self.rel_tol}, abs_tol={self.abs_tol}, patience={self.patience}, phase={phase!r})")
