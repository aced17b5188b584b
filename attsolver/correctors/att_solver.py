"""AttSolver / AttNS (arXiv 2302.10184): a corrector with a body, a bounded attention gate
and a combine rule, each swappable.  The exact published formula is not public; the one
here is this project's design, documented in docs/method.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..nn import get_attention, make_attention
from .base import Corrector, check_positive_int, mlp, register_corrector

__all__ = ["AttSolver", "COMBINES", "register_combine"]

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


@register_corrector
class AttSolver(Corrector):
    """``C = s ⊙ (W_o m + b_o)``, ``m = combine(z, a)``, ``z = body(u)``, ``a = gate(src)``.

    * ``u``: normalised step features (default ``y_n`` and the classical increment ``dy_n = hΦ``);
    * ``body``: MLP ``F -> width (-> width ...)`` with an activation after every layer; with
      the default ``tanh`` the body features are bounded, ``z in (-1, 1)^width``;
    * ``gate``: an attention module from :mod:`attsolver.nn` (default ``"se"``, reduction 4)
      giving ``a in (0, 1)^width``, its linear maps' spectral norms capped at
      ``lipschitz_cap`` (default 1, so the SE gate is 1/4-Lipschitz); its input ``src`` is
      the body output (``attention_input="body"``), all features (``"features"``) or one
      feature (``"y"``, ``"dy"``, ...);
    * ``combine``: ``"add"`` (default) ``m = z + a`` or ``"mul"`` (AttNS-m) ``m = z ⊙ a``;
      ``attention="none"`` gives ``m = z`` (the ablation without a gate);
    * ``W_o, b_o``: zero-initialised head; ``s`` the output scale set by ``fit``.

    With a tanh body, ``|C_i| <= s_i (2 ||W_o[i]||_1 + |b_o,i|)`` for every input: the
    correction is bounded, so a state far outside the training data cannot make it explode.

    **Residual body with a shared gate** (``residual=True``; the default, and the only form,
    for a stateful gate such as ``"dia"``): the body's ``depth`` layers become residual
    layers and *one* gate is shared by all of them, as one DIA unit is shared by the blocks
    of a ResNet stage::

        r_l = act(L_l(x_{l-1}))  (x_{-1} = u),   (a_l, s_l) = gate(src_l, s_{l-1}),  s_{-1} = 0
        x_0 = combine(r_0, a_0),   x_l = x_{l-1} + combine(r_l, a_l),   C = s ⊙ (W_o x_{depth-1} + b_o)

    ``src_l`` is ``r_l`` (``attention_input="body"``) or the chosen features.  A stateful
    gate's state is carried from layer to layer *within one call* and starts at zero at
    every call, so no state crosses solver steps and one-step training applies unchanged.
    A stateless gate (``"se"``) used this way is the layer-shared ``shared_se`` of the
    vision models.  The parameter count is that of the plain form (the same layers, one
    gate), whatever the depth; the bound becomes ``s_i (2 depth ||W_o[i]||_1 + |b_o,i|)``.

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        method, step_size: the classical step it corrects.
        features: step features the body sees (from ``"y", "dy", "phi", "h"``).
        width: body width ``W`` (= gate channels).
        depth: number of body layers (>= 1).
        activation: body activation (default ``"tanh"``).
        attention: a gate name from ``attsolver.nn.list_attention()`` or ``"none"``.
        attention_input: ``"body"``, ``"features"``, or one name in ``features``.
        combine: a name in :data:`COMBINES`.
        lipschitz_cap: spectral-norm cap of the gate's linear maps, or ``None``.
        reduction: SE bottleneck ratio.
        attention_kwargs: further keyword arguments for the gate (JSON-able).
        residual: residual body with the gate shared by every layer (above); ``None``
            (default): ``True`` for a stateful gate, else ``False`` (the plain form).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float,
                 features: tuple[str, ...] | list[str] = ("y", "dy"), width: int = 128, depth: int = 2,
                 activation: str = "tanh", attention: str = "se", attention_input: str = "body",
                 combine: str = "add", lipschitz_cap: float | None = 1.0, reduction: int = 4,
                 attention_kwargs: dict[str, Any] | None = None, residual: bool | None = None,
                 dtype: Any = torch.float32):
        width = check_positive_int("width", width)
        depth = check_positive_int("depth", depth)
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; choose one of: {', '.join(sorted(COMBINES))}")
        if residual is not None and not isinstance(residual, bool):
            raise TypeError(f"residual must be True, False or None, got {residual!r}")
        stateful = attention != "none" and bool(getattr(get_attention(attention), "stateful", False))
        if residual is None:
            residual = stateful
        elif stateful and not residual:
            raise ValueError(
                f"attention {attention!r} carries a state from call to call; AttSolver uses it only "
                "in its residual body, shared by the layers with the state carried from layer to "
                "layer (residual=True or None)"
            )
        features = list(features)
        if attention_input not in ("body", "features", *features):
            raise ValueError(
                f"attention_input must be 'body', 'features' or one of the features {features}, "
                f"got {attention_input!r}"
            )
        super().__init__(
            state_shape, method=method, step_size=step_size, features=features, dtype=dtype,
            hparams={"features": features, "width": width, "depth": depth, "activation": activation,
                     "attention": attention, "attention_input": attention_input, "combine": combine,
                     "lipschitz_cap": lipschitz_cap, "reduction": reduction,
                     "attention_kwargs": dict(attention_kwargs or {}), "residual": residual},
        )
        self.combine = combine
        self.attention_input = attention_input
        self.body = mlp([self.feature_dim] + [width] * depth, activation, dtype=self.dtype,
                        zero_last=False, last_activation=True)
        if attention == "none":
            self.gate = None
        else:
            if attention_input == "body":
                gate_in = width
                self._src = None
            elif attention_input == "features":
                gate_in = self.feature_dim
                self._src = slice(0, self.feature_dim)
            else:
                self._src = self.feature_slices()[attention_input]
                gate_in = self._src.stop - self._src.start
            self.gate = make_attention(attention, width, in_channels=gate_in, reduction=reduction,
                                       lipschitz_cap=lipschitz_cap, dtype=self.dtype,
                                       **dict(attention_kwargs or {}))
        self.residual = residual
        self._stateful = stateful
        self.head = nn.Linear(width, self.state_dim, dtype=self.dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self._combine = COMBINES[combine]

    def network(self, u: Tensor) -> Tensor:
        if self.residual:
            return self._residual_network(u)
        z = self.body(u)
        if self.gate is None:
            return self.head(z)
        a = self.gate(z if self._src is None else u[:, self._src])
        return self.head(self._combine(z, a))

    def _residual_network(self, u: Tensor) -> Tensor:
        layers = list(self.body)  # Linear, act, Linear, act, ...
        x = u
        state = None  # a stateful gate starts afresh at every call
        for i in range(0, len(layers), 2):
            r = layers[i + 1](layers[i](x))
            if self.gate is None:
                m = r
            else:
                src = r if self._src is None else u[:, self._src]
                if self._stateful:
                    a, state = self.gate(src, state)
                else:
                    a = self.gate(src)
                m = self._combine(r, a)
            x = m if i == 0 else x + m
        return self.head(x)
