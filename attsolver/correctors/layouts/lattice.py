"""The lattice layout: one network shared by every site of a ring or a chain.

Lorenz-96 is a ring, the spring chain a chain: the truncation error of a step at one site
depends on that site's neighbourhood, by the same rule everywhere.  On a lattice layout

* the state's components are ``C`` channels on ``n`` sites along one *lattice axis* (the user
  names the axis and whether it is periodic; the built-in systems declare theirs as
  :attr:`attsolver.systems.System.lattice`);
* at every site the network sees a *window* of ``window`` neighbouring sites (all channels of
  every step feature there) and returns that site's ``C`` corrections: a 1-D convolution over
  the lattice whose kernel is a small network.  The lattice is wrapped around (periodic) or
  padded with zeros beyond its ends (fixed ends, e.g. the walls of the spring chain), before
  the per-channel normalisation, so a wall reads as the physical value 0;
* the network's size depends on ``C``, the window and the widths, never on ``n``, and the
  normalisation is per channel, so a trained model runs on a lattice of any length; ``solve``
  refuses another length unless the usage flag ``allow_other_size`` is set, since a learned
  rule belongs to one lattice spacing.

The reference evaluation here is the GEMM form (one row of windows per site, with autograd);
the folded and elementwise forms are in :mod:`attsolver.correctors.evaluators`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validate import is_integer
from .base import Layout, positive_int

__all__ = ["LatticeLayout"]


class LatticeLayout(Layout):
    """States on a 1-D lattice, a window of sites per evaluation of the network.

    Args:
        state_shape: shape of one state; its axis ``lattice_axis`` is the lattice.
        features: step features; each state feature gives ``C`` input channels, ``h`` one.
        periodic: ``True`` for a ring (the window wraps around), ``False`` for a chain with
            fixed ends (zero beyond them).  No default: the user says which.
        lattice_axis: the state axis along which the sites lie (negative counts from the end).
        blocks: along the lattice axis the components form ``blocks`` consecutive blocks of
            equal length, one channel each (spring chain: ``(p_1..p_n, q_1..q_n)``, 2 blocks).
            The other state axes are channels too.
        window: odd number of neighbouring sites the network sees at each site (centred).
        allow_other_size: let ``solve`` use the model on a lattice of another length.  A usage
            flag, not saved.
        mixed_precision: accept states of another floating dtype (typically a float32 model in
            a float64 solve): the correction is computed in the model's dtype and cast back to
            the state's.  A usage flag, not saved.

    Attributes:
        sites: ``n``, the number of sites of the training lattice.
        state_channels: ``C``, channels per site of one state feature.
        in_channels: input channels (``C`` per state feature, 1 for ``h``).
        site_features: inputs of the per-site network, ``in_channels * window`` (= ``n_in``).
    """

    name = "lattice"
    suffix = "-local"
    params = ("periodic", "lattice_axis", "blocks", "window", "allow_other_size", "mixed_precision")
    feature_layout = "per site: a window of neighbouring sites x input channels; per-channel normalisation"
    pooled_over = "component"

    def __init__(self, state_shape: Any, features: Any = ("y",), *, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, allow_other_size: bool = False, mixed_precision: bool = False):
        if not isinstance(periodic, bool):
            raise TypeError(f"periodic must be True (a ring) or False (fixed ends), got {periodic!r}")
        if not is_integer(lattice_axis):
            raise TypeError(f"lattice_axis must be an int (a state axis), got {lattice_axis!r}")
        blocks = positive_int("blocks", blocks)
        window = positive_int("window", window)
        if window % 2 == 0:
            raise ValueError(f"window must be odd (a site and as many neighbours on each side), got {window}")
        super().__init__(state_shape, features)
        nd = len(self.state_shape)
        if not -nd <= lattice_axis < nd:
            raise ValueError(
                f"lattice_axis={lattice_axis} does not exist: states of shape {self.state_shape} have axes "
                f"{-nd}..{nd - 1}; name the axis along which the sites lie"
            )
        self.axis_given = int(lattice_axis)  # as the config records it
        self.lattice_axis = int(lattice_axis) % nd
        self.periodic, self.blocks, self.window = periodic, blocks, window
        self.allow_other_size = bool(allow_other_size)
        self.mixed_precision = bool(mixed_precision)
        length = self.state_shape[self.lattice_axis]
        if length % blocks:
            raise ValueError(
                f"the lattice axis {self.lattice_axis} has {length} components, not a multiple of blocks={blocks}"
            )
        self.sites = length // blocks
        if self.sites < window:
            raise ValueError(self.too_short(self.sites))
        self.state_channels = self.state_dim // self.sites
        self.in_channels = sum(1 if f == "h" else self.state_channels for f in self.features)
        self.site_features = self.in_channels * window
        self.n_in, self.n_out = self.site_features, self.state_channels

    def gate_sources(self) -> dict[str, slice]:
        return {"features": slice(0, self.site_features)}  # a site's window; single features interleave

    def too_short(self, sites: int) -> str:
        return (f"the lattice axis {self.lattice_axis} has {sites} site(s), too short for the window of "
                f"{self.window}; choose window <= {sites} (odd)")

    # ------------------------------------------------------------------ geometry

    def to_lattice(self, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        """``[B, *shape]`` -> ``[B, C, n]``: lattice axis last, blocks and other axes as channels."""
        if self.lattice_axis != len(shape) - 1:
            x = x.movedim(1 + self.lattice_axis, -1)
        return x.reshape(x.shape[0], -1, shape[self.lattice_axis] // self.blocks)

    def from_lattice(self, v: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`to_lattice`."""
        a = self.lattice_axis
        if a == len(shape) - 1:
            return v.reshape(v.shape[0], *shape)
        moved = shape[:a] + shape[a + 1:] + (shape[a],)
        return v.reshape(v.shape[0], *moved).movedim(-1, 1 + a)

    def component_channels(self) -> Tensor:
        """The channel of every flat state component, ``[D]`` (long)."""
        idx = self.to_lattice(torch.arange(self.state_dim).reshape(1, *self.state_shape), self.state_shape)[0]
        chan = torch.empty(self.state_dim, dtype=torch.long)
        chan[idx.reshape(-1)] = torch.arange(idx.shape[0]).repeat_interleave(idx.shape[1])
        return chan

    def same_but_length(self, s: tuple[int, ...]) -> bool:
        a = self.lattice_axis
        return (len(s) == len(self.state_shape) and s[:a] + s[a + 1:] == self.state_shape[:a] + self.state_shape[a + 1:]
                and s[a] % self.blocks == 0 and s[a] >= self.blocks)

    def state_of(self, shape: tuple[int, ...], who: str) -> tuple[int, ...]:
        """The state shape at the end of ``shape`` (flat states, as ``fit`` passes them, included)."""
        k = len(self.state_shape)
        if len(shape) >= k and self.same_but_length(tuple(shape[len(shape) - k:])):
            return tuple(shape[len(shape) - k:])
        if k > 1 and shape and shape[-1] == self.state_dim:
            return self.state_shape
        raise ValueError(
            f"{who} expects states ending in shape {self.state_shape} (or another length "
            f"along lattice axis {self.lattice_axis}), got {tuple(shape)}"
        )

    # ------------------------------------------------------------------ normalisation

    def stat_sizes(self) -> tuple[int, int]:
        return self.in_channels, self.state_channels

    def install(self, m: nn.Module, dtype: torch.dtype) -> None:
        super().install(m, dtype)
        # the channel of every flat state component (integer buffer: .to(dtype) leaves it alone)
        m.register_buffer("component_channel", self.component_channels(), persistent=False)

    def pool(self, m: nn.Module, stats: list[Tensor]) -> list[Tensor]:
        """Per-component statistics pooled over the sites exactly: a channel's mean is the mean
        of its components' means, its variance the mean of their second moments minus the
        squared mean, its output scale the root-mean-square of theirs (equal sample counts)."""
        mean_in, std_in, scale_out = stats
        if (mean_in.numel(), std_in.numel(), scale_out.numel()) != (self.feature_dim, self.feature_dim,
                                                                     self.state_dim):
            return stats
        chan = m.component_channel.cpu()
        group, offset = [], 0
        for f in self.features:  # the feature vector's layout -> input channel of each entry
            if f == "h":
                group.append(torch.tensor([offset]))
                offset += 1
            else:
                group.append(offset + chan)
                offset += self.state_channels
        group = torch.cat(group)
        count = torch.bincount(group, minlength=offset).double()
        mean = torch.bincount(group, mean_in, minlength=offset) / count
        second = torch.bincount(group, std_in.square() + mean_in.square(), minlength=offset) / count
        std = torch.sqrt(torch.clamp(second - mean.square(), min=0.0))
        # a channel constant over the data (e.g. h) is centred but not scaled
        std = torch.where(std > 1e-12 * torch.clamp(mean.abs(), min=1.0), std, torch.ones_like(std))
        scale = (torch.bincount(chan, scale_out.square(), minlength=self.state_channels)
                 / torch.bincount(chan, minlength=self.state_channels).double()).sqrt()
        return [mean, std, scale]

    def spread_scale(self, m: nn.Module, scale: Tensor) -> Tensor:
        return scale[m.component_channel]

    # ------------------------------------------------------------------ evaluation

    def lattice_inputs(self, m: nn.Module, y: Tensor, dy: Tensor) -> tuple[tuple[int, ...], int, Tensor, Tensor]:
        """``(state shape, sites, y, dy)``: both as ``[B, C, sites]`` lattices, in the network's
        dtype under mixed precision; a lattice shorter than the window is refused."""
        state = self.state_of(tuple(y.shape), type(m).__name__)
        n = state[self.lattice_axis] // self.blocks
        if n < self.window:
            raise ValueError(self.too_short(n))
        yl = self.to_lattice(y.reshape(-1, *state), state)
        dyl = self.to_lattice(dy.reshape(-1, *state), state)
        if yl.dtype != m.out_scale.dtype and self.mixed_precision:
            yl, dyl = yl.to(m.out_scale.dtype), dyl.to(m.out_scale.dtype)
        return state, n, yl, dyl

    def windows(self, m: nn.Module, y: Tensor, dy: Tensor, h: float, *,
                normalise: bool = True) -> tuple[tuple[int, ...], int, int, Tensor]:
        """``(state shape, batch, sites, windows)``: one row ``[site_features]`` per site, the
        sites ``i - r .. i + r`` of site ``i`` with their input channels together, normalised
        unless ``normalise`` is False."""
        state, n, yl, dyl = self.lattice_inputs(m, y, dy)
        b = yl.shape[0]
        parts = self.feature_parts(yl, dyl, h, (b, 1, n), None, type(m).__name__)
        u = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, C_in, n]
        r = self.window // 2
        if r:
            # pad the raw values: a fixed end reads as 0, the wall's value
            u = F.pad(u, (r, r), mode="circular") if self.periodic else F.pad(u, (r, r))
        if normalise:
            u = (u - m.in_mean[:, None]) / m.in_std[:, None]
        u = u.transpose(1, 2).contiguous()  # [B, n+2r, C_in]
        # site i's window (sites i-r..i+r, all channels of each) is one contiguous run of memory:
        # a strided view, [B, n, window * C_in], copied once into the rows of the network's input
        c_in = u.shape[2]
        rows = u.as_strided((b, n, self.site_features), (u.stride(0), c_in, 1)).reshape(b * n, self.site_features)
        return state, b, n, rows

    def finish(self, v: Tensor, b: int, n: int, state: tuple[int, ...], shape: torch.Size,
               dtype: torch.dtype) -> Tensor:
        """The network's rows ``[B n, C]`` as a correction of the states' ``shape`` and ``dtype``."""
        v = v.reshape(b, n, self.state_channels).transpose(1, 2)
        return self.from_lattice(v, state).reshape(shape).to(dtype)

    def forward(self, m: nn.Module, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The GEMM form: one row of windows per site, with autograd."""
        state, b, n, rows = self.windows(m, y, dy, h)
        v = m.network(rows) * m.channel_scale(h)
        return self.finish(v, b, n, state, y.shape, y.dtype)

    # ------------------------------------------------------------------ record and checks

    def record(self) -> dict[str, Any]:
        return {"feature_layout": self.feature_layout, "lattice_axis": self.lattice_axis, "periodic": self.periodic,
                "blocks": self.blocks, "sites": self.sites, "window": self.window}

    def checked_state(self, y0: Tensor, dtype: torch.dtype) -> Tensor:
        """With :attr:`mixed_precision` set, a state of another floating dtype is accepted."""
        if self.mixed_precision and y0.dtype != dtype and y0.dtype.is_floating_point:
            return y0.to(dtype)
        return y0

    def shape_problems(self, y0: Tensor) -> list[str]:
        """Another lattice length is refused unless :attr:`allow_other_size` is set."""
        k = len(self.state_shape)
        s = tuple(y0.shape[y0.ndim - k:]) if y0.ndim >= k else ()
        if s == self.state_shape:
            return []
        if s and self.same_but_length(s):
            n = s[self.lattice_axis] // self.blocks
            if n < self.window:
                return [self.too_short(n)]
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

    def trained_shape(self) -> str:
        ends = "periodic" if self.periodic else "fixed ends"
        return (f"state shape {self.state_shape} ({self.sites} sites along axis {self.lattice_axis}, "
                f"{self.state_channels} channel(s), {ends})")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.saved()}

    def saved(self) -> dict[str, Any]:
        """The constructor arguments a checkpoint keeps (the usage flags are not among them)."""
        return {"periodic": self.periodic, "lattice_axis": self.axis_given, "blocks": self.blocks,
                "window": self.window}

    @classmethod
    def from_system(cls, system: Any, kwargs: dict[str, Any], who: str) -> tuple[tuple[int, ...], dict[str, Any]]:
        """State shape, lattice axis, periodicity and blocks from the system's declaration
        (``system.lattice``); ``periodic=False`` may pad a ring, ``periodic=True`` on a chain with
        fixed ends is refused."""
        lattice = getattr(system, "lattice", None)
        name = getattr(system, "name", type(system).__name__)
        if lattice is None:
            raise ValueError(
                f"{name} declares no lattice (its state components are not sites of a ring or chain); "
                f"use the dense corrector, or build {who}(state_shape, lattice_axis=..., periodic=...) "
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
        return tuple(system.state_shape), kw
