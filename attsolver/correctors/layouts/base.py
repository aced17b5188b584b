"""What every layout shares: the step features, and the contract a layout fulfils.

A *layout* says how a corrector sees a state: which step features its network reads and how
they are arranged (the whole flattened state, a window of sites on a lattice, channels of a
periodic field), which normalisation statistics it keeps and how ``fit``'s per-component
statistics pool into them, how the network's linear maps are built (``nn.Linear`` or a
periodic convolution), the reference evaluation of the corrector, and what it records and
checks about the states it meets.  A layout is a plain description (no tensors): the
corrector module holds the buffers it installs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..._validate import is_integer

__all__ = ["FEATURES", "TIME_FEATURES", "Layout", "time_feature", "as_state_shape", "positive_int",
           "register_layout", "get_layout", "list_layouts"]

#: Step features a corrector can take, each of the flattened state's size ``D`` except ``h``:
#: ``y`` the state y_n, ``dy`` the classical increment h·Phi, ``phi`` the increment per unit
#: time Phi = dy/h, ``h`` the step (one number).
FEATURES = ("y", "dy", "phi", "h")
#: Time features for non-autonomous systems (one number each): ``t`` the step's start time,
#: and ``cos:<w>`` / ``sin:<w>`` the phase of a forcing of angular frequency ``w`` at that time
#: (e.g. ``("y", "dy", "cos:1.2", "sin:1.2")`` for a Duffing oscillator forced at ``cos(1.2 t)``).
TIME_FEATURES = ("t", "cos:<w>", "sin:<w>")

_STATE_FEATURES = ("y", "dy", "phi")


def time_feature(name: str) -> tuple[str, float] | None:
    """``("t", 1.0)``, ``("cos", w)``, ``("sin", w)`` for a time feature's name, else ``None``."""
    if name == "t":
        return "t", 1.0
    kind, sep, w = name.partition(":")
    if sep and kind in ("cos", "sin"):
        try:
            omega = float(w)
        except ValueError:
            return None
        if math.isfinite(omega) and omega != 0:
            return kind, omega
    return None


def as_state_shape(state_shape: Any) -> tuple[int, ...]:
    """``state_shape`` (an int ``d`` or a tuple of ints) as a tuple of positive ints."""
    if is_integer(state_shape):
        state_shape = (int(state_shape),)
    try:
        shape = tuple(state_shape)
    except TypeError:
        raise TypeError(f"state_shape must be an int or a tuple of ints, got {state_shape!r}") from None
    if not shape or any(not is_integer(s) or s < 1 for s in shape):
        raise ValueError(f"state_shape must be a non-empty tuple of positive ints, got {state_shape!r}")
    return tuple(int(s) for s in shape)


def positive_int(name: str, value: Any) -> int:
    """An integer >= 1 (a width, a window); the message the correctors have always given."""
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def dense_linear(n_in: int, n_out: int, *, dtype: torch.dtype, zero: bool = False) -> nn.Linear:
    """``nn.Linear``, zero-initialised (an exact zero output) if ``zero``."""
    layer = nn.Linear(n_in, n_out, dtype=dtype)
    if zero:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layer


def _check_features(features: Any) -> tuple[str, ...]:
    features = tuple(features)
    bad = [f for f in features if f not in FEATURES and time_feature(f) is None]
    if bad or not features or len(set(features)) != len(features):
        raise ValueError(
            f"features must be distinct names from {FEATURES} or the time features {TIME_FEATURES} "
            f"(w a non-zero number, e.g. 'cos:1.2'), got {features!r}"
        )
    return features


class Layout:
    """Base class of the layouts (:class:`DenseLayout`, :class:`LatticeLayout`, :class:`GridLayout`).

    Args:
        state_shape: shape of one state without batch dimensions (an int ``d`` for ``(d,)``).
        features: the step features the network reads, from :data:`FEATURES` and
            :data:`TIME_FEATURES`, in this order.

    Attributes:
        state_shape, state_dim: the state's shape and its size ``D``.
        features, feature_dim: the features, and the length of the per-component feature
            vector ``fit`` computes its statistics on (``D`` per state feature, 1 for ``h``
            and each time feature).
        uses_time: whether a time feature is among the features.
        n_in, n_out: the network's input and output width (per sample, site or grid point).
    """

    #: the layout's name in configs, in :func:`attsolver.correctors.names` and the suffix of
    #: the factory names of its correctors (``""`` for the dense layout, ``"-local"``, ``"-conv"``)
    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    #: the constructor's keyword arguments (``create`` routes them to the layout)
    params: ClassVar[tuple[str, ...]] = ()
    #: how the features are arranged, as :attr:`Corrector.trained_for` records it
    feature_layout: ClassVar[str] = ""
    #: ``fit``'s statistics are per component; a layout that pools them names what it pools over
    pooled_over: ClassVar[str | None] = None

    def __init__(self, state_shape: Any, features: Any = ("y",)):
        self.features = _check_features(features)
        self.state_shape = as_state_shape(state_shape)
        self.state_dim = math.prod(self.state_shape)
        self.feature_dim = sum(self.state_dim if f in _STATE_FEATURES else 1 for f in self.features)
        self.uses_time = any(f not in FEATURES for f in self.features)
        self.n_in = self.n_out = 0

    # ------------------------------------------------------------------ features

    def feature_slices(self) -> dict[str, slice]:
        """Where each feature lies in the per-component feature vector."""
        out, start = {}, 0
        for f in self.features:
            width = self.state_dim if f in _STATE_FEATURES else 1
            out[f] = slice(start, start + width)
            start += width
        return out

    def feature_parts(self, y: Tensor, dy: Tensor, h: float, h_shape: tuple[int, ...], t: Tensor | None = None,
                      who: str = "corrector") -> list[Tensor]:
        """The step's features, in order: ``y``, ``dy``, ``phi = dy / h``, and ``h`` and the time
        features as tensors of shape ``h_shape`` (constant, or per sample when ``t`` holds one
        time per sample, ``[B]``).  ``who`` names the corrector in errors."""
        parts = []
        for f in self.features:  # runs at every corrected step: plain branches, no closures
            if f == "y":
                parts.append(y)
            elif f == "dy":
                parts.append(dy)
            elif f == "phi":
                parts.append(dy / h)
            elif f == "h":
                parts.append(y.new_full(h_shape, h))
            else:
                parts.append(self._time_part(f, t, y, h_shape, who))
        return parts

    @staticmethod
    def _time_part(f: str, t: Tensor | None, y: Tensor, h_shape: tuple[int, ...], who: str) -> Tensor:
        if t is None:
            raise ValueError(
                f"this {who} uses the time feature {f!r} and needs the step's time t; "
                "call it as corrector(t, y, dy, h) with t a tensor (attsolver.solve and fit do)"
            )
        kind, omega = time_feature(f)
        tt = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        v = tt if kind == "t" else (torch.cos(omega * tt) if kind == "cos" else torch.sin(omega * tt))
        if v.ndim == 0:
            return v.expand(h_shape)
        return v.reshape(len(v), *([1] * (len(h_shape) - 1))).expand(h_shape)

    def compute_features(self, y: Tensor, dy: Tensor, h: float, t: Tensor | None = None,
                         who: str = "corrector") -> Tensor:
        """Raw per-component features ``[B, feature_dim]`` from flat ``y``, ``dy`` ``[B, D]``."""
        parts = self.feature_parts(y, dy, h, (y.shape[0], 1), t, who)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    # ------------------------------------------------------------------ normalisation

    def stat_sizes(self) -> tuple[int, int]:
        """Sizes of the buffers ``(in_mean and in_std, out_scale)``."""
        raise NotImplementedError

    def install(self, m: nn.Module, dtype: torch.dtype) -> None:
        """Register the normalisation buffers on the corrector ``m`` (identity statistics)."""
        n_in, n_out = self.stat_sizes()
        m.register_buffer("in_mean", torch.zeros(n_in, dtype=dtype))
        m.register_buffer("in_std", torch.ones(n_in, dtype=dtype))
        m.register_buffer("out_scale", torch.ones(n_out, dtype=dtype))

    def pool(self, m: nn.Module, stats: list[Tensor]) -> list[Tensor]:
        """``fit``'s per-component statistics (float64: ``[feature_dim]``, ``[feature_dim]``,
        ``[D]``) as this layout's buffers; other sizes pass through (checked by the caller)."""
        return stats

    def count_error(self, name: str, n: int, got: int) -> str:
        if self.pooled_over is None:
            return f"{name} needs {n} values, got {got}"
        return (f"{name} needs {n} value(s) (per channel) or the per-{self.pooled_over} statistics that fit "
                f"passes, got {got}")

    def spread_scale(self, m: nn.Module, scale: Tensor) -> Tensor:
        """The buffer-shaped output scale as one factor per state component, ``[D]``."""
        return scale

    # ------------------------------------------------------------------ the network's maps

    def linear(self, n_in: int, n_out: int, *, dtype: torch.dtype, zero: bool = False,
               kernel: int | None = None) -> nn.Module:
        """A linear map of the network (``zero``: weight and bias zero, an exact zero output)."""
        if kernel is not None:
            raise ValueError(f"a kernel size ({kernel!r}) is for the convolutions of a periodic grid, not a "
                             f"{self.name} layout")
        return dense_linear(n_in, n_out, dtype=dtype, zero=zero)

    def gate_sources(self) -> dict[str, slice]:
        """What of the network's (normalised) input an attention gate may read, by name."""
        return {}

    # ------------------------------------------------------------------ evaluation and record

    def forward(self, m: nn.Module, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The reference evaluation of the corrector ``m`` (with autograd): its correction, of
        ``y``'s shape."""
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """What :attr:`Corrector.trained_for` records beyond the common entries."""
        return {}

    def checked_state(self, y0: Tensor, dtype: torch.dtype) -> Tensor:
        """``y0`` as ``check_compatible`` compares its dtype (a layout may accept others)."""
        return y0

    def shape_problems(self, y0: Tensor) -> list[str]:
        """What about ``y0``'s shape a corrector of this layout cannot take."""
        k = len(self.state_shape)
        if y0.ndim < k or tuple(y0.shape[y0.ndim - k:]) != self.state_shape:
            return [f"state shape: y0 has shape {tuple(y0.shape)}, which does not end in the trained "
                    f"state shape {self.state_shape}"]
        return []

    def trained_shape(self) -> str:
        """The trained shape, as a refusal names it."""
        return f"state shape {self.state_shape}"

    def config(self) -> dict[str, Any]:
        """JSON-able: ``{"name": ..., **saved constructor arguments}`` (not the state shape)."""
        return {"name": self.name}

    @classmethod
    def from_system(cls, system: Any, kwargs: dict[str, Any], who: str) -> tuple[tuple[int, ...], dict[str, Any]]:
        """The state shape and constructor arguments for ``system`` (``who`` names the corrector class)."""
        return tuple(system.state_shape), kwargs


_LAYOUTS: dict[str, type[Layout]] = {}


def register_layout(cls: type[Layout]) -> type[Layout]:
    """Make a layout known by its :attr:`Layout.name` (configs name it; the factory builds on it)."""
    if _LAYOUTS.get(cls.name, cls) is not cls:
        raise ValueError(f"a layout named {cls.name!r} is already registered")
    _LAYOUTS[cls.name] = cls
    return cls


def list_layouts() -> list[str]:
    return list(_LAYOUTS)


def get_layout(name: str) -> type[Layout]:
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; registered: {', '.join(_LAYOUTS)}") from None
