"""Before training: is the coarse classical step stable on every training state?

A training state where the uncorrected coarse step leaves the method's stability region (RK4
at ``h = 0.5`` on a fast mode, say) makes a one-step target of enormous size: the loss is
dominated by it and training spends its epochs there.  :func:`unstable_states` takes the
coarse step(s) over one data interval from every observed state and names the states where the
result is non-finite or misses the next observation by more than the state's own size.
"""

from __future__ import annotations

from typing import Any

import torch

from .targets import classical_steps

__all__ = ["unstable_states", "UNSTABLE_RATIO"]

#: a step whose miss exceeds this multiple of the next observation's norm counts as unstable
UNSTABLE_RATIO = 1.0


def unstable_states(data, f, method: str, h: float, m: int, autonomous: bool) -> dict[str, Any]:
    """The (trajectory, time index) pairs whose ``m`` coarse steps of ``h`` (one data
    interval) are non-finite or miss the next observation by more than
    :data:`UNSTABLE_RATIO` times its norm.  Returns ``{"n_states", "unstable": [(i, j), ...],
    "worst_ratio"}``."""
    y = data.y.to(torch.float64)
    t0 = data.t.double().numpy()[:-1]
    pred = classical_steps(method, f, y[:, :-1], t0, h, m, autonomous)
    obs = y[:, 1:]
    n, k = obs.shape[:2]
    miss = (pred - obs).reshape(n, k, -1).norm(dim=-1)
    size = obs.reshape(n, k, -1).norm(dim=-1).clamp_min(1e-300)
    ratio = torch.where(torch.isfinite(miss), miss / size, torch.full_like(miss, float("inf")))
    bad = (ratio > UNSTABLE_RATIO).nonzero().tolist()
    return {"n_states": n * k, "unstable": [tuple(b) for b in bad], "worst_ratio": float(ratio.max())}


def describe(result: dict[str, Any], method: str, h: float, limit: int = 8) -> str | None:
    """A warning naming the unstable states, or ``None`` when every state is stable."""
    bad = result["unstable"]
    if not bad:
        return None
    shown = ", ".join(f"trajectory {i} at time index {j}" for i, j in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return (f"the coarse {method} step h={h:g} is unstable on {len(bad)} of {result['n_states']} training states "
            f"({shown}{more}): the step from there is non-finite or misses the next observation by more than its "
            f"size, and those targets will dominate the loss. Use a smaller step, or drop those states")
