"""Learned interpolation (Kochkov et al. 2021) for the finite-volume advection of 2-D vorticity.

The advection term of :class:`attsolver.systems.NavierStokes2DFD` built with
``interpolation=model`` is the flux form

    -div(u omega) ~ -(F[i+1/2, j] - F[i-1/2, j]) / dx - (G[i, j+1/2] - G[i, j-1/2]) / dx,

``F = u_face * omega_face`` on the x-faces and ``G = v_face * omega_face`` on the y-faces.
The face velocities come from the streamfunction interpolated to the cell corners, so their
discrete divergence is exactly zero, and the sum of the fluxes' differences telescopes: the
domain mean of ``omega`` is conserved exactly by the advection, whatever the weights.

The vorticity at a face is a weighted sum over a stencil of cells around it (``width`` cells
across the face, ``transverse`` along it).  A small periodic CNN
(:class:`LearnedInterpolation`) chooses the weights per face and per state, constrained to be
exact for every polynomial of degree ``<= degree`` (``degree = 0``: the weights sum to one;
``degree = 1``: also exact for linear fields).  The constraint is met by construction, as in
Kochkov et al.: ``w = w0 + N z`` with ``w0`` the weights of a known consistent base scheme
(``"centred2"``: the mean of the two neighbours; ``"centred4"``: the 4-point Lagrange
midpoint rule) and ``N`` an orthonormal basis of the null space of the constraint matrix; the
network outputs ``z``.  Its last layer starts at zero, so an untrained model *is* the base
scheme, exactly.

``weights_per="step"`` computes the weights once per time step, from the step's initial
vorticity and face velocities, and reuses them in every Runge–Kutta stage (the face velocities
and the interpolated vorticity still come from each stage's own state): the CNN runs once per
step instead of once per stage.  The interpolation stays consistent (the constraint is on the
weights, not on the field), and with weights that do not depend on the state (an untrained
model) it is the per-stage scheme exactly.  With state-dependent weights the frozen weights
are a first-order-in-time approximation of the per-stage ones (an ``O(h)`` change in the
weights over a step): a model trained per step has learned that scheme, and it is recorded
with its weights, so loading it into a per-stage model (or the reverse) is refused.  The
stages are tracked by :class:`_StageTracker`, armed by ``solve`` (through
:meth:`NavierStokes2DFD.check_step_size`, which names the method and step); a call outside a
solve computes the weights from its own state.

A model records what it was built for (grid, viscosity, drag, forcing, base scheme, stencil):
the system refuses a model built for another one, and loading a state dict saved from a model
built for another one is refused, naming what it was trained for.

Reference: D. Kochkov et al., "Machine learning-accelerated computational fluid dynamics",
PNAS 118 (2021) e2101784118 (learned interpolation, the affine constraint).
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import Tensor, nn

from .._validate import is_integer
from ..steppers.tableau import TABLEAUS
from ._halo import Halo
from .interpolation_guard import GuardRun, domain_tensor, domain_text

__all__ = ["LearnedInterpolation", "BASE_SCHEMES", "WEIGHTS_PER", "face_velocities", "flux_advection",
           "check_weights"]

#: the known consistent interpolations an untrained model reproduces exactly
BASE_SCHEMES = ("centred2", "centred4")
#: when the CNN chooses the weights: in every Runge–Kutta stage, or once per step
WEIGHTS_PER = ("stage", "step")
_TOL = 1e-9


def stencil(width: int, transverse: int) -> list[tuple[int, int]]:
    """Offsets ``(o, b)`` of the cells of a face's stencil: ``o`` across the face (the face
    of cell ``i`` lies between cells ``i`` and ``i + 1``), ``b`` along it; ``o`` varies fastest."""
    normal = range(-(width // 2 - 1), width // 2 + 1)
    along = range(-(transverse // 2), transverse // 2 + 1)
    return [(o, b) for b in along for o in normal]


def constraint_matrix(width: int, transverse: int, degree: int) -> Tensor:
    """``A [m, S]`` (float64): row ``(p, q)`` holds ``a^p b^q`` at every stencil cell, ``a``
    and ``b`` its position relative to the face in cells; consistency is ``A w = e_0``."""
    cells = stencil(width, transverse)
    powers = [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]
    if transverse == 1:
        powers = [(p, q) for p, q in powers if q == 0]
    rows = [[(o - 0.5) ** p * float(b) ** q for o, b in cells] for p, q in powers]
    return torch.tensor(rows, dtype=torch.float64)


def base_weights(base: str, width: int, transverse: int) -> Tensor:
    """Weights ``[S]`` of the base scheme on the stencil (zero off its own cells)."""
    taps = {"centred2": {0: 0.5, 1: 0.5}, "centred4": {-1: -1 / 16, 0: 9 / 16, 1: 9 / 16, 2: -1 / 16}}[base]
    return torch.tensor([taps.get(o, 0.0) if b == 0 else 0.0 for o, b in stencil(width, transverse)],
                        dtype=torch.float64)


def check_weights(weights: Tensor, width: int, transverse: int, degree: int, what: str = "weights") -> None:
    """Refuse face weights ``[..., S, n, n]`` that are not finite, or not exact to polynomial
    ``degree``."""
    finite = torch.isfinite(weights.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{what} are not finite ({bad} of {finite.numel()} entries NaN or inf): the "
            f"interpolation network's output is not finite on this state; check its parameters "
            f"(torch.isfinite on each) and the state (a field far outside the training data), or "
            f"solve with guard='fallback', which gives such a trajectory the base scheme's weights"
        )
    if weights.numel() == 0:
        return
    a = constraint_matrix(width, transverse, degree).to(dtype=weights.dtype, device=weights.device)
    moments = torch.einsum("ms,...sij->...mij", a, weights.detach())
    target = torch.zeros_like(moments)
    target[..., 0, :, :] = 1.0
    err = float((moments - target).abs().max())
    tol = 1e-3 if weights.dtype in (torch.float16, torch.bfloat16) else 1e-5
    if err > tol * max(1.0, float(weights.detach().abs().max())):
        raise ValueError(
            f"{what} violate the consistency constraint (exact for polynomials of degree <= {degree}: "
            f"the weights sum to one{' and reproduce linear fields' if degree >= 1 else ''}); largest "
            f"moment error {err:.3g}; build the weights as w0 + N z (LearnedInterpolation does)"
        )


def face_velocities(psi: Tensor, dx: float) -> tuple[Tensor, Tensor]:
    """``(u at the x-faces, v at the y-faces)`` from the cell-centred streamfunction: ``psi``
    averaged to the corners and differenced along each face, so the discrete divergence
    ``(u[i] - u[i-1] + v[j] - v[j-1]) / dx`` is zero (to round-off).  Index ``(j, i)`` holds the
    face ``(i + 1/2, j)`` (x) or ``(i, j + 1/2)`` (y).  The corner averages are folded into the
    differences (``u = (psi[i, j+1] + psi[i+1, j+1] - psi[i, j-1] - psi[i+1, j-1]) / (4 dx)``),
    read from one wrapped copy of ``psi``."""
    p = Halo(psi)
    s = 0.25 / dx
    u = ((p(0, 1) + p(1, 1)) - (p(0, -1) + p(1, -1))) * s
    v = ((p(-1, 0) + p(-1, 1)) - (p(1, 0) + p(1, 1))) * s
    return u, v


def _halo_width(cells: list[tuple[int, int]]) -> int:
    return max(max(abs(o), abs(b)) for o, b in cells)


def _wrapped(w: Tensor, halo: Halo | None, width: int) -> Halo:
    """The caller's wrapped copy of ``w`` if it reaches ``width`` cells, else a new one."""
    return halo if halo is not None and halo.p >= width else Halo(w, width)


def _face_values(q: Halo, weights: Tensor | list[float], cells: list[tuple[int, int]], axis: str) -> Tensor:
    """``sum_k weights_k omega_k`` at every x-face (``axis="x"``) or y-face: ``weights`` is
    ``[..., S, n, n]`` or ``S`` numbers (a fixed scheme; zeros skipped), ``q`` the wrapped field."""
    out = None
    for k, (o, b) in enumerate(cells):
        cell = q(o, b) if axis == "x" else q(b, o)
        if isinstance(weights, Tensor):
            wk = weights[..., k, :, :]
            out = cell * wk if out is None else out.addcmul_(cell, wk)
        elif weights[k] != 0.0:
            out = cell * weights[k] if out is None else out.add_(cell, alpha=weights[k])
    return out


def flux_advection(w: Tensor, u: Tensor, v: Tensor, wx: Tensor, wy: Tensor,
                   cells: list[tuple[int, int]], dx: float, halo: Halo | None = None) -> Tensor:
    """``-div(u omega)`` in flux form with face values ``sum_k w_k omega_k`` (``wx``, ``wy``:
    ``[..., S, n, n]`` weights at the x- and y-faces; ``u``, ``v`` from :func:`face_velocities`).
    The stencil's cells are views of one wrapped copy of ``w``: ``halo`` (at least
    :attr:`LearnedInterpolation.halo` cells wide) when the caller has one, else made here."""
    q = _wrapped(w, halo, _halo_width(cells))
    return _divergence(u * _face_values(q, wx, cells, "x"), v * _face_values(q, wy, cells, "y"), dx)


def _divergence(fx: Tensor, fy: Tensor, dx: float) -> Tensor:
    """``-(fx[i+1/2] - fx[i-1/2] + fy[j+1/2] - fy[j-1/2]) / dx`` from the face fluxes (each
    face's neighbour by a roll along its own axis: one copy, where a two-axis roll makes two)."""
    return ((torch.roll(fx, 1, -1) - fx) + (torch.roll(fy, 1, -2) - fy)) * (1.0 / dx)


def _trained_for_text(meta: dict[str, Any]) -> str:
    return (f"n={meta['n']}, nu={meta['nu']:g} (Re=1/nu={1 / meta['nu']:.4g}), drag={meta['drag']:g}, "
            f"forcing_wavenumber={meta['forcing_wavenumber']}, base={meta['base']!r}, "
            f"stencil {meta['width']}x{meta['transverse']}, degree={meta['degree']}"
            + (f", form={meta['form']!r}" if "form" in meta else "")
            + f", weights per {meta.get('weights_per', 'stage')}")


class LearnedInterpolation(nn.Module):
    """A periodic CNN that chooses the vorticity-to-face interpolation weights per face.

    Args:
        n, nu, drag, forcing_wavenumber: the flow it is built (and trained) for; a
            :class:`NavierStokes2DFD` with other values refuses it.
        base: the consistent scheme an untrained model equals (:data:`BASE_SCHEMES`).
        width: cells across a face (even, >= 2; ``"centred4"`` needs >= 4).
        transverse: cells along a face (odd, >= 1).
        degree: the weights are exact for polynomials of degree <= ``degree`` (0 or 1...).
        hidden, layers: channels and number of 3x3 circular convolutions.
        input_scale: the inputs (omega, u, v) are multiplied by it (order one at Re = 500).
        form: ``"weights"`` (the learned stencil weights above) or ``"flux"``, the cheaper
            second form: the base scheme's face values plus a learned face-value correction
            (two output channels, no stencil of learned weights; conservative like the first,
            but not constrained to be consistent).
        weights_per: ``"stage"`` (the CNN in every Runge–Kutta stage, the default) or
            ``"step"`` (the weights computed once per step from the step's initial state and
            reused in every stage: the CNN's cost once per step; module docstring).
    """

    def __init__(self, n: int, nu: float, *, drag: float = 0.1, forcing_wavenumber: int = 4,
                 base: str = "centred2", width: int = 4, transverse: int = 1, degree: int = 1,
                 hidden: int = 16, layers: int = 3, input_scale: float = 0.25, form: str = "weights",
                 weights_per: str = "stage"):
        super().__init__()
        self._check_args(base, width, transverse, degree, hidden, layers)
        self.meta = {"n": int(n), "nu": float(nu), "drag": float(drag),
                     "forcing_wavenumber": int(forcing_wavenumber), "base": base,
                     "width": int(width), "transverse": int(transverse), "degree": int(degree)}
        if form not in ("weights", "flux"):
            raise ValueError(f"LearnedInterpolation: form must be 'weights' or 'flux', got {form!r}")
        if form != "weights":  # recorded only when not the default (older records stay valid)
            self.meta["form"] = form
        if weights_per not in WEIGHTS_PER:
            raise ValueError(f"LearnedInterpolation: weights_per must be one of {WEIGHTS_PER}, got {weights_per!r}")
        if weights_per != "stage":
            self.meta["weights_per"] = weights_per
        self.form = form
        self.weights_per = weights_per
        self._stages: _StageTracker | None = None  # armed by start_solve
        self._guard: GuardRun | None = None  # armed by solve(..., guard=...)
        # the training domain (interpolation_guard): zeros until recorded; saved with the weights
        self.register_buffer("domain", domain_tensor(0.0, 0.0, 0.0, 0.0))
        # what it was built for, saved with the weights (a tensor, so state dicts stay tensors)
        self.register_buffer("trained_for_json", torch.tensor(list(json.dumps(self.meta, sort_keys=True).encode()),
                                                              dtype=torch.uint8))
        self.cells = stencil(width, transverse)
        #: how many cells around a face the stencil reaches (the wrap a caller's Halo of w needs)
        self.halo = _halo_width(self.cells)
        a = constraint_matrix(width, transverse, degree)
        _, s, vh = torch.linalg.svd(a)
        rank = int((s > 1e-10 * s[0]).sum())
        # float64 constants rebuilt from ``meta`` (not buffers: ``.float()`` would round them
        # and the constraint would then hold to 1e-8 only); cast per call in ``forward``
        self.w0 = base_weights(base, width, transverse)
        self.null = vh[rank:].T.contiguous()  # [S, S - rank], orthonormal columns
        self.free = self.null.shape[1]
        self.input_scale = float(input_scale)
        convs: list[nn.Module] = []
        c_in = 3
        for _ in range(layers - 1):
            convs += [nn.Conv2d(c_in, hidden, 3, padding=1, padding_mode="circular"), nn.GELU()]
            c_in = hidden
        last = nn.Conv2d(c_in, 2 * self.free if form == "weights" else 2, 3, padding=1, padding_mode="circular")
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*convs, last)

    @staticmethod
    def _check_args(base, width, transverse, degree, hidden, layers) -> None:
        if base not in BASE_SCHEMES:
            raise ValueError(f"LearnedInterpolation: base must be one of {BASE_SCHEMES}, got {base!r}")
        if not is_integer(width) or width < 2 or width % 2 or (base == "centred4" and width < 4):
            raise ValueError(f"LearnedInterpolation: width must be an even integer >= 2 (>= 4 for "
                             f"base='centred4'), got {width!r}")
        if not is_integer(transverse) or transverse < 1 or transverse % 2 == 0:
            raise ValueError(f"LearnedInterpolation: transverse must be an odd integer >= 1, got {transverse!r}")
        if not is_integer(degree) or degree < 0 or degree + 1 >= width * transverse:
            raise ValueError(f"LearnedInterpolation: degree must be an integer in [0, width*transverse - 2] "
                             f"(room for learned weights), got {degree!r}")
        exact = {"centred2": 1, "centred4": 3}[base]
        if degree > exact:
            raise ValueError(f"LearnedInterpolation: base={base!r} is exact to degree {exact} only, got "
                             f"degree={degree!r}; pass degree <= {exact} or base='centred4'")
        if not is_integer(hidden) or hidden < 1 or not is_integer(layers) or layers < 1:
            raise ValueError(f"LearnedInterpolation: hidden and layers must be integers >= 1, got "
                             f"{hidden!r}, {layers!r}")

    @property
    def trained_for(self) -> str:
        """What the model was built for, in words (quoted by every refusal)."""
        return _trained_for_text(self.meta)

    def check_system(self, system: Any) -> None:
        """Refuse a system other than the one the model was built for."""
        mine = self.meta
        theirs = {"n": system.n, "nu": system.nu, "drag": system.drag,
                  "forcing_wavenumber": system.forcing_wavenumber}
        bad = [k for k, v in theirs.items() if not math.isclose(float(v), float(mine[k]), rel_tol=1e-9)]
        if bad:
            raise ValueError(
                f"{system.name}: interpolation was trained for {self.trained_for}; this system has "
                + ", ".join(f"{k}={theirs[k]:g}" for k in bad)
                + " — train a LearnedInterpolation for this grid and Reynolds number"
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Refuse weights saved from a model built for another flow or base scheme (weights saved
        before domains existed load with none recorded)."""
        state_dict.setdefault(prefix + "domain", domain_tensor(0.0, 0.0, 0.0, 0.0))
        saved = state_dict.get(prefix + "trained_for_json")
        if saved is not None:
            theirs = json.loads(bytes(saved.tolist()).decode())
            if theirs != self.meta:
                raise ValueError(
                    f"LearnedInterpolation.load_state_dict: the weights were trained for "
                    f"{_trained_for_text(theirs)}, but this model is built for {self.trained_for}; build "
                    f"LearnedInterpolation with what it was trained for to load them"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def has_domain(self) -> bool:
        """Whether a training domain is recorded (``record_interpolation_domain``; ``fit`` does it)."""
        return bool(torch.isfinite(self.domain).all()) and bool((self.domain[2:] >= 1).all())  # margins >= 1

    @property
    def domain_text(self) -> str:
        """The recorded domain in words (or that none is)."""
        return domain_text(self.domain) if self.has_domain else "no training domain recorded"

    def arm_guard(self, mode: str) -> GuardRun:
        """Start a guarded solve (``solve(system, ..., guard=mode)`` calls it): every weight
        computation until :meth:`disarm_guard` is checked against the domain
        (:mod:`attsolver.systems.interpolation_guard`)."""
        if not self.has_domain:
            raise ValueError(
                "guard= needs the learned interpolation's training domain, and this model has none recorded; "
                "record it from the training states: attsolver.systems.record_interpolation_domain(model, states) "
                "(fit records it for an InterpolationHost)")
        self._guard = GuardRun(mode, self.domain)
        return self._guard

    def disarm_guard(self) -> None:
        """End a guarded solve."""
        self._guard = None

    def _guarded(self, w: Tensor, t, wx: Tensor, wy: Tensor) -> tuple[Tensor, Tensor]:
        """The weights after the guard's check: the base scheme's on the trajectories to fall back."""
        w0 = self.w0.to(wx.device, wx.dtype)[:, None, None]
        dims = (-3, -2, -1)  # (abs().amax: several times faster than an inf-norm on the CPU)
        dep = torch.maximum((wx.detach() - w0).abs_().amax(dim=dims), (wy.detach() - w0).abs_().amax(dim=dims))
        back = self._guard.check(w, dep, t)
        if back is None:
            return wx, wy
        back = back[..., None, None, None]
        return torch.where(back, w0, wx), torch.where(back, w0, wy)

    def check_consistency(self) -> None:
        """Refuse a base scheme or null-space basis that breaks the constraint."""
        m = self.meta
        a = constraint_matrix(m["width"], m["transverse"], m["degree"])
        w0, null = self.w0.double(), self.null.double()
        e0 = torch.zeros(a.shape[0], dtype=torch.float64)
        e0[0] = 1.0
        if float((a @ w0 - e0).abs().max()) > 1e-6 or float((a @ null).abs().max()) > 1e-6:
            raise ValueError(f"LearnedInterpolation: w0/null violate the consistency constraint "
                             f"(degree {m['degree']}); rebuild the model instead of editing its buffers")

    def forward(self, w: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Face weights ``(wx, wy)``, each ``[..., S, n, n]``, from the vorticity and the face
        velocities (all ``[..., n, n]``); the ``"flux"`` form's are the base scheme's."""
        if self.form == "flux":
            base = self.w0.to(w.device, w.dtype)[:, None, None].expand(len(self.cells), *w.shape[-2:])
            return base.expand(*w.shape[:-2], *base.shape), base.expand(*w.shape[:-2], *base.shape)
        batch = w.shape[:-2]
        x = torch.stack([w, u, v], dim=-3).reshape(-1, 3, *w.shape[-2:]) * self.input_scale
        p = next(self.net.parameters())
        z = self.net(x.to(p.dtype) if x.dtype != p.dtype else x).to(w.dtype)
        z = z.reshape(-1, 2, self.free, w.shape[-2] * w.shape[-1])
        null, w0 = self.null.to(z.device, z.dtype), self.w0.to(z.device, z.dtype)
        weights = torch.matmul(null, z).add_(w0[:, None])  # w0 + N z at every face (a batched matmul)
        weights = weights.reshape(*batch, 2, len(self.cells), *w.shape[-2:]).to(w.dtype)
        return weights[..., 0, :, :, :], weights[..., 1, :, :, :]

    def start_solve(self, method: str, step_size: float) -> None:
        """Arm the stage tracker of ``weights_per="step"`` for a solve with ``method`` and steps
        of at most ``step_size`` (called by :meth:`NavierStokes2DFD.check_step_size`)."""
        if self.weights_per != "step":
            return
        tab = TABLEAUS.get(method)
        if tab is None:  # the tableaus are all explicit
            raise ValueError(
                f"LearnedInterpolation with weights_per='step' runs with an explicit Runge–Kutta method "
                f"(one of {sorted(TABLEAUS)}), got method={method!r}; pass method='ssprk3' (what it was "
                f"trained with) or build the model with weights_per='stage'")
        self._stages = _StageTracker(tuple(float(c) for c in tab.c), float(step_size))

    def advection(self, w: Tensor, psi: Tensor, dx: float, t: Tensor | float | None = None,
                  halo: Halo | None = None) -> Tensor:
        """``-div(u omega)`` with the learned face values (``t``: the stage's time, which
        ``weights_per="step"`` uses to follow the stages of a step; ``halo``: a wrapped copy
        of ``w`` the caller already has, reused if it is wide enough)."""
        u, v = face_velocities(psi, dx)
        if self.form == "flux":
            return self._flux_form(w, u, v, dx, halo, t)
        tracker = self._stages if self.weights_per == "step" and t is not None else None
        if tracker is None or tracker.starts_step(float(t), w.shape):
            wx, wy = self(w, u, v)
            if self._guard is not None:
                wx, wy = self._guarded(w, t, wx, wy)
            if tracker is not None:
                tracker.weights = (wx, wy)
        else:
            wx, wy = tracker.weights
        return flux_advection(w, u, v, wx, wy, self.cells, dx, halo)

    def _flux_form(self, w: Tensor, u: Tensor, v: Tensor, dx: float, halo: Halo | None = None, t=None) -> Tensor:
        """The second form: base face values plus a learned correction of them."""
        batch = w.shape[:-2]
        x = torch.stack([w, u, v], dim=-3).reshape(-1, 3, *w.shape[-2:]) * self.input_scale
        p = next(self.net.parameters())
        d = self.net(x.to(p.dtype) if x.dtype != p.dtype else x).to(w.dtype) / self.input_scale
        d = d.reshape(*batch, 2, *w.shape[-2:])
        if self._guard is not None:  # the departure from the base scheme is the correction itself
            back = self._guard.check(w, d.detach().abs().amax(dim=(-3, -2, -1)), t)
            if back is not None:
                d = torch.where(back[..., None, None, None], torch.zeros((), dtype=d.dtype, device=d.device), d)
        q = _wrapped(w, halo, self.halo)
        base = self.w0.tolist()
        fx = u * (_face_values(q, base, self.cells, "x") + d[..., 0, :, :])
        fy = v * (_face_values(q, base, self.cells, "y") + d[..., 1, :, :])
        return _divergence(fx, fy, dx)


class _StageTracker:
    """Which Runge–Kutta stage a call of the right-hand side is, for ``weights_per="step"``.

    An explicit RK step calls ``f(t0 + c_i h, y_i)`` for ``i = 0 .. s-1`` in order.  A call is
    taken as stage ``i > 0`` of the current step only if it comes next and its time fits the
    node (``t - t0 = c_i h`` for one ``0 < h <= step_size``, the same ``h`` for every stage of
    the step); anything else (the first call, a call after the last stage, another time or
    state shape) starts a new step, whose weights are computed from the call's own state.  A
    step recomputed by checkpointed back-propagation replays the same calls and is tracked alike.
    """

    def __init__(self, nodes: tuple[float, ...], step_size: float):
        self.nodes, self.h_max = nodes, step_size
        self.next = 0  # the stage the next call should be
        self.t0 = self.h = 0.0
        self.shape: tuple[int, ...] = ()
        self.weights: tuple[Tensor, Tensor] | None = None

    def starts_step(self, t: float, shape) -> bool:
        """Whether the call at time ``t`` with a state of ``shape`` starts a new step (and
        advance the tracker either way)."""
        i = self.next
        if 0 < i < len(self.nodes) and self.weights is not None and tuple(shape) == self.shape \
                and self._fits(i, t):
            self.next = (i + 1) % len(self.nodes)
            return False
        self.t0, self.h, self.shape, self.next = t, 0.0, tuple(shape), 1 % len(self.nodes)
        return True

    def _fits(self, i: int, t: float) -> bool:
        c, dt = self.nodes[i], t - self.t0
        tol = 1e-3 * self.h_max + 4e-7 * abs(self.t0)  # the stage times are rounded in y0's dtype
        if c == 0.0:
            return abs(dt) <= tol
        if self.h == 0.0:  # the first stage with c > 0 fixes the step
            h = dt / c
            if not 0.0 < h <= self.h_max * (1 + 1e-6) + tol:
                return False
            self.h = h
            return True
        return abs(dt - c * self.h) <= tol
