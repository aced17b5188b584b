"""Convolutional correctors for periodic 1-D and 2-D fields: NeurVec-conv and AttSolver-conv.

The ODE correctors (:class:`~attsolver.correctors.NeurVec`, :class:`~attsolver.correctors.AttSolver`)
flatten the state and feed it to an MLP, so a model is tied to one grid and cannot share
what it learns between grid points.  For a field ``u [..., nx]`` of a periodic PDE the
correction should be *translation-equivariant* (shifting the field shifts the correction)
and *local*, which is what a periodic convolution is:

* every convolution pads circularly, so ``C(roll(u, s)) == roll(C(u), s)`` exactly (up to
  floating-point reassociation) for every shift ``s``;
* no layer depends on ``nx``: the parameter count is the same at any grid size and the
  model runs on a field of any length;
* the normalisation is *per channel* (one mean/std per input feature, one output scale),
  not per grid point, which would break the equivariance.

A model still learns a stencil for one grid spacing ``dx = domain_length / nx`` (and one
step ``h``): it records ``dx`` in :attr:`~ConvCorrector.trained_for` and ``solve`` refuses a
field of another length (another ``dx`` on the same domain) unless the model's
``allow_other_grid`` flag is set.

The same classes correct 2-D fields ``[..., n, n]`` on a periodic square (e.g. the
vorticity of :class:`~attsolver.systems.NavierStokes2D`): a ``state_shape`` of two dims
selects :class:`PeriodicConv2d` layers; everything else (features, per-channel
normalisation, the gate, what it was trained for) is shared.

Design [ours, see docs/method.md §1 and §3]: the same body / attention / combine
split as the ODE AttSolver, with 1-D periodic convolutions as the body and the attention
module as a channel gate over the feature maps (the gate pools over space, so it is
translation-invariant and the product/sum with the maps stays equivariant).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import make_activation, make_attention
from .att_solver import COMBINES
from .base import Corrector, check_positive_int, register_corrector

__all__ = ["PeriodicConv1d", "PeriodicConv2d", "ConvCorrector", "NeurVecConv", "AttSolverConv"]


def _odd_stencil(kernel_size: int) -> int:
    kernel_size = check_positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a centred periodic stencil), got {kernel_size}")
    return kernel_size


def _finish_periodic(conv: nn.Module, zero_init: bool) -> None:
    """The periodic convolutions' common set-up: the wrap width and an optional exact zero."""
    conv.wrap = conv.kernel_size[0] // 2
    if zero_init:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)


class PeriodicConv1d(nn.Conv1d):
    """``Conv1d`` on a periodic domain: the input ``[B, C, X]`` is wrapped around by
    ``kernel_size // 2`` points on each side before a 'valid' convolution, so the output has
    the input's length and commutes with ``torch.roll`` along ``X``.

    Any ``X >= 1`` works, also shorter than the padding (the wrap then repeats the field).

    Args:
        in_channels, out_channels: as :class:`torch.nn.Conv1d`.
        kernel_size: odd (a centred stencil).
        zero_init: set weight and bias to zero (an exact zero output).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, zero_init: bool = False,
                 dtype: torch.dtype | None = None):
        super().__init__(in_channels, out_channels, _odd_stencil(kernel_size), padding=0, dtype=dtype)
        _finish_periodic(self, zero_init)

    def forward(self, x: Tensor) -> Tensor:
        p = self.wrap
        if p:
            n = x.shape[-1]
            if p <= n:
                x = F.pad(x, (p, p), mode="circular")
            else:  # a field shorter than the stencil: index the periodic extension
                idx = torch.arange(-p, n + p, device=x.device) % n
                x = x.index_select(-1, idx)
        return F.conv1d(x, self.weight, self.bias)


class PeriodicConv2d(nn.Conv2d):
    """``Conv2d`` on a periodic square: the input ``[B, C, Y, X]`` is wrapped around by
    ``kernel_size // 2`` points on each side before a 'valid' convolution, so the output has
    the input's size and commutes with ``torch.roll`` along ``Y`` and ``X``.

    Args: as :class:`PeriodicConv1d` (a square ``kernel_size x kernel_size`` stencil).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, zero_init: bool = False,
                 dtype: torch.dtype | None = None):
        super().__init__(in_channels, out_channels, _odd_stencil(kernel_size), padding=0, dtype=dtype)
        _finish_periodic(self, zero_init)

    def forward(self, x: Tensor) -> Tensor:
        p = self.wrap
        if p:
            if p <= min(x.shape[-2:]):
                x = F.pad(x, (p, p, p, p), mode="circular")
            else:  # a field smaller than the stencil: index the periodic extension
                for dim in (-2, -1):
                    n = x.shape[dim]
                    x = x.index_select(dim, torch.arange(-p, n + p, device=x.device) % n)
        return F.conv2d(x, self.weight, self.bias)


class ConvCorrector(Corrector):
    """Base class of the correctors of periodic 1-D fields ``[..., nx]`` and 2-D fields
    ``[..., n, n]`` (a square periodic domain of side ``domain_length``).

    The features named in ``features`` become input channels (``y``: the field ``u_n``;
    ``dy``: the classical increment; ``phi``: ``dy / h``; ``h``: a constant channel), each
    normalised by one mean and one standard deviation; the network maps ``[B, C_in, X]`` to
    ``[B, 1, X]`` and the result is multiplied by one output scale ``sigma`` (and
    ``h**output_order``).  ``fit`` sets these buffers from the training data: it passes
    per-grid-point statistics, which :meth:`set_normalization` pools over the grid.

    Args:
        state_shape: ``(nx,)`` (or ``nx``), or ``(n, n)`` in 2-D: the grid the model is
            trained on.
        method, step_size: the classical step it corrects.
        features: step features, each one input channel.
        domain_length: period of the domain; with ``nx`` it fixes the grid spacing
            ``dx = domain_length / nx`` that the learned stencils belong to.
        allow_other_grid: let ``solve`` use the model on fields of another length (another
            ``dx``).  A usage flag, not part of the saved config: a loaded model refuses
            other grids until it is set again (``model.allow_other_grid = True``).
        dtype: parameter dtype.
        hparams: the subclass's own constructor arguments.

    Attributes:
        grid_spacing: ``dx`` it was built (trained) for.
        allow_other_grid: see above.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, features: tuple[str, ...] | list[str],
                 domain_length: float = 1.0, allow_other_grid: bool = False, dtype: Any = torch.float32,
                 hparams: dict[str, Any] | None = None):
        if isinstance(domain_length, bool) or not isinstance(domain_length, numbers.Real) \
                or not math.isfinite(domain_length) or domain_length <= 0:
            raise ValueError(f"domain_length must be a positive finite number (the period), got {domain_length!r}")
        hp = {"domain_length": float(domain_length), **(hparams or {})}
        super().__init__(state_shape, method=method, step_size=step_size, features=features, dtype=dtype,
                         hparams=hp)
        if len(self.state_shape) not in (1, 2) or len(set(self.state_shape)) != 1:
            raise ValueError(
                f"{type(self).__name__} corrects periodic fields [..., nx] or [..., n, n] (square); "
                f"state_shape must be (nx,) or (n, n), got {self.state_shape} (use NeurVec/AttSolver "
                "for other states)"
            )
        self.spatial_dims = len(self.state_shape)
        #: the periodic convolution of this dimension, for the subclasses' layers
        self.conv = PeriodicConv1d if self.spatial_dims == 1 else PeriodicConv2d
        self.domain_length = float(domain_length)
        self.allow_other_grid = bool(allow_other_grid)
        n_ch = len(self.features)
        # per-channel normalisation replaces the base class's per-component buffers
        self.in_mean = torch.zeros(n_ch, dtype=self.dtype)
        self.in_std = torch.ones(n_ch, dtype=self.dtype)
        self.out_scale = torch.ones(1, dtype=self.dtype)

    @classmethod
    def for_system(cls, system: Any, **kwargs: Any) -> ConvCorrector:
        """Build for a :class:`~attsolver.systems.SemilinearPDE`'s grid (``state_shape=(system.nx,)``)
        or a 2-D system's (``system.grid_shape``), with ``domain_length=system.length``;
        ``kwargs`` go to the constructor."""
        shape = tuple(system.grid_shape) if hasattr(system, "grid_shape") else (system.nx,)
        return cls(shape, domain_length=system.length, **kwargs)

    # ------------------------------------------------------------------ geometry

    @property
    def nx(self) -> int:
        """Grid points of the training grid."""
        return self.state_shape[0]

    @property
    def grid_spacing(self) -> float:
        """``dx = domain_length / nx`` of the training grid."""
        return self.domain_length / self.nx

    @property
    def in_channels(self) -> int:
        return len(self.features)

    @property
    def receptive_field(self) -> int:
        """Grid points that influence one output value (odd)."""
        convs = [m for m in self.modules() if isinstance(m, (PeriodicConv1d, PeriodicConv2d))]
        return 1 + sum(2 * m.wrap for m in convs)

    # ------------------------------------------------------------------ normalisation

    @torch.no_grad()
    def set_normalization(self, in_mean: Tensor, in_std: Tensor, out_scale: Tensor) -> None:
        """Set the per-channel buffers.

        Accepts per-channel values (``[C_in]``, ``[C_in]``, ``[1]``) or, as ``fit`` passes
        them, per-grid-point values (``[feature_dim]``, ``[feature_dim]``, ``[nx]``), which
        are pooled exactly: a channel's mean is the mean of its points' means, its variance
        the mean of their second moments minus the squared mean, and the output scale the
        root-mean-square of the points' scales (every point has the same number of samples).
        """
        vals = [torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (in_mean, in_std, out_scale)]
        n_ch = self.in_channels
        if (vals[0].numel(), vals[1].numel(), vals[2].numel()) == (self.feature_dim, self.feature_dim,
                                                                      self.state_dim) and self.feature_dim != n_ch:
            means, stds = [], []
            for sl in self.feature_slices().values():
                m, s = vals[0][sl], vals[1][sl]
                mean = m.mean()
                means.append(mean)
                stds.append(torch.sqrt(torch.clamp((s.square() + m.square()).mean() - mean.square(), min=0.0)))
            vals = [torch.stack(means), torch.stack(stds), vals[2].square().mean().sqrt().reshape(1)]
            # a channel that is constant over the data (e.g. h) is centred but not scaled
            vals[1] = torch.where(vals[1] > 1e-12 * torch.clamp(vals[0].abs(), min=1.0), vals[1],
                                  torch.ones_like(vals[1]))
        for name, v, n in (("in_mean", vals[0], n_ch), ("in_std", vals[1], n_ch), ("out_scale", vals[2], 1)):
            if v.numel() != n:
                raise ValueError(
                    f"{name} needs {n} value(s) (per channel) or the per-grid-point statistics that fit "
                    f"passes, got {v.numel()}"
                )
            if not bool(torch.isfinite(v).all()) or (name != "in_mean" and not bool((v > 0).all())):
                raise ValueError(f"{name} must be finite{'' if name == 'in_mean' else ' and positive'}")
            getattr(self, name).copy_(v.to(self.dtype))

    # ------------------------------------------------------------------ forward

    def channels(self, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """Raw (not normalised) input channels ``[B, C_in, X]`` from fields ``[B, X]`` (2-D:
        ``[B, C_in, Y, X]`` from ``[B, Y, X]``)."""
        return torch.stack(self.feature_parts(y, dy, h, tuple(y.shape)), dim=1)

    def network(self, u: Tensor) -> Tensor:
        """Normalised channels ``[B, C_in, X]`` -> normalised correction ``[B, 1, X]``."""
        raise NotImplementedError

    def forward(self, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The correction for one step, of ``y``'s shape ``[*batch, X]`` (any ``X``).

        Args:
            t: the step's start time (unused).
            y: fields ``[*batch, X]``.
            dy: the classical increment, same shape.
            h: the step (> 0).
        """
        self._check_forward(h)
        d = self.spatial_dims
        if y.ndim < d:
            raise ValueError(f"{type(self).__name__} expects fields [..., {', '.join(['n'] * d)}], "
                             f"got shape {tuple(y.shape)}")
        shape = y.shape
        grid = shape[len(shape) - d:]
        u = self.channels(y.reshape(-1, *grid), dy.reshape(-1, *grid), h)
        per_channel = (-1,) + (1,) * d
        u = (u - self.in_mean.view(per_channel)) / self.in_std.view(per_channel)
        v = self.network(u)
        return (v * Corrector.output_scale(self, h)).reshape(shape)

    def output_scale(self, h: float) -> Tensor:
        """The base class's contract, ``[nx]`` (2-D: ``[n * n]``): the one output scale (times
        ``h**output_order``) repeated over the training grid (``fit`` normalises its losses with it)."""
        return super().output_scale(h).expand(self.state_dim)

    # ------------------------------------------------------------------ what it was trained for

    @property
    def trained_for(self) -> dict[str, Any]:
        record = super().trained_for
        record.update({
            "feature_layout": "one input channel per feature, [batch, channel, x]; per-channel normalisation",
            "grid_spacing": self.grid_spacing,
            "domain_length": self.domain_length,
            "nx": self.nx,
        })
        return record

    def _shape_problems(self, y0: Tensor) -> list[str]:
        """Fields of another length ``nx'`` on the same domain have the grid spacing
        ``domain_length / nx'``; refused unless :attr:`allow_other_grid` is set."""
        d = self.spatial_dims
        if y0.ndim < d:
            return [f"state shape: y0 has shape {tuple(y0.shape)}, expected fields ending in {d} grid dims"]
        if d == 2 and y0.shape[-2] != y0.shape[-1]:
            return [f"state shape: 2-D fields must be square [..., n, n], got {tuple(y0.shape)}"]
        if y0.shape[-1] != self.nx and not self.allow_other_grid:
            dx = self.domain_length / y0.shape[-1]
            return [
                f"grid spacing {dx:.6g} (fields of {y0.shape[-1]} points on the domain of length "
                f"{self.domain_length:g}; trained for dx={self.grid_spacing:.6g}, nx={self.nx}). The "
                "convolutions run at any nx, but their stencils were learned for one spacing; set "
                "allow_other_grid=True (constructor or attribute) to use it anyway"
            ]
        return []

    def _trained_shape(self) -> str:
        return f"grid spacing {self.grid_spacing:.6g} (nx={self.nx})"


@register_corrector
class NeurVecConv(ConvCorrector):
    """NeurVec with a periodic convolutional body: ``C = sigma * K2 * rho(K1 * norm(u_n))``.

    The field analogue of NeurVec's one wide hidden layer: a convolution ``1 -> width``
    channels (kernel ``kernel_size``), NeurVec's learnable rational activation, and a
    zero-initialised convolution ``width -> 1``; the input is the field only (``y``), no
    ``h``-scaling.  Receptive field ``2 kernel_size - 1`` points.

    Parameters: ``width (2 kernel_size + 1) + 1`` (+7 rational coefficients), whatever ``nx``.

    Args:
        state_shape: ``(nx,)`` of the training grid.
        method, step_size: the classical step it corrects.
        width: hidden channels.
        kernel_size: odd stencil width of both convolutions.
        activation: default ``"rational"`` (NeurVec's); any name of :func:`attsolver.nn.make_activation`.
        domain_length, allow_other_grid, dtype: see :class:`ConvCorrector`.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, width: int = 32, kernel_size: int = 5,
                 activation: str = "rational", domain_length: float = 1.0, allow_other_grid: bool = False,
                 dtype: Any = torch.float32):
        width = check_positive_int("width", width)
        super().__init__(state_shape, method=method, step_size=step_size, features=("y",),
                         domain_length=domain_length, allow_other_grid=allow_other_grid, dtype=dtype,
                         hparams={"width": width, "kernel_size": kernel_size, "activation": activation})
        self.net = nn.Sequential(
            self.conv(1, width, kernel_size, dtype=self.dtype),
            make_activation(activation, dtype=self.dtype),
            self.conv(width, 1, kernel_size, zero_init=True, dtype=self.dtype),
        )

    def network(self, u: Tensor) -> Tensor:
        return self.net(u)


@register_corrector
class AttSolverConv(ConvCorrector):
    """AttSolver with a periodic convolutional body and a channel gate over its feature maps.

    ``z = B(u)``: ``depth`` periodic convolutions (``C_in -> width -> ... -> width``, kernel
    ``kernel_size``) with ``activation`` after each;
    ``a = A(z)``: an attention module of :mod:`attsolver.nn` (default SE, its linear maps'
    spectral norms capped at ``lipschitz_cap``) applied to the maps ``[B, width, X]``: it
    pools over space, giving one gate value in ``(0, 1)`` per sample and channel;
    ``m = z + a`` (``combine="add"``) or ``z ⊙ a`` (``"mul"``, AttNS-m) or ``m = z``
    (``attention="none"``); ``C = sigma * K_o * m`` with ``K_o`` a zero-initialised
    convolution ``width -> 1`` of kernel ``head_kernel``.

    Defaults (width 16, depth 3, kernel 5, GELU; receptive field 13 points; 2,933 parameters
    with the SE gate) were chosen on Burgers at Nu = 0.001 (64 points, h = 0.01, 32
    trajectories, 30 one-step epochs): GELU reached a held-out nRMSE of 0.085 against tanh's
    0.155 at width 32 (the coarse solver: 0.80), and width 16 cost half the time of width 32
    for 0.088.  With ``activation="tanh"`` the correction is bounded for every input, as for
    the ODE AttSolver (``|C| <= sigma (2 ||K_o||_1 + |b_o|)``); with GELU it is not.

    Args:
        state_shape: ``(nx,)`` of the training grid.
        method, step_size: the classical step it corrects.
        features: input channels (default the field and the classical increment).
        width: feature maps (= gate channels).
        depth: body convolutions (>= 1).
        kernel_size: odd stencil of the body convolutions.
        head_kernel: odd stencil of the output convolution.
        activation: body activation.
        attention: a gate name from :func:`attsolver.nn.list_attention` or ``"none"``.
        combine: ``"add"`` or ``"mul"`` (see :data:`attsolver.correctors.COMBINES`).
        lipschitz_cap: spectral-norm cap of the gate's linear maps, or ``None``.
        reduction: SE bottleneck ratio.
        attention_kwargs: further gate options (JSON-able).
        domain_length, allow_other_grid, dtype: see :class:`ConvCorrector`.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float,
                 features: tuple[str, ...] | list[str] = ("y", "dy"), width: int = 16, depth: int = 3,
                 kernel_size: int = 5, head_kernel: int = 1, activation: str = "gelu", attention: str = "se",
                 combine: str = "add", lipschitz_cap: float | None = 1.0, reduction: int = 4,
                 attention_kwargs: dict[str, Any] | None = None, domain_length: float = 1.0,
                 allow_other_grid: bool = False, dtype: Any = torch.float32):
        width = check_positive_int("width", width)
        depth = check_positive_int("depth", depth)
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; choose one of: {', '.join(sorted(COMBINES))}")
        features = list(features)
        super().__init__(
            state_shape, method=method, step_size=step_size, features=features, domain_length=domain_length,
            allow_other_grid=allow_other_grid, dtype=dtype,
            hparams={"features": features, "width": width, "depth": depth, "kernel_size": kernel_size,
                     "head_kernel": head_kernel, "activation": activation, "attention": attention,
                     "combine": combine, "lipschitz_cap": lipschitz_cap, "reduction": reduction,
                     "attention_kwargs": dict(attention_kwargs or {})},
        )
        self.combine = combine
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(self.conv(self.in_channels if i == 0 else width, width, kernel_size, dtype=self.dtype))
            layers.append(make_activation(activation, dtype=self.dtype))
        self.body = nn.Sequential(*layers)
        if attention == "none":
            self.gate = None
        else:
            self.gate = make_attention(attention, width, in_channels=width, reduction=reduction,
                                       lipschitz_cap=lipschitz_cap, dtype=self.dtype, **dict(attention_kwargs or {}))
            if getattr(self.gate, "stateful", False):
                raise ValueError(
                    f"attention {attention!r} carries a state across calls; the step corrections are "
                    "stateless: choose a stateless gate (se, iebn)"
                )
        self.head = self.conv(width, 1, head_kernel, zero_init=True, dtype=self.dtype)
        self._combine = COMBINES[combine]

    def network(self, u: Tensor) -> Tensor:
        z = self.body(u)
        if self.gate is not None:
            a = self.gate(z)  # [B, width, 1(, 1)]: pooled over space, broadcast back
            if a.ndim == 2:  # a gate that returns [B, C] for maps
                a = a.view(*a.shape, *([1] * self.spatial_dims))
            z = self._combine(z, a)
        return self.head(z)
