"""Weight-shared local correctors: one small network applied at every site of a lattice.

Lorenz-96 is a ring, the spring chain a chain, a PDE field a grid: the truncation error of
a step at one site depends on that site's neighbourhood, by the same rule everywhere.  The
dense correctors (:class:`~attsolver.correctors.NeurVec`, ...) ignore this: they see the whole
flattened state, so their size grows with the number of sites and each site's rule is
learned separately.  A *local* corrector says so in its architecture:

* the state's components are arranged as ``C`` channels on ``n`` sites along one *lattice
  axis* (the user names the axis and whether it is periodic; the built-in systems declare
  theirs as :attr:`attsolver.systems.System.lattice`);
* at every site the network sees a *window* of ``window`` neighbouring sites (all channels
  of every step feature there) and returns that site's ``C`` corrections: a 1-D convolution
  over the lattice whose kernel is a small MLP.  The lattice is wrapped around (periodic) or
  padded with zeros beyond its ends (fixed ends, e.g. the walls of the spring chain), before
  the per-channel normalisation, so a wall reads as the physical value 0;
* the parameter count depends on ``C``, the window and the widths, never on ``n``, and the
  normalisation is per channel (one mean / std per feature channel, one output scale per
  state channel), so a trained model runs on a lattice of any length; ``solve`` refuses
  another length unless the usage flag ``allow_other_size`` is set, since a learned rule
  belongs to one lattice spacing.

Each dense family has its local form, with the same features, activation and output scaling:
:class:`LocalNeurVec` (``C = s ⊙ N(window of y)``), :class:`LocalHypersolver` (``h^{p+1}``
scaling of ``g(window of [y, Phi, h])``) and :class:`LocalAttSolver` (body + bounded gate +
combine, the gate acting per site).  As every corrector they start as an exact zero
correction.

``forward`` has three forms, equal to rounding: the GEMM form (one row of windows per site,
with autograd, as training uses it); without autograd the same with the normalisation
folded into the first layer and the activations in place; and under ``torch.compile``
(``solve(..., options={"compile": True})``) :meth:`LocalCorrector.pointwise_forward`, every
layer unrolled into elementwise sums of products on shifted copies of the lattice, which
inductor fuses with the classical stages of the step.  Design notes and measurements:
docs/local_correctors.md.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import get_attention, make_attention
from ..nn.activations import Rational
from ..nn.se import SEGate
from .att_solver import COMBINES, AttSolver
from .base import Corrector, check_positive_int, mlp, register_corrector

__all__ = ["LocalCorrector", "LocalNeurVec", "LocalHypersolver", "LocalAttSolver"]


class LocalCorrector(Corrector):
    """Base class of the weight-shared local correctors (see the module docstring).

    Args:
        state_shape: shape of one state; its axis ``lattice_axis`` is the lattice.
        method, step_size: the classical step it corrects.
        features: step features; each state feature gives ``C`` input channels, ``h`` one.
        periodic: ``True`` for a ring (the window wraps around), ``False`` for a chain with
            fixed ends (zero beyond them).  No default: the user says which.
        lattice_axis: the state axis along which the sites lie (negative counts from the end).
        blocks: along the lattice axis the components form ``blocks`` consecutive blocks of
            equal length, one channel each (spring chain: ``(p_1..p_n, q_1..q_n)``, 2 blocks).
            The other state axes are channels too.
        window: odd number of neighbouring sites the network sees at each site (centred).
        allow_other_size: let ``solve`` use the model on a lattice of another length.  A usage
            flag, not saved: a loaded model refuses other lengths until it is set again.
        mixed_precision: accept states of another floating dtype (typically a float32 model
            in a float64 solve): the correction is computed in the model's dtype and cast back
            to the state's.  A usage flag, not saved.  The correction is a small fraction of
            the step, so float32 rounding in it is far below the step's own error, and the
            network runs at float32 speed.
        dtype: parameter dtype.
        hparams: the subclass's own constructor arguments.

    Attributes:
        sites: ``n``, the number of sites of the training lattice.
        state_channels: ``C``, channels per site of one state feature.
        in_channels: input channels (``C`` per state feature, 1 for ``h``).
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, features: tuple[str, ...] | list[str],
                 periodic: bool, lattice_axis: int = -1, blocks: int = 1, window: int = 5,
                 allow_other_size: bool = False, mixed_precision: bool = False, dtype: Any = torch.float32,
                 hparams: dict[str, Any] | None = None):
        if not isinstance(periodic, bool):
            raise TypeError(f"periodic must be True (a ring) or False (fixed ends), got {periodic!r}")
        if isinstance(lattice_axis, bool) or not isinstance(lattice_axis, numbers.Integral):
            raise TypeError(f"lattice_axis must be an int (a state axis), got {lattice_axis!r}")
        blocks = check_positive_int("blocks", blocks)
        window = check_positive_int("window", window)
        if window % 2 == 0:
            raise ValueError(f"window must be odd (a site and as many neighbours on each side), got {window}")
        hp = {"periodic": periodic, "lattice_axis": int(lattice_axis), "blocks": blocks, "window": window,
              **(hparams or {})}
        super().__init__(state_shape, method=method, step_size=step_size, features=features, dtype=dtype,
                         hparams=hp)
        nd = len(self.state_shape)
        if not -nd <= lattice_axis < nd:
            raise ValueError(
                f"lattice_axis={lattice_axis} does not exist: states of shape {self.state_shape} have axes "
                f"{-nd}..{nd - 1}; name the axis along which the sites lie"
            )
        self.lattice_axis = int(lattice_axis) % nd
        self.periodic = periodic
        self.blocks = blocks
        self.window = window
        self.allow_other_size = bool(allow_other_size)
        self.mixed_precision = bool(mixed_precision)
        length = self.state_shape[self.lattice_axis]
        if length % blocks:
            raise ValueError(
                f"the lattice axis {self.lattice_axis} has {length} components, not a multiple of blocks={blocks}"
            )
        self.sites = length // blocks
        if self.sites < window:
            raise ValueError(self._too_short(self.sites))
        self.state_channels = self.state_dim // self.sites
        # per-channel normalisation replaces the base class's per-component buffers
        self.in_mean = torch.zeros(self.in_channels, dtype=self.dtype)
        self.in_std = torch.ones(self.in_channels, dtype=self.dtype)
        self.out_scale = torch.ones(self.state_channels, dtype=self.dtype)
        # the channel of every flat state component (integer buffer: .to(dtype) leaves it alone)
        self.register_buffer("component_channel", self._component_channels(), persistent=False)

    @classmethod
    def for_system(cls, system: Any, **kwargs: Any) -> LocalCorrector:
        """Build for a system that declares its lattice (``system.lattice``, e.g. Lorenz-96, the
        spring chain): state shape, lattice axis, periodicity and blocks come from it;
        ``kwargs`` go to the constructor (``periodic=False`` may pad a ring; ``periodic=True``
        on a chain with fixed ends is refused)."""
        lattice = getattr(system, "lattice", None)
        name = getattr(system, "name", type(system).__name__)
        if lattice is None:
            raise ValueError(
                f"{name} declares no lattice (its state components are not sites of a ring or chain); "
                f"use the dense corrector, or build {cls.__name__}(state_shape, lattice_axis=..., periodic=...) "
                "if they are"
            )
        if kwargs.get("periodic") is True and not lattice.periodic:
            raise ValueError(
                f"periodic=True, but {name}'s lattice is not periodic (a chain with fixed ends): its last "
                "site does not neighbour its first; leave periodic unset (or False)"
            )
        for key in ("lattice_axis", "blocks"):
            declared = lattice.axis if key == "lattice_axis" else lattice.blocks
            if key in kwargs and kwargs[key] != declared:
                raise ValueError(f"{key}={kwargs[key]!r} contradicts {name}'s lattice ({key}={declared})")
        kw = {"periodic": lattice.periodic, "lattice_axis": lattice.axis, "blocks": lattice.blocks, **kwargs}
        return cls(tuple(system.state_shape), **kw)

    # ------------------------------------------------------------------ geometry

    def _too_short(self, sites: int) -> str:
        return (f"the lattice axis {self.lattice_axis} has {sites} site(s), too short for the window of "
                f"{self.window}; choose window <= {sites} (odd)")

    @property
    def in_channels(self) -> int:
        return sum(1 if f == "h" else self.state_channels for f in self.features)

    @property
    def site_features(self) -> int:
        """Inputs of the per-site network: ``in_channels * window``."""
        return self.in_channels * self.window

    def _component_channels(self) -> Tensor:
        idx = self._to_lattice(torch.arange(self.state_dim).reshape(1, *self.state_shape), self.state_shape)[0]
        chan = torch.empty(self.state_dim, dtype=torch.long)
        chan[idx.reshape(-1)] = torch.arange(idx.shape[0]).repeat_interleave(idx.shape[1])
        return chan

    def _to_lattice(self, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        """``[B, *shape]`` -> ``[B, C, n]``: lattice axis last, blocks and other axes as channels."""
        if self.lattice_axis != len(shape) - 1:
            x = x.movedim(1 + self.lattice_axis, -1)
        return x.reshape(x.shape[0], -1, shape[self.lattice_axis] // self.blocks)

    def _from_lattice(self, v: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`_to_lattice`."""
        a = self.lattice_axis
        if a == len(shape) - 1:
            return v.reshape(v.shape[0], *shape)
        moved = shape[:a] + shape[a + 1:] + (shape[a],)
        return v.reshape(v.shape[0], *moved).movedim(-1, 1 + a)

    # ------------------------------------------------------------------ normalisation

    @torch.no_grad()
    def set_normalization(self, in_mean: Tensor, in_std: Tensor, out_scale: Tensor) -> None:
        """Set the per-channel buffers.

        Accepts per-channel values (``[in_channels]``, ``[in_channels]``, ``[C]``) or, as ``fit``
        passes them, per-component values (``[feature_dim]``, ``[feature_dim]``, ``[D]``), which
        are pooled over the sites exactly: a channel's mean is the mean of its components'
        means, its variance the mean of their second moments minus the squared mean, and its
        output scale the root-mean-square of their scales (all have the same sample count).
        """
        vals = [torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (in_mean, in_std, out_scale)]
        if (vals[0].numel(), vals[1].numel(), vals[2].numel()) == (self.feature_dim, self.feature_dim,
                                                                      self.state_dim):
            group, offset = [], 0
            for f in self.features:  # the feature vector's layout -> input channel of each entry
                if f == "h":
                    group.append(torch.tensor([offset]))
                    offset += 1
                else:
                    group.append(offset + self.component_channel)
                    offset += self.state_channels
            group = torch.cat(group)
            count = torch.bincount(group, minlength=offset).double()
            mean = torch.bincount(group, vals[0], minlength=offset) / count
            second = torch.bincount(group, vals[1].square() + vals[0].square(), minlength=offset) / count
            std = torch.sqrt(torch.clamp(second - mean.square(), min=0.0))
            # a channel constant over the data (e.g. h) is centred but not scaled
            std = torch.where(std > 1e-12 * torch.clamp(mean.abs(), min=1.0), std, torch.ones_like(std))
            chan = self.component_channel
            scale = (torch.bincount(chan, vals[2].square(), minlength=self.state_channels)
                     / torch.bincount(chan, minlength=self.state_channels).double()).sqrt()
            vals = [mean, std, scale]
        for name, v, n in (("in_mean", vals[0], self.in_channels), ("in_std", vals[1], self.in_channels),
                           ("out_scale", vals[2], self.state_channels)):
            if v.numel() != n:
                raise ValueError(
                    f"{name} needs {n} value(s) (per channel) or the per-component statistics that fit "
                    f"passes, got {v.numel()}"
                )
            if not bool(torch.isfinite(v).all()) or (name != "in_mean" and not bool((v > 0).all())):
                raise ValueError(f"{name} must be finite{'' if name == 'in_mean' else ' and positive'}")
            getattr(self, name).copy_(v.to(self.dtype))

    def output_scale(self, h: float) -> Tensor:
        """The base class's contract, ``[D]``: each component's channel scale (times
        ``h**output_order``) in the flat state layout (``fit`` normalises its losses with it)."""
        return super().output_scale(h)[self.component_channel]

    # ------------------------------------------------------------------ forward

    def network(self, u: Tensor) -> Tensor:
        """Normalised windows ``[M, site_features]`` (one row per site, ordered site by site
        from ``i - r`` to ``i + r``, the input channels of each site together) -> ``[M, C]``."""
        raise NotImplementedError

    def _state_of(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        k = len(self.state_shape)
        if len(shape) >= k and self._same_but_length(tuple(shape[len(shape) - k:])):
            return tuple(shape[len(shape) - k:])
        if k > 1 and shape and shape[-1] == self.state_dim:  # flat states, as fit passes them
            return self.state_shape
        raise ValueError(
            f"{type(self).__name__} expects states ending in shape {self.state_shape} (or another length "
            f"along lattice axis {self.lattice_axis}), got {tuple(shape)}"
        )

    def _same_but_length(self, s: tuple[int, ...]) -> bool:
        a = self.lattice_axis
        return (len(s) == len(self.state_shape) and s[:a] + s[a + 1:] == self.state_shape[:a] + self.state_shape[a + 1:]
                and s[a] % self.blocks == 0 and s[a] >= self.blocks)

    def forward(self, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The correction for one step, of ``y``'s shape ``[*batch, *state]``.

        Args:
            t: the step's start time (unused).
            y: states; along the lattice axis any length that is a multiple of ``blocks``
                and gives at least ``window`` sites.
            dy: the classical increment, same shape.
            h: the step (> 0).
        """
        self._check_forward(h)
        if not self._fast_forms_follow_network:
            return self._forward(y, dy, h)
        if torch.compiler.is_compiling():
            if self.fusable():
                return self.pointwise_forward(y, dy, h)
        elif self.foldable():
            if not (torch.is_grad_enabled() and (y.requires_grad or dy.requires_grad
                                                 or any(p.requires_grad for p in self.parameters()))):
                return self._forward(y, dy, h, inference=True)
        return self._forward(y, dy, h)

    def _lattice_inputs(self, y: Tensor, dy: Tensor) -> tuple[tuple[int, ...], int, Tensor, Tensor]:
        """``(state shape, sites, y, dy)``: both as ``[B, C, sites]`` lattices, in the network's
        dtype under mixed precision; a lattice shorter than the window is refused."""
        state = self._state_of(tuple(y.shape))
        n = state[self.lattice_axis] // self.blocks
        if n < self.window:
            raise ValueError(self._too_short(n))
        yl = self._to_lattice(y.reshape(-1, *state), state)
        dyl = self._to_lattice(dy.reshape(-1, *state), state)
        if yl.dtype != self.dtype and self.mixed_precision:
            yl, dyl = yl.to(self.dtype), dyl.to(self.dtype)
        return state, n, yl, dyl

    def _forward(self, y: Tensor, dy: Tensor, h: float, inference: bool = False) -> Tensor:
        """The GEMM form: one row of windows per site.  ``inference`` (no gradient wanted):
        the normalisation folded into the first layer's weights and the activations applied
        in place (no autograd graph to keep), which saves several ``[B n, width]`` passes."""
        shape = y.shape
        state, n, yl, dyl = self._lattice_inputs(y, dy)
        b = yl.shape[0]
        parts = self.feature_parts(yl, dyl, h, (b, 1, n))
        u = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, C_in, n]
        r = self.window // 2
        if r:
            # pad the raw values: a fixed end reads as 0, the wall's value
            u = F.pad(u, (r, r), mode="circular") if self.periodic else F.pad(u, (r, r))
        if not inference:
            u = (u - self.in_mean[:, None]) / self.in_std[:, None]
        u = u.transpose(1, 2).contiguous()  # [B, n+2r, C_in]
        # site i's window (sites i-r..i+r, all channels of each) is one contiguous run of memory:
        # a strided view, [B, n, window * C_in], copied once into the rows of the network's input
        c_in = u.shape[2]
        windows = u.as_strided((b, n, self.site_features), (u.stride(0), c_in, 1)).reshape(b * n, self.site_features)
        if inference:
            v = self.inference_network(windows).mul_(Corrector.output_scale(self, h))  # [B n, C]
        else:
            v = self.network(windows) * Corrector.output_scale(self, h)
        v = v.reshape(b, n, self.state_channels).transpose(1, 2)
        return self._from_lattice(v, state).reshape(shape).to(y.dtype)

    # ------------------------------------------------------------------ the fused (compiled) form

    #: whether the fast forms evaluate the network this class defines (set per class below)
    _fast_forms_follow_network = True

    def __init_subclass__(cls, **kwargs):
        """A subclass that overrides :meth:`network` below the class that wrote
        :meth:`pointwise_network` and :meth:`after_first_layer` (e.g. ``class
        Mine(LocalNeurVec)`` with its own ``network``) would otherwise be run by its parent's
        fast forms, silently, as its parent's network: it keeps the reference form."""
        super().__init_subclass__(**kwargs)

        def owner(name: str) -> type:
            return next(k for k in cls.__mro__ if name in vars(k))

        net = owner("network")
        cls._fast_forms_follow_network = (issubclass(owner("pointwise_network"), net)
                                          and issubclass(owner("after_first_layer"), net))

    def fusable(self) -> bool:
        """Whether :meth:`pointwise_forward` can evaluate this model (its network is made of
        linear layers and elementwise activations / gates it knows); under ``torch.compile``
        ``forward`` then uses it."""
        return type(self).pointwise_network is not LocalCorrector.pointwise_network

    def foldable(self) -> bool:
        """Whether :meth:`inference_network` can evaluate this model (the eager path without
        autograd uses it then)."""
        return type(self).after_first_layer is not LocalCorrector.after_first_layer and self.fusable()

    def first_layer(self) -> nn.Linear:
        """The linear layer that reads the normalised windows (and nothing else does)."""
        raise NotImplementedError

    def after_first_layer(self, z: Tensor) -> Tensor:
        """:meth:`network` from the first layer's output on, activations in place (no autograd)."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_folded", None)  # a cache (of weak references, which do not pickle)
        return state

    def inference_network(self, windows: Tensor) -> Tensor:
        """:meth:`network` on raw (not normalised) windows, without autograd: the normalisation
        ``(u - mean) / std`` folded into the first layer, ``W' = W / std``, ``b' = b - W' mean``."""
        first = self.first_layer()
        weight = first.weight
        sources = [t for t in (weight, first.bias, self.in_mean, self.in_std) if t is not None]
        # the folded weights, kept while their sources are the same tensors, unchanged (weak
        # references: a replaced tensor is never mistaken for the old one; _version counts
        # in-place changes such as an optimiser step, load_state_dict or set_normalization)
        cached = self.__dict__.get("_folded")
        if cached is None or len(cached[0]) != len(sources) or any(
                r() is not t or v != t._version for (r, v), t in zip(cached[0], sources)):
            inv = (1.0 / self.in_std).repeat(self.window)  # input k * C_in + c is channel c
            w = weight * inv
            bias = -(w @ self.in_mean.repeat(self.window))
            if first.bias is not None:
                bias = bias + first.bias
            cached = ([(weakref.ref(t), t._version) for t in sources], w.t(), bias)
            self.__dict__["_folded"] = cached
        return self.after_first_layer(torch.addmm(cached[2], windows, cached[1]))

    def pointwise_network(self, xs: list[Tensor]) -> list[Tensor]:
        """:meth:`network` on a list of ``site_features`` tensors of any one shape (input ``k``
        of every site) -> the list of ``C`` outputs; only elementwise arithmetic."""
        raise NotImplementedError

    def pointwise_forward(self, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """``forward``'s correction, evaluated as elementwise arithmetic on the lattice.

        The same numbers as :meth:`forward` up to rounding (the sums run in another order;
        tanh is evaluated through ``expm1``): the window's inputs are shifted copies of the
        ``[batch, sites]`` channels, and every layer of the per-site network is unrolled
        into sums of products with scalar weights.  Eager this is slower than the GEMM form;
        under ``torch.compile`` it has no layout copies, no ``[batch * sites, width]``
        intermediates and no GEMM calls: inductor fuses the window, the network, the output
        scaling and (in a solve) the classical stages of the step into a few loops over the
        lattice.  ``forward`` uses it when compiling.
        """
        shape = y.shape
        state, n, yl, dyl = self._lattice_inputs(y, dy)
        b = yl.shape[0]
        r = self.window // 2
        mean, inv_std = self.in_mean, 1.0 / self.in_std
        # Every input channel normalised and padded, [B, n + 2r], then read flat: input k of the
        # site at flat position p (= row * (n + 2r) + i) is channel[p + k].  One vector loop
        # runs over all B (n + 2r) - 2r positions; the 2r per row that straddle two rows are
        # computed and dropped (no per-row tails, no masked loads for the walls).
        length = b * (n + 2 * r) - 2 * r
        channels: list[Tensor] = []
        i = 0
        for f, part in zip(self.features, self.feature_parts(yl, dyl, h, (1, 1, 1))):
            for c in range(part.shape[1]):
                x = (part[:, c] - mean[i]) * inv_std[i]
                i += 1
                if f == "h" and (self.periodic or not r):  # the same at every position
                    channels.append(x.reshape(()))
                    continue
                x = x.expand(b, n)
                if r:
                    if self.periodic:
                        x = torch.cat((x[:, n - r:], x, x[:, :r]), 1)
                    else:  # beyond a fixed end the raw value 0, normalised
                        wall = ((0.0 - mean[i - 1]) * inv_std[i - 1]).expand(b, r)
                        x = torch.cat((wall, x, wall), 1)
                channels.append(x.reshape(-1))
        # input k * C_in + c: channel c at neighbour k (the order of forward's windows)
        xs = [ch if ch.ndim == 0 else ch[k:k + length] for k in range(self.window) for ch in channels]
        scale = Corrector.output_scale(self, h)
        outs = []
        for c, o in enumerate(self.pointwise_network(xs)):
            o = o * scale[c]
            if r:
                o = F.pad(o, (0, 2 * r)).reshape(b, n + 2 * r)[:, :n]
            outs.append(o.reshape(b, n))
        v = torch.stack(outs, 1)  # [B, C, n]
        return self._from_lattice(v, state).reshape(shape).to(y.dtype)

    # ------------------------------------------------------------------ what it was trained for

    @property
    def trained_for(self) -> dict[str, Any]:
        record = super().trained_for
        record.update({
            "feature_layout": "per site: a window of neighbouring sites x input channels; per-channel normalisation",
            "lattice_axis": self.lattice_axis,
            "periodic": self.periodic,
            "blocks": self.blocks,
            "sites": self.sites,
            "window": self.window,
        })
        return record

    def check_compatible(self, *, method: str, step_sizes: Any, y0: Tensor) -> None:
        """As :meth:`Corrector.check_compatible`; with :attr:`mixed_precision` set, a state of
        another floating dtype is accepted."""
        if self.mixed_precision and y0.dtype != self.dtype and y0.dtype.is_floating_point:
            y0 = y0.to(self.dtype)
        super().check_compatible(method=method, step_sizes=step_sizes, y0=y0)

    def _shape_problems(self, y0: Tensor) -> list[str]:
        """Another lattice length is refused unless :attr:`allow_other_size` is set."""
        k = len(self.state_shape)
        s = tuple(y0.shape[y0.ndim - k:]) if y0.ndim >= k else ()
        if s == self.state_shape:
            return []
        if s and self._same_but_length(s):
            n = s[self.lattice_axis] // self.blocks
            if n < self.window:
                return [self._too_short(n)]
            if self.allow_other_size:
                return []
            return [
                f"lattice size: y0 has {n} sites along axis {self.lattice_axis} (shape {tuple(y0.shape)}), "
                f"trained on {self.sites}. The weights are shared by every site and run on any length, "
                "but the learned rule belongs to one lattice spacing; set allow_other_size=True "
                "(constructor or attribute) to use it anyway"
            ]
        return [f"state shape: y0 has shape {tuple(y0.shape)}, which does not end in the trained state shape "
                f"{self.state_shape} (or another length along lattice axis {self.lattice_axis})"]

    def _trained_shape(self) -> str:
        ends = "periodic" if self.periodic else "fixed ends"
        return (f"state shape {self.state_shape} ({self.sites} sites along axis {self.lattice_axis}, "
                f"{self.state_channels} channel(s), {ends})")


class _PerSiteMLP:
    """The per-site network is one MLP, ``self.net``: its reference, elementwise and folded
    forms (shared by :class:`LocalNeurVec` and :class:`LocalHypersolver`)."""

    def network(self, u: Tensor) -> Tensor:
        return self.net(u)

    def fusable(self) -> bool:
        return _pointwise_mlp_ok(self.net)

    def pointwise_network(self, xs: list[Tensor]) -> list[Tensor]:
        return _pointwise_mlp(self.net, xs)

    def first_layer(self) -> nn.Linear:
        return self.net[0]

    def after_first_layer(self, z: Tensor) -> Tensor:
        return _inplace_mlp(list(self.net)[1:], z)


@register_corrector
class LocalNeurVec(_PerSiteMLP, LocalCorrector):
    """NeurVec, local: ``C_i = s ⊙ N(y_{i-r..i+r})`` at every site ``i``, one hidden layer
    ``C*window -> width -> C`` shared by all sites, no h-scaling.

    Parameters: ``C window width + width + width C + C`` (+7 for the rational activation),
    whatever the number of sites.  The defaults (window 5, width 8; one hidden layer for each
    family) keep the per-site work near that of a few evaluations of a stencil right-hand
    side: the measured costs are in benchmarks/results/speed_correctors.md.

    Args:
        state_shape, method, step_size: as every corrector.
        periodic, lattice_axis, blocks, window, allow_other_size, mixed_precision: see
            :class:`LocalCorrector`.
        width: hidden units.
        activation: default ``"rational"`` (NeurVec's learnable rational activation).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, width: int = 8, activation: str = "rational",
                 allow_other_size: bool = False, mixed_precision: bool = False, dtype: Any = torch.float32):
        width = check_positive_int("width", width)
        super().__init__(state_shape, method=method, step_size=step_size, features=("y",), periodic=periodic,
                         lattice_axis=lattice_axis, blocks=blocks, window=window, allow_other_size=allow_other_size,
                         mixed_precision=mixed_precision, dtype=dtype, hparams={"width": width, "activation": activation})
        self.net = mlp([self.site_features, width, self.state_channels], activation, dtype=self.dtype)


@register_corrector
class LocalHypersolver(_PerSiteMLP, LocalCorrector):
    """Hypersolver, local: ``C_i = h^{p+1} s ⊙ g([y, Phi, h] on sites i-r..i+r)``, ``g`` an MLP
    ``(2C+1) window -> hidden... -> C`` shared by all sites.

    Args:
        state_shape, method, step_size: as every corrector.
        periodic, lattice_axis, blocks, window, allow_other_size, mixed_precision: see
            :class:`LocalCorrector`.
        hidden: hidden layer widths of ``g``.
        activation: hidden activation (default ``"tanh"``, as the dense Hypersolver).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, hidden: tuple[int, ...] | list[int] = (8,),
                 activation: str = "tanh", allow_other_size: bool = False, mixed_precision: bool = False,
                 dtype: Any = torch.float32):
        hidden = [check_positive_int("hidden width", w) for w in hidden]
        if not hidden:
            raise ValueError("hidden needs at least one layer width")
        super().__init__(state_shape, method=method, step_size=step_size, features=("y", "phi", "h"),
                         periodic=periodic, lattice_axis=lattice_axis, blocks=blocks, window=window,
                         allow_other_size=allow_other_size, mixed_precision=mixed_precision, dtype=dtype,
                         hparams={"hidden": hidden, "activation": activation})
        self.output_order = self.order + 1
        self.net = mlp([self.site_features, *hidden, self.state_channels], activation, dtype=self.dtype)


@register_corrector
class LocalAttSolver(LocalCorrector):
    """AttSolver, local: the dense AttSolver's network (body, bounded gate, combine,
    zero-initialised head) applied at every site to the window of ``[y, dy]`` there; the
    gate acts per site (``a_i in (0, 1)^width`` from the site's body features).

    Parameters: body ``F width + width (+ (depth-1)(width^2 + width))`` with
    ``F = len(features) C window``, the gate's, and the head ``width C + C`` — none depends on
    the number of sites.

    Args:
        state_shape, method, step_size: as every corrector.
        periodic, lattice_axis, blocks, window, allow_other_size, mixed_precision: see
            :class:`LocalCorrector`.
        features, width, depth, activation, attention, attention_input, combine: as
            :class:`~attsolver.correctors.AttSolver` (``attention_input`` is ``"body"`` or ``"features"``).
        lipschitz_cap, reduction, attention_kwargs, residual: as :class:`~attsolver.correctors.AttSolver`.
        dtype: parameter dtype.
    """

    # the same network as the dense AttSolver, on one site's window instead of the whole state
    network = AttSolver.network
    _residual_network = AttSolver._residual_network

    def __init__(self, state_shape: Any, *, method: str, step_size: float, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, features: tuple[str, ...] | list[str] = ("y", "dy"),
                 width: int = 8, depth: int = 1, activation: str = "tanh", attention: str = "se",
                 attention_input: str = "body", combine: str = "add", lipschitz_cap: float | None = 1.0,
                 reduction: int = 4, attention_kwargs: dict[str, Any] | None = None, residual: bool | None = None,
                 allow_other_size: bool = False, mixed_precision: bool = False, dtype: Any = torch.float32):
        width = check_positive_int("width", width)
        depth = check_positive_int("depth", depth)
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; choose one of: {', '.join(sorted(COMBINES))}")
        if attention_input not in ("body", "features"):
            raise ValueError(f"attention_input must be 'body' or 'features', got {attention_input!r}")
        stateful = attention != "none" and bool(getattr(get_attention(attention), "stateful", False))
        if residual is None:
            residual = stateful
        elif stateful and not residual:
            raise ValueError(f"attention {attention!r} carries a state; use it with residual=True (or None)")
        features = list(features)
        super().__init__(
            state_shape, method=method, step_size=step_size, features=features, periodic=periodic,
            lattice_axis=lattice_axis, blocks=blocks, window=window, allow_other_size=allow_other_size,
            mixed_precision=mixed_precision, dtype=dtype,
            hparams={"features": features, "width": width, "depth": depth, "activation": activation,
                     "attention": attention, "attention_input": attention_input, "combine": combine,
                     "lipschitz_cap": lipschitz_cap, "reduction": reduction,
                     "attention_kwargs": dict(attention_kwargs or {}), "residual": residual},
        )
        self.combine = combine
        self.attention_input = attention_input
        self.body = mlp([self.site_features] + [width] * depth, activation, dtype=self.dtype, zero_last=False,
                        last_activation=True)
        self._src = None if attention_input == "body" else slice(0, self.site_features)
        if attention == "none":
            self.gate = None
        else:
            gate_in = width if self._src is None else self.site_features
            self.gate = make_attention(attention, width, in_channels=gate_in, reduction=reduction,
                                       lipschitz_cap=lipschitz_cap, dtype=self.dtype, **dict(attention_kwargs or {}))
        self.residual = residual
        self._stateful = stateful
        self.head = nn.Linear(width, self.state_channels, dtype=self.dtype)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self._combine = COMBINES[combine]

    def fusable(self) -> bool:
        if self.residual or self.combine not in ("add", "mul"):
            return False
        if self.gate is not None and not (isinstance(self.gate, SEGate) and _pointwise_act_ok(self.gate.act)):
            return False
        return _pointwise_mlp_ok(self.body) and _pointwise_mlp_ok(self.head)

    def foldable(self) -> bool:
        return self._src is None and self.fusable()  # a gate on the windows reads them normalised

    def first_layer(self) -> nn.Linear:
        return self.body[0]

    def after_first_layer(self, z: Tensor) -> Tensor:
        z = _inplace_mlp(list(self.body)[1:], z)
        if self.gate is not None:
            g = self.gate
            a = torch.sigmoid_(g.fc2(_inplace_mlp([g.act], g.fc1(z))))
            z = z.add_(a) if self.combine == "add" else z.mul_(a)
        return self.head(z)

    def pointwise_network(self, xs: list[Tensor]) -> list[Tensor]:
        z = _pointwise_mlp(self.body, xs)
        if self.gate is not None:
            g = self.gate  # SE on a [M, width] input: no pooling, a = sigmoid(fc2(act(fc1(src))))
            src = z if self._src is None else xs
            a = _pointwise_linear(g.fc2, _pointwise_act(g.act, _pointwise_linear(g.fc1, src)))
            a = [torch.sigmoid(x) for x in a]
            z = [zi + ai for zi, ai in zip(z, a)] if self.combine == "add" else [zi * ai for zi, ai in zip(z, a)]
        return _pointwise_linear(self.head, z)


# ---------------------------------------------------------------------- unrolled networks

#: elementwise activations the unrolled form evaluates (tanh through expm1, the others as is)
_ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.GELU, nn.SiLU, nn.Softplus, nn.Sigmoid, nn.Identity, Rational)


def _pointwise_act_ok(m: nn.Module) -> bool:
    return type(m) in _ELEMENTWISE


def _pointwise_mlp_ok(net: nn.Module) -> bool:
    layers = [net] if isinstance(net, nn.Linear) else list(net)
    return all(isinstance(m, nn.Linear) or _pointwise_act_ok(m) for m in layers)


def _pointwise_linear(layer: nn.Linear, xs: list[Tensor]) -> list[Tensor]:
    """``layer`` on a list of its inputs (each a tensor of one shape): sums of products with the
    weights' entries, one per output."""
    w, b = layer.weight, layer.bias
    const = [i for i, x in enumerate(xs) if x.ndim == 0]  # inputs the same everywhere: into the bias
    var = [i for i, x in enumerate(xs) if x.ndim]
    out = []
    for j in range(w.shape[0]):
        acc = None
        for i in var:
            acc = xs[i] * w[j, i] if acc is None else acc + xs[i] * w[j, i]
        bias = None if b is None else b[j]
        for i in const:
            bias = xs[i] * w[j, i] if bias is None else bias + xs[i] * w[j, i]
        out.append(acc if bias is None else (bias if acc is None else acc + bias))
    return out


def _tanh(x: Tensor) -> Tensor:
    """tanh through expm1, within a few ulp of ``torch.tanh``: inductor's CPU code for tanh
    is several times slower than its exp (tanh(20) is 1 to double precision)."""
    e = torch.expm1(2.0 * x.clamp(-20.0, 20.0))
    return e / (e + 2.0)


def _pointwise_act(m: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    if isinstance(m, nn.Tanh):
        return [_tanh(x) for x in xs]
    return [m(x) for x in xs]


def _pointwise_mlp(net: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    for m in ([net] if isinstance(net, nn.Linear) else net):
        xs = _pointwise_linear(m, xs) if isinstance(m, nn.Linear) else _pointwise_act(m, xs)
    return xs


def _inplace_mlp(layers: list[nn.Module], x: Tensor) -> Tensor:
    """Linear layers and elementwise activations, the activations in place (inference only)."""
    for m in layers:
        if isinstance(m, nn.Linear):
            x = m(x)
        elif isinstance(m, nn.Tanh):
            x = x.tanh_()
        elif isinstance(m, nn.ReLU):
            x = x.relu_()
        elif isinstance(m, nn.Sigmoid):
            x = x.sigmoid_()
        elif isinstance(m, Rational):  # P(x) / Q(x) by Horner, two buffers instead of ten
            a, b = m.numerator.tolist(), m.denominator.tolist()
            p = x * a[3]
            p.add_(a[2]).mul_(x).add_(a[1]).mul_(x).add_(a[0])
            q = (x * b[2]).add_(b[1]).mul_(x).add_(b[0])
            x = p.div_(q)
        else:
            x = m(x)
    return x
