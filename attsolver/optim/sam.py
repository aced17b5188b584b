"""Sharpness-aware minimisation (SAM; Foret et al., ICLR 2021), a minimal implementation.

One update takes two forward/backward passes:

    g  = ∇L(w)                      (first pass)
    ε  = ρ g / ‖g‖                  (‖·‖: the 2-norm over every parameter with a gradient)
    g' = ∇L(w + ε)                  (second pass, at the perturbed weights)
    w  ← base_step(w, g')           (the perturbation is removed before the base step)

``base_optimizer`` (``torch.optim.SGD`` by default) makes the step, with its own momentum
and weight decay; SAM and the base optimizer share parameter groups and state, so an LR
scheduler and ``state_dict()`` work on the SAM object.  Why our own: no maintained SAM is
a dependency of this package; this one is the textbook update and nothing else (no
adaptive ρ, no BatchNorm running-statistics handling — the benchmark's MLP has none).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["SAM"]


class SAM(Optimizer):
    """SAM around a base optimizer.

    Args:
        params: parameters or parameter groups.
        base_optimizer: an ``Optimizer`` class, instantiated on the same groups with ``**kwargs``.
        rho: radius of the ascent perturbation (>= 0); ``rho=0`` is the base optimizer.
        **kwargs: the base optimizer's options (``lr``, ``momentum``, ...).

    ``step(closure)`` needs the closure: it must compute the loss on the current batch,
    call ``backward`` and return the loss (it is called twice; SAM zeroes the gradients
    before each call).  Returns the loss of the first pass (at the unperturbed weights).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], base_optimizer: type[Optimizer] = torch.optim.SGD,
                 rho: float = 0.05, **kwargs):
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho):
            raise TypeError(f"rho must be a finite real number, got {rho!r}")
        if rho < 0:
            raise ValueError(f"rho must be >= 0 (the radius of the perturbation), got {rho!r}")
        if "lr" in kwargs and isinstance(kwargs["lr"], (int, float)) and kwargs["lr"] < 0:
            raise ValueError(f"lr must be >= 0, got {kwargs['lr']!r}")
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, Optimizer)):
            raise TypeError(f"base_optimizer must be a torch.optim.Optimizer class, got {base_optimizer!r}")
        super().__init__(params, dict(rho=float(rho), **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        # one set of groups and one state for both: schedulers and state_dict see the base's state
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        if closure is None:
            raise ValueError("SAM.step needs a closure that computes the loss, calls backward and returns the loss")

        def evaluate() -> Tensor:
            self.zero_grad(set_to_none=True)
            with torch.enable_grad():
                return closure()

        loss = evaluate()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(gr) for gr in grads])) if grads else None
        perturbed: list[tuple[Tensor, Tensor]] = []
        if norm is not None and float(norm) > 0:
            for group in self.param_groups:
                scale = group["rho"] / norm
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    perturbed.append((p, p.clone()))
                    p.add_(p.grad * scale.to(p))
        evaluate()  # gradients at w + ε
        for p, saved in perturbed:
            p.copy_(saved)  # exactly back to w (not w + ε - ε) before the base step
        self.base_optimizer.step()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups
        self.base_optimizer.state = self.state
