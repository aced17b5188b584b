"""Record a learned interpolation's training domain (:mod:`.interpolation_guard`) from states."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._validate import finite_number
from .interpolation_guard import DEPARTURE_MARGIN, STATE_MARGIN, domain_tensor
from .learned_interpolation import LearnedInterpolation, face_velocities
from .navier_stokes import NavierStokes2DFD

__all__ = ["record_interpolation_domain", "weight_departure", "DOMAIN_STATES"]

#: at most this many training states (a seeded draw) make the domain
DOMAIN_STATES = 4096


@torch.no_grad()
def record_interpolation_domain(model: LearnedInterpolation, states: Tensor, *, state_margin: float = STATE_MARGIN,
                                departure_margin: float = DEPARTURE_MARGIN, max_states: int = DOMAIN_STATES,
                                seed: int = 0) -> Tensor:
    """Set ``model.domain`` from training vorticity fields and return it.

    Args:
        model: a trained :class:`LearnedInterpolation`.
        states: its training states ``[..., n, n]`` on its grid (e.g. a data set's ``y``: every
            frame of every trajectory); at most ``max_states`` of them, a seeded draw, are used.
        state_margin, departure_margin: a guarded solve flags a trajectory whose ``max |omega|``,
            or whose weights' departure from the base scheme, exceeds the training maximum times
            these (>= 1).

    Returns:
        the domain, float64 ``[4]``: the two maxima and the two margins.
    """
    if not isinstance(model, LearnedInterpolation):
        raise TypeError(f"model must be a LearnedInterpolation, got {type(model).__name__}")
    for name, v in (("state_margin", state_margin), ("departure_margin", departure_margin)):
        finite_number(name, v, low=1.0, type_error=False)
    n = model.meta["n"]
    if not isinstance(states, Tensor) or states.ndim < 2 or tuple(states.shape[-2:]) != (n, n) or states.is_complex():
        raise ValueError(f"states must be real vorticity fields [..., {n}, {n}] on the model's grid, got "
                         f"{tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__}")
    w = states.detach().reshape(-1, n, n).to(device=model.domain.device, dtype=next(model.net.parameters()).dtype)
    if len(w) == 0 or not bool(torch.isfinite(w).all()):
        raise ValueError("states must be a non-empty set of finite fields (the model's training states)")
    if len(w) > max_states:
        w = w[torch.randperm(len(w), generator=torch.Generator().manual_seed(seed))[:max_states].to(w.device)]
    m = model.meta
    system = NavierStokes2DFD(n=n, nu=m["nu"], drag=m["drag"], forcing_wavenumber=m["forcing_wavenumber"])
    departure = max(weight_departure(model, system, chunk) for chunk in w.split(256))
    if not math.isfinite(departure):
        raise ValueError("the model's weights are not finite on its training states; it cannot have a domain")
    model.domain.copy_(domain_tensor(float(w.abs().max()), departure, state_margin, departure_margin))
    return model.domain.clone()


@torch.no_grad()
def weight_departure(model: LearnedInterpolation, system: NavierStokes2DFD, w: Tensor) -> float:
    """The largest departure of the model's face weights (flux form: its face-value correction)
    from the base scheme's over the fields ``w [B, n, n]`` (what the guard compares; the model's
    own forward, unguarded)."""
    w = w.to(next(model.net.parameters()).dtype)
    u, v = face_velocities(system.streamfunction(w), system.dx)
    if model.form == "flux":
        x = torch.stack([w, u, v], dim=-3) * model.input_scale
        return float(model.net(x).abs().max() / model.input_scale)
    wx, wy = model(w, u, v)
    w0 = model.w0.to(wx.device, wx.dtype)[:, None, None]
    return float(torch.maximum((wx - w0).abs().max(), (wy - w0).abs().max()))
