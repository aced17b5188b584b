"""Fast evaluation forms, chosen by the exact (layout, head) types of a corrector.

A corrector's reference evaluation is its layout's ``forward`` (with autograd, as training
uses it).  On a lattice two more forms give the same numbers up to rounding:

* *folded* (eager, no gradient wanted): the normalisation ``(u - mean) / std`` folded into the
  first linear map (``W' = W / std``, ``b' = b - W' mean``) and the activations applied in
  place, which saves several ``[B n, width]`` passes;
* *elementwise* (under ``torch.compile``): every layer unrolled into sums of products with
  scalar weights on shifted copies of the lattice, which inductor fuses with the classical
  stages of the step into a few loops (no layout copies, no GEMM calls).

A form is picked only for a head type it was written for (``type(head) is NeurVecHead``, not a
subclass), and only when the corrector's ``network`` is the head's: a user's own head, or a
corrector class that overrides ``network``, is never run as someone else's network.  Each form
also checks, per call, that the modules are still ones it can evaluate (``fusable``).
Design notes and measurements: docs/local_correctors.md.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.activations import Rational
from ..nn.se import SEGate
from .heads import AttSolverHead, Head, HypersolverHead, NeurVecHead
from .layouts import LatticeLayout, Layout

__all__ = ["LatticeForms", "fast_forms", "tanh_expm1"]


# ---------------------------------------------------------------------- elementwise building blocks

#: elementwise activations the unrolled form evaluates (tanh through expm1, the others as is)
_ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.GELU, nn.SiLU, nn.Softplus, nn.Sigmoid, nn.Identity, Rational)


def _act_ok(m: nn.Module) -> bool:
    return type(m) in _ELEMENTWISE


def _mlp_ok(net: nn.Module) -> bool:
    layers = [net] if isinstance(net, nn.Linear) else list(net)
    return all(isinstance(m, nn.Linear) or _act_ok(m) for m in layers)


def _unrolled_linear(layer: nn.Linear, xs: list[Tensor]) -> list[Tensor]:
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


def tanh_expm1(x: Tensor) -> Tensor:
    """tanh through expm1, within a few ulp of ``torch.tanh``: inductor's CPU code for tanh
    is several times slower than its exp (tanh(20) is 1 to double precision)."""
    e = torch.expm1(2.0 * x.clamp(-20.0, 20.0))
    return e / (e + 2.0)


def _unrolled_act(m: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    if isinstance(m, nn.Tanh):
        return [tanh_expm1(x) for x in xs]
    return [m(x) for x in xs]


def _unrolled_mlp(net: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    for m in ([net] if isinstance(net, nn.Linear) else net):
        xs = _unrolled_linear(m, xs) if isinstance(m, nn.Linear) else _unrolled_act(m, xs)
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


# ---------------------------------------------------------------------- what a form needs of a head


class _MLPParts:
    """The per-site network is one MLP, ``m.net`` (NeurVec, Hypersolver)."""

    @staticmethod
    def fusable(m: nn.Module) -> bool:
        return _mlp_ok(m.net)

    foldable = fusable

    @staticmethod
    def first_layer(m: nn.Module) -> nn.Linear:
        return m.net[0]

    @staticmethod
    def after_first_layer(m: nn.Module, z: Tensor) -> Tensor:
        return _inplace_mlp(list(m.net)[1:], z)

    @staticmethod
    def unrolled(m: nn.Module, xs: list[Tensor]) -> list[Tensor]:
        return _unrolled_mlp(m.net, xs)


class _AttSolverParts:
    """Body, an SE gate (or none) on the body's output, add or mul, the output map."""

    @staticmethod
    def fusable(m: nn.Module) -> bool:
        if m.residual or m.combine not in ("add", "mul"):
            return False
        if m.gate is not None and not (isinstance(m.gate, SEGate) and _act_ok(m.gate.act)):
            return False
        return _mlp_ok(m.body) and _mlp_ok(m.head)

    @staticmethod
    def foldable(m: nn.Module) -> bool:
        return m._src is None and _AttSolverParts.fusable(m)  # a gate on the windows reads them normalised

    @staticmethod
    def first_layer(m: nn.Module) -> nn.Linear:
        return m.body[0]

    @staticmethod
    def after_first_layer(m: nn.Module, z: Tensor) -> Tensor:
        z = _inplace_mlp(list(m.body)[1:], z)
        if m.gate is not None:
            g = m.gate
            a = torch.sigmoid_(g.fc2(_inplace_mlp([g.act], g.fc1(z))))
            z = z.add_(a) if m.combine == "add" else z.mul_(a)
        return m.head(z)

    @staticmethod
    def unrolled(m: nn.Module, xs: list[Tensor]) -> list[Tensor]:
        z = _unrolled_mlp(m.body, xs)
        if m.gate is not None:
            g = m.gate  # SE on a [M, width] input: no pooling, a = sigmoid(fc2(act(fc1(src))))
            src = z if m._src is None else xs
            a = _unrolled_linear(g.fc2, _unrolled_act(g.act, _unrolled_linear(g.fc1, src)))
            a = [torch.sigmoid(x) for x in a]
            z = [zi + ai for zi, ai in zip(z, a)] if m.combine == "add" else [zi * ai for zi, ai in zip(z, a)]
        return _unrolled_linear(m.head, z)


# ---------------------------------------------------------------------- the lattice's forms


class LatticeForms:
    """The folded and elementwise forms of a lattice corrector whose head's parts are ``parts``."""

    def __init__(self, parts):
        self.parts = parts

    def choose(self, m: nn.Module, y: Tensor, dy: Tensor):
        """The form for this call (``None``: the layout's reference form)."""
        if torch.compiler.is_compiling():
            return self.elementwise if self.parts.fusable(m) else None
        if self.parts.foldable(m) and not (torch.is_grad_enabled() and (
                y.requires_grad or dy.requires_grad or any(p.requires_grad for p in m.parameters()))):
            return self.folded
        return None

    def folded_network(self, m: nn.Module, rows: Tensor) -> Tensor:
        """The network on raw (not normalised) windows, without autograd: the normalisation folded
        into the first layer, ``W' = W / std``, ``b' = b - W' mean``."""
        first = self.parts.first_layer(m)
        weight = first.weight
        sources = [t for t in (weight, first.bias, m.in_mean, m.in_std) if t is not None]
        # the folded weights, kept while their sources are the same tensors, unchanged (weak
        # references: a replaced tensor is never mistaken for the old one; _version counts
        # in-place changes such as an optimiser step, load_state_dict or set_normalization)
        cached = m.__dict__.get("_folded")
        if cached is None or len(cached[0]) != len(sources) or any(
                r() is not t or v != t._version for (r, v), t in zip(cached[0], sources)):
            inv = (1.0 / m.in_std).repeat(m.layout.window)  # input k * C_in + c is channel c
            w = weight * inv
            bias = -(w @ m.in_mean.repeat(m.layout.window))
            if first.bias is not None:
                bias = bias + first.bias
            cached = ([(weakref.ref(t), t._version) for t in sources], w.t(), bias)
            m.__dict__["_folded"] = cached
        return self.parts.after_first_layer(m, torch.addmm(cached[2], rows, cached[1]))

    def folded(self, m: nn.Module, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The GEMM form without autograd, normalisation folded, activations in place."""
        lattice = m.layout
        state, b, n, rows = lattice.windows(m, y, dy, h, normalise=False)
        v = self.folded_network(m, rows).mul_(m.channel_scale(h))  # [B n, C]
        return lattice.finish(v, b, n, state, y.shape, y.dtype)

    def elementwise(self, m: nn.Module, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The correction as elementwise arithmetic on the lattice (see the module docstring).

        The same numbers as the reference up to rounding (the sums run in another order; tanh
        is evaluated through ``expm1``): the window's inputs are shifted copies of the
        ``[batch, sites]`` channels.  Eager this is slower than the GEMM form; compiled it is
        the fastest."""
        lattice = m.layout
        state, n, yl, dyl = lattice.lattice_inputs(m, y, dy)
        b = yl.shape[0]
        r = lattice.window // 2
        # Every input channel normalised and padded, [B, n + 2r], then read flat: input k of the
        # site at flat position p (= row * (n + 2r) + i) is channel[p + k].  One vector loop
        # runs over all B (n + 2r) - 2r positions; the 2r per row that straddle two rows are
        # computed and dropped (no per-row tails, no masked loads for the walls).
        length = b * (n + 2 * r) - 2 * r
        channels = self._padded_channels(m, yl, dyl, h, b, n, r)
        # input k * C_in + c: channel c at neighbour k (the order of the reference's windows)
        xs = [ch if ch.ndim == 0 else ch[k:k + length] for k in range(lattice.window) for ch in channels]
        scale = m.channel_scale(h)
        outs = []
        for c, o in enumerate(self.parts.unrolled(m, xs)):
            o = o * scale[c]
            if r:
                o = F.pad(o, (0, 2 * r)).reshape(b, n + 2 * r)[:, :n]
            outs.append(o.reshape(b, n))
        v = torch.stack(outs, 1)  # [B, C, n]
        return lattice.from_lattice(v, state).reshape(y.shape).to(y.dtype)

    @staticmethod
    def _padded_channels(m: nn.Module, yl: Tensor, dyl: Tensor, h: float, b: int, n: int, r: int) -> list[Tensor]:
        """Every input channel normalised, padded by ``r`` sites and flattened, ``[B (n + 2r)]``
        (a channel the same at every position, ``h`` on a ring, as a 0-d tensor)."""
        lattice = m.layout
        mean, inv_std = m.in_mean, 1.0 / m.in_std
        channels: list[Tensor] = []
        i = 0
        for f, part in zip(lattice.features, lattice.feature_parts(yl, dyl, h, (1, 1, 1), None, type(m).__name__)):
            for c in range(part.shape[1]):
                x = (part[:, c] - mean[i]) * inv_std[i]
                i += 1
                if f == "h" and (lattice.periodic or not r):  # the same at every position
                    channels.append(x.reshape(()))
                    continue
                x = x.expand(b, n)
                if r:
                    if lattice.periodic:
                        x = torch.cat((x[:, n - r:], x, x[:, :r]), 1)
                    else:  # beyond a fixed end the raw value 0, normalised
                        wall = ((0.0 - mean[i - 1]) * inv_std[i - 1]).expand(b, r)
                        x = torch.cat((wall, x, wall), 1)
                channels.append(x.reshape(-1))
        return channels


#: the heads whose networks the lattice's fast forms know, by exact type
_LATTICE_PARTS = {NeurVecHead: _MLPParts, HypersolverHead: _MLPParts, AttSolverHead: _AttSolverParts}


def fast_forms(layout: Layout, head: Head | None) -> LatticeForms | None:
    """The fast forms for an exact (layout, head) type pair, or ``None`` (the reference only)."""
    if type(layout) is LatticeLayout:
        parts = _LATTICE_PARTS.get(type(head))
        if parts is not None:
            return LatticeForms(parts)
    return None
