"""AttSolver / AttNS (arXiv 2302.10184): a body, a bounded attention gate and a combine rule, each
swappable.  The exact published formula is not public; the one here is this project's design,
documented in docs/method.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...nn import get_attention, make_attention
from ..layouts import Layout
from .base import Head, mlp, positive_int

__all__ = ["AttSolverHead", "COMBINES", "register_combine"]

#: ``combine(z, a) -> m``: how the gate ``a`` in (0, 1)^W meets the body features ``z``.
COMBINES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    # residual form z + A: the gate adds a bounded, Lipschitz-capped term; the body's path
    # (and its gradient) is never switched off (AttSolver, "additive").
    "add": lambda z, a: z + a,
    # channel re-weighting z ⊙ A as in SE blocks: the gate can only shrink (AttNS-m).
    "mul": lambda z, a: z * a,
}


def register_combine(name: str, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Add a combine rule ``fn(z, a) -> m`` (shapes ``[B, W]``) usable as ``AttSolver(combine=name)``."""
    if name in COMBINES:
        raise ValueError(f"combine {name!r} is already registered")
    COMBINES[name] = fn


#: a gate that carries a state (DIA) only lives in the residual body; on a grid not at all
_STATEFUL_REFUSAL = {
    "dense": "attention {!r} carries a state from call to call; AttSolver uses it only in its residual body, "
             "shared by the layers with the state carried from layer to layer (residual=True or None)",
    "lattice": "attention {!r} carries a state; use it with residual=True (or None)",
    "grid": "attention {!r} carries a state across calls; the step corrections are stateless: choose a "
            "stateless gate (se, iebn)",
}


def _broadcast(a: Tensor, z: Tensor) -> Tensor:
    """A gate pooled over a grid (``[B, W]``) broadcast over the maps ``z`` (``[B, W, *grid]``)."""
    return a.view(*a.shape, *([1] * (z.ndim - a.ndim))) if a.ndim < z.ndim else a


class AttSolverHead(Head):
    """``W_o m + b_o``, ``m = combine(z, a)``, ``z = body(u)``, ``a = gate(src)``.

    * ``body``: ``depth`` linear maps of the layout (``n_in -> width -> ... -> width``) with an
      activation after each; with ``tanh`` the body features are bounded, ``z in (-1, 1)^width``;
    * ``gate``: an attention module from :mod:`attsolver.nn` giving ``a in (0, 1)^width``, its
      linear maps' spectral norms capped at ``lipschitz_cap``; its input ``src`` is the body
      output (``attention_input="body"``), all features (``"features"``) or one feature where
      the layout keeps them apart (dense: ``"y"``, ``"dy"``, ...); on a grid it pools over space;
    * ``combine``: ``"add"`` ``m = z + a`` or ``"mul"`` ``m = z ⊙ a``; ``attention="none"``: ``m = z``;
    * ``W_o, b_o``: the zero-initialised output map (a convolution of ``head_kernel`` on a grid).

    ``residual=True`` (the default, and the only form, for a stateful gate such as ``"dia"``):
    the body's layers are residual layers sharing *one* gate, whose state is carried from
    layer to layer within one call and starts at zero at every call (docs/method.md).

    Args:
        features: step features the body sees.
        width, depth: body width ``W`` (= gate channels) and number of layers.
        activation: body activation.
        attention: a gate name from ``attsolver.nn.list_attention()`` or ``"none"``.
        attention_input: ``"body"``, ``"features"``, or one name in ``features``.
        combine: a name in :data:`COMBINES`.
        lipschitz_cap: spectral-norm cap of the gate's linear maps, or ``None``.
        reduction: SE bottleneck ratio.
        attention_kwargs: further keyword arguments for the gate (JSON-able).
        residual: the residual body with a shared gate; ``None``: ``True`` for a stateful gate.
        head_kernel: the output convolution's stencil on a grid (``None``: the layout's).
    """

    name = "attsolver"
    presets = {"add": {"combine": "add"}, "mul": {"combine": "mul"}}

    def __init__(self, *, features: Sequence[str] = ("y", "dy"), width: int = 128, depth: int = 2,
                 activation: str = "tanh", attention: str = "se", attention_input: str = "body",
                 combine: str = "add", lipschitz_cap: float | None = 1.0, reduction: int = 4,
                 attention_kwargs: dict[str, Any] | None = None, residual: bool | None = None,
                 head_kernel: int | None = None):
        self.width = positive_int("width", width)
        self.depth = positive_int("depth", depth)
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; choose one of: {', '.join(sorted(COMBINES))}")
        if residual is not None and not isinstance(residual, bool):
            raise TypeError(f"residual must be True, False or None, got {residual!r}")
        self.stateful = attention != "none" and bool(getattr(get_attention(attention), "stateful", False))
        self.residual = self.stateful if residual is None else residual
        self.features = tuple(features)
        self.activation, self.attention, self.attention_input = activation, attention, attention_input
        self.combine, self.lipschitz_cap, self.reduction = combine, lipschitz_cap, reduction
        self.attention_kwargs = dict(attention_kwargs or {})
        self.head_kernel = head_kernel

    def hparams(self) -> dict[str, Any]:
        hp = {"features": list(self.features), "width": self.width, "depth": self.depth,
              "activation": self.activation, "attention": self.attention, "attention_input": self.attention_input,
              "combine": self.combine, "lipschitz_cap": self.lipschitz_cap, "reduction": self.reduction,
              "attention_kwargs": dict(self.attention_kwargs), "residual": self.residual}
        return hp if self.head_kernel is None else {**hp, "head_kernel": self.head_kernel}

    def _check(self, layout: Layout, sources: dict[str, slice]) -> None:
        if self.stateful and (layout.name == "grid" or not self.residual):
            raise ValueError(_STATEFUL_REFUSAL.get(layout.name, _STATEFUL_REFUSAL["dense"]).format(self.attention))
        if self.attention_input not in ("body", *sources):
            singles = [s for s in sources if s != "features"]
            if singles:
                raise ValueError(f"attention_input must be 'body', 'features' or one of the features {singles}, "
                                 f"got {self.attention_input!r}")
            allowed = " or ".join(repr(s) for s in ("body", *sources))
            raise ValueError(f"attention_input must be {allowed}, got {self.attention_input!r}")

    def build(self, m: nn.Module, layout: Layout, dtype: torch.dtype) -> None:
        sources = layout.gate_sources()
        self._check(layout, sources)
        # the module keeps what the network reads: the record of a built AttSolver
        m.combine, m.attention_input, m.residual, m._stateful = (self.combine, self.attention_input,
                                                                  self.residual, self.stateful)
        m._src = None if self.attention_input == "body" else sources[self.attention_input]
        m.body = mlp([layout.n_in] + [self.width] * self.depth, self.activation, dtype=dtype, zero_last=False,
                     last_activation=True, linear=layout.linear)
        if self.attention == "none":
            m.gate = None
        else:
            gate_in = self.width if m._src is None else m._src.stop - m._src.start
            m.gate = make_attention(self.attention, self.width, in_channels=gate_in, reduction=self.reduction,
                                    lipschitz_cap=self.lipschitz_cap, dtype=dtype, **self.attention_kwargs)
        m.head = layout.linear(self.width, layout.n_out, dtype=dtype, zero=True, kernel=self.head_kernel)

    def network(self, m: nn.Module, u: Tensor) -> Tensor:
        if m.residual:
            return self._residual_network(m, u)
        z = m.body(u)
        if m.gate is None:
            return m.head(z)
        a = m.gate(z if m._src is None else u[:, m._src])
        return m.head(COMBINES[m.combine](z, _broadcast(a, z)))

    @staticmethod
    def _residual_network(m: nn.Module, u: Tensor) -> Tensor:
        layers = list(m.body)  # map, act, map, act, ...
        combine = COMBINES[m.combine]
        x = u
        state = None  # a stateful gate starts afresh at every call
        for i in range(0, len(layers), 2):
            r = layers[i + 1](layers[i](x))
            if m.gate is None:
                out = r
            else:
                src = r if m._src is None else u[:, m._src]
                if m._stateful:
                    a, state = m.gate(src, state)
                else:
                    a = m.gate(src)
                out = combine(r, _broadcast(a, r))
            x = out if i == 0 else x + out
        return m.head(x)
